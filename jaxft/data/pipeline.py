"""Training input pipeline: tokenise (loss on answer tokens only), plan the steps, pack, batch.

`global_batch_size` counts examples per optimizer step, as the study does, and an epoch uses every
example exactly once (`StepPlan`). The plan is a pure function of the data and the seed, and grain's
iterator state (saved with each checkpoint) is the step index, so a resumed run sees the same
examples in the same order, none twice or skipped.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from jaxft.data.prompts import build_prompt, format_completion
from jaxft.errors import DataError
from jaxft.data.tasks import Example


@dataclasses.dataclass
class TokenizedSet:
    records: list[dict[str, np.ndarray]]
    dropped_no_answer: int  # truncation left no answer token: such examples are dropped
    truncated: int  # kept, but cut to seq_len
    num_examples: int


def tokenize_examples(examples: Sequence[Example], tokenizer, *, seq_len: int, template: str = "plain",
                      eos_id: int | None = None) -> TokenizedSet:
    """prompt + completion + EOS; `loss` marks completion tokens (the ones the model must predict)."""
    eos_id = tokenizer.eos_token_id if eos_id is None else eos_id
    records, dropped, truncated = [], 0, 0
    for ex in examples:
        prompt = tokenizer(build_prompt(ex, template=template, tokenizer=tokenizer))["input_ids"]
        completion = tokenizer(format_completion(ex, template=template), add_special_tokens=False)["input_ids"]
        ids = list(prompt) + list(completion) + ([eos_id] if eos_id is not None else [])
        loss = [0] * len(prompt) + [1] * (len(ids) - len(prompt))
        if len(ids) > seq_len:
            ids, loss = ids[:seq_len], loss[:seq_len]
            truncated += 1
        if sum(loss[1:]) == 0:  # position 0 is never a target
            dropped += 1
            continue
        records.append({"tokens": np.asarray(ids, np.int32), "loss": np.asarray(loss, np.int32),
                        "example": np.full(len(ids), ex.index, np.int32)})
    return TokenizedSet(records, dropped, truncated, len(examples))


def _to_batch(row: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Packed rows -> model inputs; a target exists only inside the same segment (no cross-example loss)."""
    tokens, seg = row["tokens"], row["tokens_segment_ids"]
    same = np.zeros_like(seg)
    same[..., :-1] = (seg[..., 1:] == seg[..., :-1]) & (seg[..., :-1] > 0)
    targets = np.zeros_like(tokens)
    targets[..., :-1] = tokens[..., 1:]
    loss_mask = np.zeros(tokens.shape, np.float32)
    loss_mask[..., :-1] = row["loss"][..., 1:] * same[..., :-1]
    return {"input_ids": tokens, "segment_ids": seg, "positions": row["tokens_positions"],
            "targets": targets, "loss_mask": loss_mask, "example": row["example"]}


class StepPlan:
    """Which examples each optimizer step uses, and how they are packed into a fixed number of rows.

    An epoch is one pass in which every kept example is used exactly once: a fresh permutation of
    the examples per epoch (seeded by `seed` and the epoch number), cut into steps of `batch_size`
    examples; an epoch's last step takes the remainder, so steps never straddle two epochs. Each
    step's examples are packed first-fit decreasing into rows of `seq_len` tokens (one example per
    row without packing). Every step has the same number of rows, so shapes are static: the padding
    budget is the most rows any step of the run needs, rounded up to `row_multiple` (the batch
    shards times micro-batching), unless `rows_per_step` fixes it.
    """

    def __init__(self, lengths: Sequence[int], *, batch_size: int, seq_len: int, seed: int, total_steps: int = 0,
                 num_epochs: int = 1, packing: bool = True, rows_per_step: int = 0, row_multiple: int = 1):
        n = len(lengths)
        if n == 0:
            raise DataError("no training examples left to train on (all were dropped or the split is empty)")
        if batch_size <= 0:
            raise DataError(f"global_batch_size={batch_size} must be positive")
        self.num_examples, self.batch_size, self.seq_len, self.seed = n, batch_size, seq_len, seed
        self.lengths = np.asarray(lengths, np.int64)
        self.steps_per_epoch = -(-n // batch_size)
        self.total_steps = total_steps or self.steps_per_epoch * max(num_epochs, 1)
        self.packing = packing
        self._perms: dict[int, np.ndarray] = {}
        self.bins = [self._pack(self.step_examples(s)) for s in range(self.total_steps)]
        needed = max(len(b) for b in self.bins)
        if rows_per_step and rows_per_step < needed:
            raise DataError(f"data.rows_per_step={rows_per_step} is too small: step "
                            f"{1 + int(np.argmax([len(b) for b in self.bins]))} needs {needed} rows of "
                            f"{seq_len} tokens for its {batch_size} examples (0 = choose automatically)")
        rows = rows_per_step or needed
        self.rows = -(-rows // row_multiple) * row_multiple
        real = float(sum(self.lengths[i] for b in self.bins for row in b for i in row))
        self.padding_fraction = 1.0 - real / (self.rows * seq_len * self.total_steps)

    def epoch_of(self, step: int) -> int:
        return step // self.steps_per_epoch

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            self._perms[epoch] = np.random.default_rng([self.seed, epoch]).permutation(self.num_examples)
        return self._perms[epoch]

    def step_examples(self, step: int) -> np.ndarray:
        """Record indices of step `step` (0-based)."""
        k = step % self.steps_per_epoch
        return self._perm(self.epoch_of(step))[k * self.batch_size:(k + 1) * self.batch_size]

    def _pack(self, idx: np.ndarray) -> list[list[int]]:
        if not self.packing:
            return [[int(i)] for i in idx]
        rows: list[list[int]] = []
        free: list[int] = []
        # longest first, ties by position in the step: deterministic
        for i in sorted(idx.tolist(), key=lambda j: -self.lengths[j]):
            n = int(self.lengths[i])
            for r, room in enumerate(free):
                if n <= room:
                    rows[r].append(i)
                    free[r] -= n
                    break
            else:
                rows.append([i])
                free.append(self.seq_len - n)
        return rows

    def seen(self, steps: int) -> tuple[int, int]:
        """(examples, tokens) used by the first `steps` steps."""
        idx = [i for s in range(steps) for i in self.step_examples(s)]
        return len(idx), int(self.lengths[idx].sum()) if idx else 0

    def epoch_progress(self, step: int) -> float:
        """Epochs completed after `step` (1-based) steps, counting examples."""
        full, k = divmod(step, self.steps_per_epoch)
        done = min(k * self.batch_size, self.num_examples)
        return full + done / self.num_examples


def _step_rows(records: list[dict[str, np.ndarray]], bins: list[list[int]], rows: int, seq_len: int
               ) -> dict[str, np.ndarray]:
    out = {k: np.zeros((rows, seq_len), np.int32) for k in
           ("tokens", "loss", "example", "tokens_segment_ids", "tokens_positions")}
    for r, members in enumerate(bins):
        at = 0
        for seg, i in enumerate(members, start=1):
            rec = records[i]
            n = len(rec["tokens"])
            for k in ("tokens", "loss", "example"):
                out[k][r, at:at + n] = rec[k]
            out["tokens_segment_ids"][r, at:at + n] = seg
            out["tokens_positions"][r, at:at + n] = np.arange(n)
            at += n
    return out


def make_dataset(records: list[dict[str, np.ndarray]], plan: StepPlan, *, process_index: int = 0,
                 process_count: int = 1) -> Any:
    """A grain dataset of this process's rows of each step (checkpointable iterator: resume is exact).

    Each element is (batch, info): `batch` holds this process's slice of the step's rows; `info` the
    step's global facts (`examples`: ids of every example in the step, `tokens`, `epoch`).
    """
    import grain

    if plan.rows % process_count:
        raise DataError(f"{plan.rows} rows per step do not split over {process_count} processes")
    per = plan.rows // process_count

    def build(step: int):
        step = int(step)
        rows = _step_rows(records, plan.bins[step], plan.rows, plan.seq_len)
        batch = _to_batch({k: v[process_index * per:(process_index + 1) * per] for k, v in rows.items()})
        ids = sorted(int(records[i]["example"][0]) for b in plan.bins[step] for i in b)
        info = {"step": step + 1, "examples": ids, "tokens": int((rows["tokens_segment_ids"] > 0).sum()),
                "epoch": plan.epoch_progress(step + 1)}
        return batch, info

    return grain.MapDataset.range(plan.total_steps).map(build).to_iter_dataset()
