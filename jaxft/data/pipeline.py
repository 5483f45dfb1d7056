"""Training input pipeline on grain: tokenise (loss on answer tokens only), shuffle, pack, batch.

Order matters for exact resume: the source is shuffled with a seed, sharded by process, packed
first-fit into rows of `seq_len` and batched; grain's iterator state (saved with each checkpoint)
then restores the stream at the same example, so none is seen twice or skipped.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from jaxft.data.prompts import build_prompt, format_completion
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


def _pad_one(rec: dict[str, np.ndarray], seq_len: int) -> dict[str, np.ndarray]:
    n = len(rec["tokens"])
    out = {}
    for k, v in rec.items():
        out[k] = np.pad(v, (0, seq_len - n))
    out["tokens_segment_ids"] = np.pad(np.ones(n, np.int32), (0, seq_len - n))
    out["tokens_positions"] = np.pad(np.arange(n, dtype=np.int32), (0, seq_len - n))
    return out


def make_dataset(records: list[dict[str, np.ndarray]], *, seq_len: int, batch_size: int, seed: int,
                 packing: bool = True, num_epochs: int = 0, process_index: int = 0, process_count: int = 1,
                 packing_bins: int | None = None) -> Any:
    """A grain IterDataset of batches [batch_size, seq_len] for this process (checkpointable iterator)."""
    import grain
    import grain.experimental as gexp

    ds = grain.MapDataset.source(records).shuffle(seed=seed)
    ds = ds.repeat(num_epochs if num_epochs > 0 else None)
    ds = ds[process_index::process_count]
    ids = ds.to_iter_dataset()
    if packing:
        lengths = {"tokens": seq_len, "loss": seq_len, "example": seq_len}
        ids = gexp.FirstFitPackIterDataset(ids, length_struct=lengths,
                                           num_packing_bins=packing_bins or batch_size, shuffle_bins=False)
    else:
        ids = ids.map(lambda r: _pad_one(r, seq_len))
    return ids.batch(batch_size, drop_remainder=True).map(_to_batch)


def examples_in_batch(batch: dict[str, np.ndarray]) -> list[int]:
    """Distinct example indices in a batch (segment starts), for the no-repeat/no-skip checks."""
    starts = (batch["positions"] == 0) & (batch["segment_ids"] > 0)
    return sorted(int(e) for e in batch["example"][starts])
