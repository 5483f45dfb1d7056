"""LM head + cross-entropy fused and walked in sequence chunks, so [tokens, vocab] logits never exist.

Why: float32 logits dominate training memory (Qwen2.5's 151,936-word vocabulary at 8 x 2048 tokens
is 10 GB per pass) and, on CPU, faulting in buffers of that size costs seconds of system time per
step. A custom VJP walks the chunks with lax.scan and keeps one chunk's [batch, chunk, vocab]
logits at a time. Under differentiation the forward walk also turns each chunk's logits into that
chunk's gradient with respect to the hidden states and the head weights, so the backward only
scales those by the incoming cotangent: the head costs three matmuls, as unfused, instead of the
four of a backward that recomputes the logits.

Numbers: matmuls in the hidden states' dtype with float32 accumulation (as the model's own head);
softmax, log-sum-exp and the loss in float32; both gradients kept in float32 and cast once. The
[chunk, vocab] logit gradient is cast to the compute dtype for its two matmuls (bfloat16 on
accelerators), where the unfused path multiplies it in float32.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jaxft.errors import ConfigError

Array = jax.Array
LOSS_IMPLS = ("chunked", "dense")
DEFAULT_CHUNK = 512  # tokens per chunk per device: 512 x 151,936 float32 logits are 0.3 GB


def check_loss_settings(impl: str, chunk: int) -> None:
    """A clear error for config.loss_impl / config.loss_chunk."""
    if impl not in LOSS_IMPLS:
        raise ConfigError(f"config.loss_impl={impl!r}; allowed: {', '.join(LOSS_IMPLS)}")
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ConfigError(f"config.loss_chunk={chunk!r}: expected a positive integer (tokens per chunk)")


def chunk_positions(batch: int, seq: int, chunk: int, batch_shards: int = 1) -> int:
    """Sequence positions per chunk: each batch shard (device) then holds about `chunk` tokens.

    Chunks cut the sequence axis, not the batch axis, so a batch sharded over devices stays sharded.
    """
    local = max(1, batch // max(1, batch_shards))
    return max(1, min(seq, chunk // local))


def lm_head_cross_entropy_sum(hidden: Array, weight: Array, targets: Array, loss_mask: Array, *,
                              chunk: int = DEFAULT_CHUNK, batch_shards: int = 1) -> tuple[Array, Array]:
    """(sum(mask · CE(hidden · weightᵀ, targets)), sum(mask)) in float32, as `cross_entropy_sum` of the
    model's logits, without the logits.

    hidden [b, s, h] after the final norm, in the compute dtype; weight [vocab, h] (the tied
    embedding or lm_head, any dtype: cast to the compute dtype as the head does); targets [b, s]
    int; loss_mask [b, s]. A masked token adds nothing whatever its target (-1 padding is fine); an
    unmasked target outside [0, vocab) makes the loss NaN (the train step then skips the update).
    """
    b, s, h = hidden.shape
    if weight.ndim != 2 or weight.shape[1] != h:
        raise ValueError(f"lm head weight {weight.shape} does not match hidden size {h}")
    mask = loss_mask.astype(jnp.float32)
    targets = targets.astype(jnp.int32)
    sc = chunk_positions(b, s, chunk, batch_shards)
    n = math.ceil(s / sc)
    pad = n * sc - s
    if pad:
        hidden = jnp.pad(hidden, ((0, 0), (0, pad), (0, 0)))
        targets = jnp.pad(targets, ((0, 0), (0, pad)))
        mask_p = jnp.pad(mask, ((0, 0), (0, pad)))
    else:
        mask_p = mask

    def blocks(x):  # [b, n*sc, ...] -> [n, b, sc, ...]: the scan walks the leading axis
        return jnp.moveaxis(x.reshape(b, n, sc, *x.shape[2:]), 1, 0)

    total = _chunked_xent(blocks(hidden), weight, blocks(targets), blocks(mask_p))
    return total, jnp.sum(mask)


def _logits(x: Array, w: Array) -> Array:
    """[b, c, h] x [V, h] -> float32 [b, c, V]: the head's own contraction."""
    return jax.lax.dot_general(x, w, (((2,), (1,)), ((), ())), preferred_element_type=jnp.float32)


def _token_losses(logits: Array, t: Array, m: Array) -> tuple[Array, Array]:
    """Per-token masked CE, and the log-sum-exp that normalises the softmax."""
    vocab = logits.shape[-1]
    lse = jax.nn.logsumexp(logits, axis=-1)
    valid = (t >= 0) & (t < vocab)
    picked = jnp.take_along_axis(logits, jnp.clip(t, 0, vocab - 1)[..., None], axis=-1)[..., 0]
    picked = jnp.where(valid, picked, jnp.nan)
    return jnp.where(m != 0, m * (lse - picked), 0.0), lse


@jax.custom_vjp
def _chunked_xent(x: Array, w: Array, t: Array, m: Array) -> Array:
    """Without differentiation only the loss is computed: one matmul per chunk."""
    wc = w.astype(x.dtype)

    def body(total, xs):
        xb, tb, mb = xs
        return total + jnp.sum(_token_losses(_logits(xb, wc), tb, mb)[0]), None

    return jax.lax.scan(body, jnp.zeros((), jnp.float32), (x, t, m))[0]


def _forward(x, w, t, m):
    """Loss and its gradient in one walk over the chunks: each chunk's logits are used and dropped
    before the next chunk's exist. Only d(loss)/dx (float32, the size of x) and d(loss)/dw (float32)
    are kept for the backward; when w is frozen XLA drops the dw matmuls as dead code."""
    wc = w.astype(x.dtype)
    vocab = w.shape[0]

    def body(carry, xs):
        total, dw = carry
        xb, tb, mb = xs
        logits = _logits(xb, wc)
        losses, lse = _token_losses(logits, tb, mb)
        probs = jnp.exp(logits - lse[..., None])
        onehot = tb[..., None] == jnp.arange(vocab, dtype=tb.dtype)
        g = ((probs - onehot) * jnp.where(mb != 0, mb, 0.0)[..., None]).astype(x.dtype)  # dCE/dlogits
        dx = jax.lax.dot_general(g, wc, (((2,), (0,)), ((), ())), preferred_element_type=jnp.float32)
        dw = dw + jax.lax.dot_general(g, xb, (((0, 1), (0, 1)), ((), ())), preferred_element_type=jnp.float32)
        return (total + jnp.sum(losses), dw), dx

    zeros = (jnp.zeros((), jnp.float32), jnp.zeros(w.shape, jnp.float32))
    (total, dw), dx = jax.lax.scan(body, zeros, (x, t, m))
    dtypes = (jnp.zeros((0,), x.dtype), jnp.zeros((0,), w.dtype))  # residuals must be arrays
    return total, (dx, dw, dtypes)


def _backward(res, ct):
    dx, dw, (x_like, w_like) = res
    return (dx * ct).astype(x_like.dtype), (dw * ct).astype(w_like.dtype), None, None


_chunked_xent.defvjp(_forward, _backward)
