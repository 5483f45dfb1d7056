"""Batched greedy decoding: jitted prefill + `lax.while_loop` decode over a static-shape KV cache.

Decoding runs in chunks of `chunk` tokens inside one while_loop each; between chunks the host
checks stop strings on the decoded text (exact, tokenizer-independent), so a batch exits early
once every row hit EOS or a stop string. Prompts are sorted by length and left-padded to a
bucket multiple, so padding stays small and few shapes get compiled.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxft.models.transformer import init_cache


@dataclasses.dataclass(frozen=True)
class DecodeSettings:
    max_new_tokens: int = 256
    batch_size: int = 8
    stop_strings: tuple[str, ...] = ()
    bucket: int = 32  # prompt lengths are padded up to a multiple of this
    chunk: int = 32  # tokens decoded per device call between stop-string checks


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


@functools.partial(jax.jit, static_argnames=("graphdef", "max_len"))
def _prefill(graphdef, state, ids, mask, max_len: int):
    model = nnx.merge(graphdef, state)
    cache = init_cache(model.config, ids.shape[0], max_len, model.dtype)
    logits, cache = model(ids, mask, cache=cache, last_logits_only=True)
    return jnp.argmax(logits[:, -1], axis=-1).astype(jnp.int32), cache


@functools.partial(jax.jit, static_argnames=("graphdef", "steps"), donate_argnames=("cache", "out"))
def _decode_chunk(graphdef, state, cache, token, done, out, start, eos_ids, pad_id, steps: int):
    """Emit up to `steps` tokens starting at output slot `start`; stops early when all rows are done."""
    model = nnx.merge(graphdef, state)
    limit = jnp.minimum(start + steps, out.shape[1])

    def cond(c):
        step, _, _, done, _ = c
        return (step < limit) & ~jnp.all(done)

    def body(c):
        step, cache, token, done, out = c
        emitted = jnp.where(done, pad_id, token)
        out = jax.lax.dynamic_update_slice(out, emitted[:, None], (0, step))
        done = done | jnp.isin(token, eos_ids)
        logits, cache = model(token[:, None], jnp.ones_like(token)[:, None], cache=cache)
        token = jnp.argmax(logits[:, -1], axis=-1).astype(jnp.int32)
        return step + 1, cache, token, done, out

    step, cache, token, done, out = jax.lax.while_loop(cond, body, (start, cache, token, done, out))
    return step, cache, token, done, out


def _cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def _batches(prompt_ids, order, settings: DecodeSettings, pad_id: int):
    """(row indices, left-padded ids, mask, padded length) per batch, in `order`."""
    bs = settings.batch_size
    for lo in range(0, len(order), bs):
        idx = order[lo:lo + bs]
        plen = _round_up(max(len(prompt_ids[i]) for i in idx), settings.bucket)
        ids = np.full((bs, plen), pad_id, np.int32)
        mask = np.zeros((bs, plen), np.int32)
        for r, i in enumerate(idx):
            p = list(prompt_ids[i])
            ids[r, plen - len(p):] = p
            mask[r, plen - len(p):] = 1
        for r in range(len(idx), bs):  # filler rows keep the compiled shape; they start done
            ids[r, -1], mask[r, -1] = pad_id, 1
        yield idx, ids, mask, plen


def warm_up(model, prompt_ids: Sequence[Sequence[int]], settings: DecodeSettings, *, eos_ids: Sequence[int],
            pad_id: int) -> float:
    """Compile every shape `generate_ids` will meet for these prompts, decoding nothing (a decode call
    that starts at the last output slot runs zero steps); returns the seconds spent. For benchmarks
    that time decoding apart from the one-off compilation."""
    graphdef, state = nnx.split(model)
    order = sorted(range(len(prompt_ids)), key=lambda i: len(prompt_ids[i]))
    t0, seen = time.perf_counter(), set()
    bs, new = settings.batch_size, settings.max_new_tokens
    for _, ids, mask, plen in _batches(prompt_ids, order, settings, pad_id):
        if plen in seen:
            continue
        seen.add(plen)
        token, cache = _prefill(graphdef, state, jnp.asarray(ids), jnp.asarray(mask), plen + new)
        out = jnp.full((bs, new), pad_id, jnp.int32)
        r = _decode_chunk(graphdef, state, cache, token, jnp.zeros((bs,), bool), out, jnp.asarray(new, jnp.int32),
                          jnp.asarray(list(eos_ids) or [-1], jnp.int32), jnp.asarray(pad_id, jnp.int32),
                          settings.chunk)
        jax.block_until_ready(r)
    return time.perf_counter() - t0


def generate_ids(model, prompt_ids: Sequence[Sequence[int]], settings: DecodeSettings, *,
                 eos_ids: Sequence[int], pad_id: int, tokenizer=None,
                 stats: GenerationStats | None = None) -> list[tuple[list[int], str]]:
    """Greedy continuation ids for each prompt (any order in, same order out)."""
    graphdef, state = nnx.split(model)
    order = sorted(range(len(prompt_ids)), key=lambda i: len(prompt_ids[i]))
    results: list[Any] = [None] * len(prompt_ids)
    eos = jnp.asarray(list(eos_ids) or [-1], jnp.int32)
    bs, new = settings.batch_size, settings.max_new_tokens
    for idx, ids, mask, plen in _batches(prompt_ids, order, settings, pad_id):
        t0 = time.perf_counter()
        token, cache = _prefill(graphdef, state, jnp.asarray(ids), jnp.asarray(mask), plen + new)
        done = jnp.asarray(np.arange(bs) >= len(idx))
        out = jnp.full((bs, new), pad_id, jnp.int32)
        step = jnp.asarray(0, jnp.int32)
        finished_by_stop = np.zeros(bs, bool)
        while True:
            step, cache, token, done, out = _decode_chunk(graphdef, state, cache, token, done, out, step, eos,
                                                          jnp.asarray(pad_id, jnp.int32), settings.chunk)
            n = int(step)
            if n >= new or bool(jnp.all(done)):
                break
            if settings.stop_strings and tokenizer is not None:
                host_out, host_done = np.asarray(out[:, :n]), np.asarray(done).copy()
                for r in range(len(idx)):
                    if not host_done[r]:
                        text = tokenizer.decode(host_out[r], skip_special_tokens=True)
                        if _cut_at_stop(text, settings.stop_strings)[1]:
                            host_done[r] = finished_by_stop[r] = True
                done = jnp.asarray(host_done)
                if host_done.all():
                    break
        host_out = np.asarray(out)
        if stats is not None:
            stats.seconds += time.perf_counter() - t0
        for r, i in enumerate(idx):
            row = host_out[r, :n].tolist()
            reason = "length"
            for j, t in enumerate(row):
                if t in eos_ids:
                    row, reason = row[:j + 1], "eos"
                    break
            if reason == "length" and finished_by_stop[r]:
                reason = "stop_string"
            results[i] = (row, reason)
            if stats is not None:
                stats.generated_tokens += len(row)
    return results


def generate(model, tokenizer, prompts: Sequence[str], settings: DecodeSettings = DecodeSettings(), *,
             eos_ids: Sequence[int] | None = None, stats: GenerationStats | None = None) -> list[Generation]:
    """Greedy completions of `prompts` with `model` (a jaxft Transformer, adapted or not)."""
    cfg = model.config
    if eos_ids is None:
        eos_ids = list(cfg.eos_token_ids)
        if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in eos_ids:
            eos_ids.append(tokenizer.eos_token_id)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (eos_ids[0] if eos_ids else 0)
    prompt_ids = [tokenizer(p)["input_ids"] for p in prompts]
    raw = generate_ids(model, prompt_ids, settings, eos_ids=eos_ids, pad_id=pad_id, tokenizer=tokenizer,
                       stats=stats)
    gens = []
    for prompt, (ids, reason) in zip(prompts, raw):
        text = tokenizer.decode(ids, skip_special_tokens=True)
        text, stopped = _cut_at_stop(text, settings.stop_strings)
        if stopped and reason == "length":
            reason = "stop_string"
        gens.append(Generation(prompt=prompt, text=text, token_ids=ids, finish_reason=reason))
    return gens
