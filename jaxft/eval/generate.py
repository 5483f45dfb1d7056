"""Batched greedy decoding: jitted prefill + `lax.while_loop` decode over a static-shape KV cache,
with continuous batching.

`batch_size` slots decode together. Decoding runs in chunks of `chunk` tokens (one while_loop each,
early exit once every slot is done); between chunks the host checks stop strings on the decoded text
(exact, tokenizer-independent), collects finished rows and refills their slots with the next prompts
(shortest first, left-padded to a bucket multiple so few shapes get compiled). Every slot's history
ends at the same cache position, so a new row's prefilled cache is written just before it, and the
cache is rolled back when it runs out of room. Rows never see each other: results equal decoding
each prompt alone.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxft.eval.settings import EvalSettings
from jaxft.models.transformer import init_cache


@dataclasses.dataclass(frozen=True)
class DecodeSettings:
    max_new_tokens: int = EvalSettings.max_new_tokens  # the evaluation defaults, defined once
    batch_size: int = EvalSettings.batch_size
    stop_strings: tuple[str, ...] = ()
    bucket: int = 32  # prompt lengths are padded up to a multiple of this
    chunk: int = 32  # tokens decoded per device call between stop-string checks and refills
    # Continuous batching: a group of this many freed slots is refilled with new prompts while the
    # others keep decoding (0: batch_size // 4). batch_size = static batches, like transformers.
    refill: int = 0
    # Once no prompt is left to start, halve the slots while at most half are live (down to
    # batch_size // 8): the tail of a run, a few long answers, then decodes at a smaller batch.
    shrink: bool = True

    def __post_init__(self):
        if min(self.batch_size, self.max_new_tokens, self.bucket, self.chunk) < 1 or not (
                0 <= self.refill <= self.batch_size):
            raise ValueError(f"DecodeSettings needs batch_size, max_new_tokens, bucket, chunk >= 1 and "
                             f"0 <= refill <= batch_size; got {self}")

    @property
    def refill_group(self) -> int:
        return min(self.refill or max(1, self.batch_size // 4), self.batch_size)


@dataclasses.dataclass
class Generation:
    prompt: str
    text: str  # decoded completion, cut at the first stop string
    token_ids: list[int]  # generated ids up to and including EOS (before any stop-string cut)
    finish_reason: str  # "eos", "stop_string" or "length"


@dataclasses.dataclass
class GenerationStats:
    generated_tokens: int = 0
    seconds: float = 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.generated_tokens / self.seconds if self.seconds > 0 else 0.0


def _round_up(n: int, m: int) -> int:
    return max(m, -(-n // m) * m)


@functools.partial(jax.jit, static_argnames=("graphdef",), donate_argnames=("slots",))
def _refill(graphdef, state, slots, ids, mask, rows, index):
    """Prefill `ids` [R, P] (left-padded) and place row j's cache in slot `rows[j]` at positions
    [index - P, index): every live slot's history ends at `index`, so new rows join the batch mid-flight.
    Filler rows (prompt slots beyond the queue) target the first real row's slot and are written
    before it, so they change nothing."""
    model = nnx.merge(graphdef, state)
    r, p = ids.shape
    small = init_cache(model.config, r, p, model.dtype)
    logits, small = model(ids, mask, cache=small, last_logits_only=True)
    first = jnp.argmax(logits[:, -1], axis=-1).astype(jnp.int32)
    cache = dict(slots["cache"])
    k, v, key_mask = list(cache["k"]), list(cache["v"]), cache["mask"]
    token, done, count, position = slots["token"], slots["done"], slots["count"], cache["next_position"]
    for j in range(r):  # rows[0] is real; fillers (rows[j] == rows[0], j > 0) come first in this order
        jj = (j + 1) % r
        slot = rows[jj]
        for layer in range(len(k)):
            k[layer] = jax.lax.dynamic_update_slice(k[layer], small["k"][layer][jj:jj + 1], (slot, 0, index - p, 0))
            v[layer] = jax.lax.dynamic_update_slice(v[layer], small["v"][layer][jj:jj + 1], (slot, 0, index - p, 0))
        row = jnp.zeros((1, key_mask.shape[1]), key_mask.dtype)
        key_mask = jax.lax.dynamic_update_slice(
            key_mask, jax.lax.dynamic_update_slice(row, mask[jj:jj + 1].astype(row.dtype), (0, index - p)), (slot, 0))
        token, done = token.at[slot].set(first[jj]), done.at[slot].set(False)
        count, position = count.at[slot].set(0), position.at[slot].set(small["next_position"][jj])
    cache.update(k=tuple(k), v=tuple(v), mask=key_mask, next_position=position, index=index)
    return {"cache": cache, "token": token, "done": done, "count": count}


@functools.partial(jax.jit, donate_argnames=("slots",))
def _realign(slots, index):
    """Shift every slot's history so that it ends at `index` (all histories end at the same place, so one
    roll along time does it); freed positions are masked out. Keeps the static cache long enough for
    rows that join late."""
    cache = dict(slots["cache"])
    shift = index - cache["index"]
    t = cache["mask"].shape[1]
    src = jnp.arange(t) - shift
    inside = (src >= 0) & (src < t)
    roll = functools.partial(jnp.roll, shift=shift, axis=2)
    cache.update(k=tuple(map(roll, cache["k"])), v=tuple(map(roll, cache["v"])),
                 mask=jnp.where(inside[None, :], jnp.roll(cache["mask"], shift, axis=1), 0), index=index)
    return dict(slots, cache=cache)


@jax.jit
def _halve(slots, out, rows, dead):
    """Keep the slots `rows` (half as many, in this order); those marked `dead` are free."""
    def take(x):
        return jnp.take(x, rows, axis=0)

    cache = dict(slots["cache"])
    cache.update(k=tuple(map(take, cache["k"])), v=tuple(map(take, cache["v"])), mask=take(cache["mask"]),
                 next_position=take(cache["next_position"]))
    return {"cache": cache, "token": take(slots["token"]), "done": take(slots["done"]) | dead,
            "count": take(slots["count"])}, take(out)


@functools.partial(jax.jit, static_argnames=("graphdef", "steps"), donate_argnames=("slots", "out"))
def _decode_chunk(graphdef, state, slots, out, eos_ids, steps: int):
    """Up to `steps` greedy tokens for every live slot; row r's j-th token goes to out[r, j]. Stops early
    when every slot is done or the cache is full (the host then realigns it)."""
    model = nnx.merge(graphdef, state)
    rows = jnp.arange(out.shape[0])
    limit, max_new = slots["cache"]["mask"].shape[1], out.shape[1]

    def cond(c):
        i, slots, _ = c
        return (i < steps) & (slots["cache"]["index"] < limit) & ~jnp.all(slots["done"])

    def body(c):
        i, slots, out = c
        token, done, count = slots["token"], slots["done"], slots["count"]
        at = jnp.minimum(count, max_new - 1)
        out = out.at[rows, at].set(jnp.where(done, out[rows, at], token))
        count = count + (~done).astype(count.dtype)
        done = done | jnp.isin(token, eos_ids) | (count >= max_new)
        logits, cache = model(token[:, None], jnp.ones_like(token)[:, None], cache=slots["cache"])
        token = jnp.argmax(logits[:, -1], axis=-1).astype(jnp.int32)
        return i + 1, {"cache": cache, "token": token, "done": done, "count": count}, out

    _, slots, out = jax.lax.while_loop(cond, body, (jnp.asarray(0, jnp.int32), slots, out))
    return slots, out


def _cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


class _Engine:
    """Continuous batching over `batch_size` slots: a slot whose row finished (EOS, a stop string,
    max_new_tokens) is refilled from the queue of prompts (shortest first) in groups of `refill`
    rows, so one long answer no longer keeps a whole batch of finished rows decoding.
    `refill == batch_size` is plain static batching (the schedule of transformers' `generate`)."""

    def __init__(self, model, prompt_ids, settings: DecodeSettings, eos_ids, pad_id):
        self.graphdef, self.state = nnx.split(model)
        self.settings, self.pad_id, self.prompt_ids = settings, pad_id, prompt_ids
        self.eos = jnp.asarray(list(eos_ids) or [-1], jnp.int32)
        self.slots_n = settings.batch_size
        self.min_slots = max(1, settings.batch_size // 8)
        self.group = settings.refill_group
        p_max = _round_up(max(len(p) for p in prompt_ids), settings.bucket)
        # Longest history a live row can have (padded prompt + new tokens), plus room for one chunk.
        self.length = p_max + settings.max_new_tokens + settings.chunk
        cfg, bs = model.config, self.slots_n
        self.slots = {"cache": init_cache(cfg, bs, self.length, model.dtype),
                      "token": jnp.zeros((bs,), jnp.int32), "done": jnp.ones((bs,), bool),
                      "count": jnp.zeros((bs,), jnp.int32)}
        self.out = jnp.full((bs, settings.max_new_tokens), pad_id, jnp.int32)
        self.index = 0  # host copy of the cache's write position
        self.history = np.zeros(bs, np.int64)  # cache positions each live slot occupies

    def pack(self, idx: list[int]):
        """One refill group, left-padded to a bucket multiple P: (ids, mask, P), `group` rows."""
        bs = self.group
        plen = _round_up(max(len(self.prompt_ids[i]) for i in idx), self.settings.bucket)
        ids = np.full((bs, plen), self.pad_id, np.int32)
        mask = np.zeros((bs, plen), np.int32)
        for r, i in enumerate(idx):
            p = list(self.prompt_ids[i])
            ids[r, plen - len(p):] = p
            mask[r, plen - len(p):] = 1
        for r in range(len(idx), bs):  # fillers keep the compiled shape
            ids[r, -1], mask[r, -1] = self.pad_id, 1
        return ids, mask, plen

    def realign(self, index: int):
        if index != self.index:
            self.slots = _realign(self.slots, jnp.asarray(index, jnp.int32))
            self.index = index

    def refill(self, slots: list[int], ids, mask, plen: int, n_real: int):
        live = self.history[self.history > 0]
        self.realign(max(int(live.max()) if live.size else 0, plen))
        rows = np.full(len(ids), slots[0], np.int32)
        rows[:n_real] = slots[:n_real]
        self.slots = _refill(self.graphdef, self.state, self.slots, jnp.asarray(ids), jnp.asarray(mask),
                             jnp.asarray(rows), jnp.asarray(self.index, jnp.int32))
        self.history[slots[:n_real]] = plen

    def halve(self, live: list[int]) -> bool:
        """Move the live slots to the front of a batch half as large, if they fit and it is allowed."""
        half = self.slots_n // 2
        if not live or len(live) > half or half < self.min_slots:
            return False
        rows = np.asarray(live + [live[0]] * (half - len(live)), np.int32)
        dead = np.arange(half) >= len(live)
        self.slots, self.out = _halve(self.slots, self.out, jnp.asarray(rows), jnp.asarray(dead))
        self.history = np.where(dead, 0, self.history[rows])
        self.slots_n = half
        return True

    def decode(self):
        if self.index + self.settings.chunk > self.length:  # make room: drop positions no live row uses
            self.realign(int(self.history.max()))
        before = self.index
        self.slots, self.out = _decode_chunk(self.graphdef, self.state, self.slots, self.out, self.eos,
                                             self.settings.chunk)
        self.index = int(self.slots["cache"]["index"])
        self.history[self.history > 0] += self.index - before


def warm_up(model, prompt_ids: Sequence[Sequence[int]], settings: DecodeSettings, *, eos_ids: Sequence[int],
            pad_id: int) -> float:
    """Compile every shape `generate_ids` will meet for these prompts, decoding nothing (every slot
    starts done, so the decode loop runs zero steps); returns the seconds spent. For benchmarks that
    time decoding apart from the one-off compilation."""
    t0 = time.perf_counter()
    engine = _Engine(model, prompt_ids, settings, eos_ids, pad_id)
    order = sorted(range(len(prompt_ids)), key=lambda i: len(prompt_ids[i]))

    def idle_decode():  # every slot done: compiles the decode loop without running a step
        engine.slots["done"] = jnp.ones_like(engine.slots["done"])
        engine.history[:] = 0
        engine.decode()
        engine.realign(engine.index + 1)

    seen = set()
    for lo in range(0, len(order), engine.group):  # the groups generate_ids will form, in its order
        idx = order[lo:lo + engine.group]
        ids, mask, plen = engine.pack(idx)
        if plen not in seen:
            seen.add(plen)
            engine.refill(list(range(engine.group)), ids, mask, plen, len(idx))
            idle_decode()
    while settings.shrink and engine.halve(list(range(engine.slots_n // 2))):
        idle_decode()
    jax.block_until_ready(engine.slots)
    return time.perf_counter() - t0


def generate_ids(model, prompt_ids: Sequence[Sequence[int]], settings: DecodeSettings, *,
                 eos_ids: Sequence[int], pad_id: int, tokenizer=None, stats: GenerationStats | None = None,
                 on_finished: Callable[[int], None] | None = None,
                 on_round: Callable[[dict[int, tuple[list[int], str]]], None] | None = None
                 ) -> list[tuple[list[int], str]]:
    """Greedy continuation ids for each prompt (any order in, same order out). `on_finished(i)` is
    called as prompt i's row completes (for progress bars); `on_round({i: (ids, reason)})` once per
    decode round with the rows that completed in it (for writing results as they come)."""
    if not prompt_ids:
        return []
    t0 = time.perf_counter()
    engine = _Engine(model, prompt_ids, settings, eos_ids, pad_id)
    queue = sorted(range(len(prompt_ids)), key=lambda i: len(prompt_ids[i]))
    owner = [-1] * engine.slots_n  # prompt index per slot, -1 = free
    by_stop = [False] * engine.slots_n
    results: list[Any] = [None] * len(prompt_ids)
    while queue or any(o >= 0 for o in owner):
        free = [s for s, o in enumerate(owner) if o < 0]
        while queue and len(free) >= min(engine.group, len(queue)):
            idx = queue[:engine.group]
            ids, mask, plen = engine.pack(idx)
            engine.refill(free, ids, mask, plen, len(idx))
            for s, i in zip(free, idx):
                owner[s], by_stop[s] = i, False
            queue, free = queue[len(idx):], free[len(idx):]
        engine.decode()
        done, count = np.array(engine.slots["done"]), np.asarray(engine.slots["count"])
        host_out = np.asarray(engine.out)
        if settings.stop_strings and tokenizer is not None:
            for s, i in enumerate(owner):
                if i >= 0 and not done[s]:
                    text = tokenizer.decode(host_out[s, :count[s]], skip_special_tokens=True)
                    by_stop[s] = done[s] = _cut_at_stop(text, settings.stop_strings)[1]
            engine.slots["done"] = jnp.asarray(done)
        finished = {}
        for s, i in enumerate(owner):
            if i < 0 or not done[s]:
                continue
            row, reason = host_out[s, :count[s]].tolist(), "length"
            for j, t in enumerate(row):
                if t in eos_ids:
                    row, reason = row[:j + 1], "eos"
                    break
            if reason == "length" and by_stop[s]:
                reason = "stop_string"
            results[i], owner[s] = (row, reason), -1
            finished[i] = results[i]
            engine.history[s] = 0
            if stats is not None:
                stats.generated_tokens += len(row)
            if on_finished is not None:
                on_finished(i)
        if finished and on_round is not None:
            on_round(finished)
        while settings.shrink and not queue:
            live = [s for s, o in enumerate(owner) if o >= 0]
            if not engine.halve(live):
                break
            extra = engine.slots_n - len(live)
            owner = [owner[s] for s in live] + [-1] * extra
            by_stop = [by_stop[s] for s in live] + [False] * extra
    if stats is not None:
        stats.seconds += time.perf_counter() - t0
    return results


def generate(model, tokenizer, prompts: Sequence[str], settings: DecodeSettings = DecodeSettings(), *,
             eos_ids: Sequence[int] | None = None, stats: GenerationStats | None = None,
             on_finished: Callable[[int], None] | None = None,
             on_generations: Callable[[dict[int, Generation]], None] | None = None) -> list[Generation]:
    """Greedy completions of `prompts` with `model` (a jaxft Transformer, adapted or not).
    `on_generations({i: Generation})` is called once per decode round with the prompts finished in it."""
    cfg = model.config
    if eos_ids is None:
        eos_ids = list(cfg.eos_token_ids)
        if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in eos_ids:
            eos_ids.append(tokenizer.eos_token_id)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (eos_ids[0] if eos_ids else 0)
    prompt_ids = [tokenizer(p)["input_ids"] for p in prompts]

    def to_generation(prompt: str, ids: list[int], reason: str) -> Generation:
        text = tokenizer.decode(ids, skip_special_tokens=True)
        text, stopped = _cut_at_stop(text, settings.stop_strings)
        if stopped and reason == "length":
            reason = "stop_string"
        return Generation(prompt=prompt, text=text, token_ids=ids, finish_reason=reason)

    def on_round(rows):
        on_generations({i: to_generation(prompts[i], ids, reason) for i, (ids, reason) in rows.items()})

    raw = generate_ids(model, prompt_ids, settings, eos_ids=eos_ids, pad_id=pad_id, tokenizer=tokenizer,
                       stats=stats, on_finished=on_finished, on_round=on_round if on_generations else None)
    return [to_generation(prompt, ids, reason) for prompt, (ids, reason) in zip(prompts, raw)]
