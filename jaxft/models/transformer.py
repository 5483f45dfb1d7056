"""One decoder-only transformer for Llama, Qwen2/3, OLMo and Gemma 1/3, switched by ModelConfig flags.

Parameter paths follow Hugging Face (`model.layers.3.self_attn.q_proj.weight`) and linear weights
keep HF's [out, in] layout, so import, export and PEFT target patterns need no renaming.
Compute dtype and parameter dtype are separate: parameters are cast at use.

Sliding-window (local) and full-attention (global) layers differ only in their mask and rope table,
never in structure: the model computes both variants once per call and each layer picks its own, so
mixed stacks (Gemma 3) still run as one lax.scan with the per-layer kind as a scanned flag.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from jaxft.models.config import ModelConfig, RopeScaling

Array = jax.Array
_NEG = -1e30  # finite, so a fully masked (padding) row gives a uniform softmax, never NaN
ATTENTION_IMPLS = ("xla", "dpa", "cudnn", "chunked")
ATTENTION_CHUNK = 512  # query rows per block of the "chunked" path


class FusedMask(NamedTuple):
    """What a fused attention kernel gets instead of an additive [b, s, t] bias: causal always, plus a
    boolean [b, 1, s, t] mask only when padding or packing needs one (None keeps the flash fast path:
    a caller that passes no attention_mask and no segment_ids promises rows without padding).
    `local_mask` is the sliding layers' mask (the window included); with no mask at all they pass the
    window to the kernel as `local_window_size` instead."""

    mask: Array | None
    impl: str
    local_mask: Array | None = None
    window: int | None = None


class ChunkedBias(NamedTuple):
    """The additive [b, s, t] bias, for attention computed ATTENTION_CHUNK query rows at a time."""

    bias: Array


def _scores_attention(q: Array, k: Array, v: Array, bias: Array) -> Array:
    """Explicit scores: q [b, s, kv, g, d] (pre-scaled), k/v [b, t, kv, d], bias [b, s, t]."""
    scores = jnp.einsum("bskgd,btkd->bkgst", q, k, preferred_element_type=jnp.float32)
    probs = jax.nn.softmax(scores + bias[:, None, None, :, :], axis=-1).astype(v.dtype)
    return jnp.einsum("bkgst,btkd->bskgd", probs, v)


def _chunked_attention(q: Array, k: Array, v: Array, bias: Array) -> Array:
    """The same numbers as `_scores_attention`, one block of query rows at a time, each block
    rematerialised in the backward pass: no [b, h, s, s] scores exist at once, only [b, h, chunk, s].
    Every block sees all keys, so its softmax is complete: exact, not an online approximation."""
    b, s = q.shape[:2]
    chunk = min(ATTENTION_CHUNK, s)
    if s % chunk:
        return _scores_attention(q, k, v, bias)
    n = s // chunk
    qs = q.reshape(b, n, chunk, *q.shape[2:]).swapaxes(0, 1)
    bs = bias.reshape(b, n, chunk, bias.shape[-1]).swapaxes(0, 1)
    block = jax.checkpoint(lambda qb, bb: _scores_attention(qb, k, v, bb), prevent_cse=False)
    out = jax.lax.map(lambda xs: block(*xs), (qs, bs))
    return out.swapaxes(0, 1).reshape(q.shape)


def _fold(rng: Array | None, i: int) -> Array | None:
    return None if rng is None else jax.random.fold_in(rng, i)


# Up to this many rows (decode steps: one token per sequence) XLA:CPU computes x Wᵀ faster as (W xᵀ)ᵀ.
FEW_ROWS = 64


def project(x: Array, w: Array, preferred_element_type=None) -> Array:
    """x Wᵀ for W in HF layout [out, in], as one 2-D GEMM over all leading dims flattened.

    With a 3-D einsum the weight gradient contracts over (batch, token) and XLA:CPU fuses the
    preceding elementwise backward op (SiLU's, RMSNorm's) into a transpose copy of the [tokens, out]
    cotangent; on the flattened 2-D dot it feeds the GEMM directly (train step -19%, BENCHMARKS.md).
    For 2..FEW_ROWS rows on CPU the weight is the GEMM's left operand and the small [out, rows]
    result is transposed after a barrier (else XLA folds the transpose back into the dot): the
    weight streams through once instead of being packed for a skinny product, 1.3-1.7x faster per
    decode step's matmuls at 4-32 rows (BENCHMARKS.md). One row stays a plain GEMV.
    """
    x2 = x.reshape(-1, x.shape[-1])
    if 1 < x2.shape[0] <= FEW_ROWS and jax.default_backend() == "cpu":
        y = jax.lax.optimization_barrier(jnp.dot(w, x2.T, preferred_element_type=preferred_element_type)).T
    else:
        y = jnp.dot(x2, w.T, preferred_element_type=preferred_element_type)
    return y.reshape(*x.shape[:-1], w.shape[0])


class Linear(nnx.Module):
    """y = x W^T (+ b) with W in HF layout [out, in].

    jaxft.peft swaps instances for adapter subclasses that keep `weight`/`bias` and add
    `lora_A`, `lora_B` (and `lora_magnitude_vector`); `rng` feeds their dropout.
    """

    def __init__(self, in_features: int, out_features: int, *, bias: bool, dtype: Any,
                 param_dtype: Any, rngs: nnx.Rngs):
        self.in_features = in_features
        self.out_features = out_features
        self.dtype = dtype
        init = jax.nn.initializers.normal(0.02)
        self.weight = nnx.Param(init(rngs.params(), (out_features, in_features), param_dtype))
        self.bias = nnx.Param(jnp.zeros((out_features,), param_dtype)) if bias else None

    def base(self, x: Array) -> Array:
        y = project(x.astype(self.dtype), self.weight[...].astype(self.dtype))
        if self.bias is not None:
            y = y + self.bias[...].astype(self.dtype)
        return y

    def __call__(self, x: Array, rng: Array | None = None) -> Array:
        del rng
        return self.base(x)


class Norm(nnx.Module):
    """RMSNorm (Llama/Qwen2), RMSNorm scaled by (1 + w) (Gemma), or non-parametric LayerNorm (OLMo)."""

    def __init__(self, size: int, *, kind: str, eps: float, param_dtype: Any):
        self.kind = kind
        self.eps = eps
        if kind == "rmsnorm":
            self.weight = nnx.Param(jnp.ones((size,), param_dtype))
        elif kind == "rmsnorm_plus_one":
            self.weight = nnx.Param(jnp.zeros((size,), param_dtype))
        else:
            self.weight = None

    def __call__(self, x: Array) -> Array:
        dtype = x.dtype
        h = x.astype(jnp.float32)
        if self.kind == "layernorm_nonparam":
            mean = h.mean(-1, keepdims=True)
            var = jnp.square(h - mean).mean(-1, keepdims=True)
            return ((h - mean) * jax.lax.rsqrt(var + self.eps)).astype(dtype)
        h = h * jax.lax.rsqrt(jnp.square(h).mean(-1, keepdims=True) + self.eps)
        if self.kind == "rmsnorm_plus_one":  # Gemma scales in float32, then casts
            return (h * (1.0 + self.weight[...].astype(jnp.float32))).astype(dtype)
        return self.weight[...].astype(dtype) * h.astype(dtype)  # Llama casts, then scales


def rope_inv_freq(head_dim: int, theta: float, scaling: RopeScaling | None = None) -> Array:
    """float32 inverse frequencies, with HF's linear or llama3 scaling (modeling_rope_utils)."""
    inv_freq = 1.0 / (theta ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim))
    if scaling is None:
        return inv_freq
    factor = jnp.float32(scaling.factor)
    if scaling.rope_type == "linear":
        return inv_freq / factor
    old = scaling.original_max_position_embeddings
    low, high = scaling.low_freq_factor, scaling.high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    scaled = jnp.where(wavelen > old / low, inv_freq / factor, inv_freq)
    smooth = (old / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < old / high) & ~(wavelen > old / low)
    return jnp.where(medium, smoothed, scaled)


def rope_cos_sin(positions: Array, head_dim: int, theta: float, dtype: Any,
                 scaling: RopeScaling | None = None) -> tuple[Array, Array]:
    inv_freq = rope_inv_freq(head_dim, theta, scaling)
    freqs = positions.astype(jnp.float32)[..., None] * inv_freq  # [b, s, d/2]
    emb = jnp.concatenate([freqs, freqs], axis=-1)
    return jnp.cos(emb).astype(dtype), jnp.sin(emb).astype(dtype)


def apply_rope(x: Array, cos: Array, sin: Array) -> Array:
    """HF's non-interleaved (rotate_half) convention; x is [b, s, heads, d]."""
    half = x.shape[-1] // 2
    rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos[:, :, None, :] + rotated * sin[:, :, None, :]


def _pick(variants: tuple, local: Any) -> Any:
    """A layer's (global, local) variant of the rope table or the bias: by a Python bool in unrolled
    layers, by a traced flag inside the layer scan (where `_scan_layers` has already picked, so only
    one variant arrives)."""
    if len(variants) == 1:
        return variants[0]
    return variants[int(local)]


def _cached_attention(q: Array, k_all: Array, v_all: Array, bias: Array, kvh: int, scale: float) -> Array:
    """Attention of q [b, s, heads, d] over the cache [b, kv_heads, t, d]: two plain batched GEMMs with
    (batch, kv_head) as batch dims and the query group folded into the rows. Decoding (s = 1) then
    needs no transpose at all; XLA:CPU runs this 2.2x faster than the 5-d einsum at batch 32."""
    b, s, nh, d = q.shape
    g = nh // kvh
    q = q.reshape(b, s, kvh, g, d).transpose(0, 2, 3, 1, 4).reshape(b, kvh, g * s, d)
    q = q * jnp.asarray(scale, q.dtype)
    batch = ((0, 1), (0, 1))
    scores = jax.lax.dot_general(q, k_all.astype(q.dtype), (((3,), (3,)), batch),
                                 preferred_element_type=jnp.float32)  # [b, kv, g*s, t]
    scores = scores.reshape(b, kvh, g, s, -1) + bias[:, None, None, :, :]
    probs = jax.nn.softmax(scores, axis=-1).astype(v_all.dtype).reshape(b, kvh, g * s, -1)
    out = jax.lax.dot_general(probs, v_all, (((3,), (2,)), batch))  # [b, kv, g*s, d]
    return out.reshape(b, kvh, g, s, d).transpose(0, 3, 1, 2, 4).reshape(b, s, nh * d)


class Attention(nnx.Module):
    def __init__(self, cfg: ModelConfig, *, dtype: Any, param_dtype: Any, rngs: nnx.Rngs):
        self.cfg = cfg
        h, d = cfg.hidden_size, cfg.head_dim
        qkv_bias = cfg.attention_bias or cfg.qkv_bias
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.q_proj = Linear(h, cfg.num_attention_heads * d, bias=qkv_bias, **kw)
        self.k_proj = Linear(h, cfg.num_key_value_heads * d, bias=qkv_bias, **kw)
        self.v_proj = Linear(h, cfg.num_key_value_heads * d, bias=qkv_bias, **kw)
        self.o_proj = Linear(cfg.num_attention_heads * d, h, bias=cfg.attention_bias, **kw)
        if cfg.qk_norm:  # per head, over head_dim (HF self_attn.q_norm / k_norm)
            nkw = dict(kind=cfg.norm_type, eps=cfg.norm_eps, param_dtype=param_dtype)
            self.q_norm = Norm(d, **nkw)
            self.k_norm = Norm(d, **nkw)

    def __call__(self, x: Array, rope: tuple, bias: Any, local: Any,
                 cache: tuple[Array, Array, Array] | None, rng: Array | None):
        """`rope` and `bias`: the (global[, local]) variants (a FusedMask holds both); `local`: whether
        this is a sliding-window layer (a Python bool, or a traced flag inside the layer scan)."""
        cfg = self.cfg
        b, s, _ = x.shape
        nh, kvh, d = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        scale = cfg.attn_scale
        q = self.q_proj(x, _fold(rng, 0))
        k = self.k_proj(x, _fold(rng, 1))
        v = self.v_proj(x, _fold(rng, 2))
        if cfg.clip_qkv is not None:
            q, k, v = (jnp.clip(t, -cfg.clip_qkv, cfg.clip_qkv) for t in (q, k, v))
        q, k = q.reshape(b, s, nh, d), k.reshape(b, s, kvh, d)
        if cfg.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        cos, sin = _pick(rope, local)
        q = apply_rope(q, cos, sin)
        k = apply_rope(k, cos, sin)
        v = v.reshape(b, s, kvh, d)
        if cache is not None:  # write this chunk at `index`, attend over the whole static cache
            k_cache, v_cache, index = cache
            # Cache layout [b, kv_heads, t, d]: both attention dots then read it without a transpose.
            k_all = jax.lax.dynamic_update_slice(k_cache, k.transpose(0, 2, 1, 3).astype(k_cache.dtype),
                                                 (0, 0, index, 0))
            v_all = jax.lax.dynamic_update_slice(v_cache, v.transpose(0, 2, 1, 3).astype(v_cache.dtype),
                                                 (0, 0, index, 0))
            out = _cached_attention(q, k_all, v_all, _pick(bias, local), kvh, scale)
            return self.o_proj(out, _fold(rng, 3)), (k_all, v_all)
        if isinstance(bias, FusedMask):  # training/eval without cache: one fused kernel
            def fused(is_local: bool) -> Array:
                mask = bias.local_mask if is_local else bias.mask
                window = (bias.window - 1, 0) if is_local and mask is None else None
                return jax.nn.dot_product_attention(
                    q, k, v, mask=mask, is_causal=True, scale=scale, local_window_size=window,
                    implementation=None if bias.impl == "dpa" else bias.impl)

            # The window is static for the kernel: a traced flag (layer scan) picks one of two calls.
            out = fused(local) if isinstance(local, bool) else jax.lax.cond(
                local, lambda: fused(True), lambda: fused(False))
            return self.o_proj(out.reshape(b, s, nh * d), _fold(rng, 3)), None
        bias = _pick(bias, local)
        q = q.reshape(b, s, kvh, nh // kvh, d) * jnp.asarray(scale, q.dtype)
        if isinstance(bias, ChunkedBias):
            out = _chunked_attention(q, k, v, bias.bias)
        else:
            out = _scores_attention(q, k, v, bias)
        return self.o_proj(out.reshape(b, s, nh * d), _fold(rng, 3)), None


class MLP(nnx.Module):
    def __init__(self, cfg: ModelConfig, *, dtype: Any, param_dtype: Any, rngs: nnx.Rngs):
        kw = dict(bias=cfg.mlp_bias, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.act = cfg.hidden_act
        self.gate_proj = Linear(cfg.hidden_size, cfg.intermediate_size, **kw)
        self.up_proj = Linear(cfg.hidden_size, cfg.intermediate_size, **kw)
        self.down_proj = Linear(cfg.intermediate_size, cfg.hidden_size, **kw)

    def __call__(self, x: Array, rng: Array | None) -> Array:
        g = self.gate_proj(x, _fold(rng, 4))
        g = jax.nn.silu(g) if self.act == "silu" else jax.nn.gelu(g, approximate=True)
        return self.down_proj(g * self.up_proj(x, _fold(rng, 5)), _fold(rng, 6))


class DecoderLayer(nnx.Module):
    def __init__(self, cfg: ModelConfig, *, dtype: Any, param_dtype: Any, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        nkw = dict(kind=cfg.norm_type, eps=cfg.norm_eps, param_dtype=param_dtype)
        self.self_attn = Attention(cfg, **kw)
        self.mlp = MLP(cfg, **kw)
        self.input_layernorm = Norm(cfg.hidden_size, **nkw)
        self.post_attention_layernorm = Norm(cfg.hidden_size, **nkw)
        self.sandwich = cfg.sandwich_norms
        if cfg.sandwich_norms:  # Gemma 3: post_attention_layernorm normalises the attention output
            self.pre_feedforward_layernorm = Norm(cfg.hidden_size, **nkw)
            self.post_feedforward_layernorm = Norm(cfg.hidden_size, **nkw)

    def __call__(self, x, rope, bias, local, cache, rng):
        a, new_cache = self.self_attn(self.input_layernorm(x), rope, bias, local, cache, rng)
        if self.sandwich:
            x = x + self.post_attention_layernorm(a)
            return x + self.post_feedforward_layernorm(self.mlp(self.pre_feedforward_layernorm(x), rng)), new_cache
        x = x + a
        x = x + self.mlp(self.post_attention_layernorm(x), rng)
        return x, new_cache


class Embedding(nnx.Module):
    def __init__(self, vocab: int, size: int, *, param_dtype: Any, rngs: nnx.Rngs):
        self.weight = nnx.Param(jax.nn.initializers.normal(0.02)(rngs.params(), (vocab, size), param_dtype))

    def __call__(self, ids: Array, dtype: Any) -> Array:
        return jnp.take(self.weight[...], ids, axis=0).astype(dtype)


class Backbone(nnx.Module):
    """HF's `model.` prefix: embeddings, layers, final norm."""

    def __init__(self, cfg: ModelConfig, *, dtype: Any, param_dtype: Any, rngs: nnx.Rngs):
        self.embed_tokens = Embedding(cfg.vocab_size, cfg.hidden_size, param_dtype=param_dtype, rngs=rngs)
        self.layers = nnx.List([
            DecoderLayer(cfg, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
            for _ in range(cfg.num_hidden_layers)
        ])
        self.norm = Norm(cfg.hidden_size, kind=cfg.norm_type, eps=cfg.norm_eps, param_dtype=param_dtype)


def positions_from_mask(attention_mask: Array) -> Array:
    """Position ids for left-padded rows: 0 at the first real token, as HF generate does."""
    return jnp.maximum(jnp.cumsum(attention_mask.astype(jnp.int32), axis=-1) - 1, 0)


class Transformer(nnx.Module):
    """Causal LM: `model(input_ids[, attention_mask]) -> float32 logits [batch, seq, vocab]`."""

    def __init__(self, cfg: ModelConfig, *, dtype: Any = jnp.float32, param_dtype: Any = jnp.float32,
                 rngs: nnx.Rngs | None = None, scan_layers: bool = False, remat: str = "none",
                 attention: str = "xla"):
        rngs = rngs if rngs is not None else nnx.Rngs(0)
        self.config = cfg
        self.dtype = jnp.dtype(dtype)
        self.scan_layers = scan_layers  # lax.scan over layers: compile time independent of depth
        self.remat = remat  # "none" | "full" | "dots": rematerialise each layer in the backward pass
        # "xla": explicit scores + additive bias (default, exact reference path); "dpa":
        # jax.nn.dot_product_attention; "cudnn": its cuDNN flash kernel (GPU, bfloat16/float16 only);
        # "chunked": the explicit path a block of query rows at a time (no [b, h, s, s] scores; TPU).
        self.attention = attention
        self.model = Backbone(cfg, dtype=self.dtype, param_dtype=param_dtype, rngs=rngs)
        if not cfg.tie_word_embeddings:
            self.lm_head = Linear(cfg.hidden_size, cfg.vocab_size, bias=False, dtype=self.dtype,
                                  param_dtype=param_dtype, rngs=rngs)

    def __call__(self, input_ids: Array, attention_mask: Array | None = None, *,
                 positions: Array | None = None, segment_ids: Array | None = None,
                 cache: dict | None = None, dropout_rng: Array | None = None, return_hidden: bool = False,
                 last_logits_only: bool = False):
        """Without `cache`: logits. With `cache` (see `init_cache`): (logits, new cache).

        `dropout_rng=None` means deterministic (evaluation); adapters use it for dropout.
        `last_logits_only` projects only the final position (prefill needs no [b, s, vocab] tensor).
        `segment_ids` (packed training rows: 1, 2, ... per example, 0 = padding) keeps attention inside
        each example (and a sliding layer's also inside its window); pass the per-example `positions`.
        """
        cfg = self.config
        b, s = input_ids.shape
        attention_mask_given = attention_mask is not None
        if attention_mask is None:
            attention_mask = (segment_ids > 0) if segment_ids is not None else jnp.ones((b, s), jnp.int32)
        attention_mask = attention_mask.astype(jnp.int32)
        if cache is None:
            if positions is None:
                positions = positions_from_mask(attention_mask)
            key_valid = attention_mask
            causal = jnp.arange(s)[None, :] <= jnp.arange(s)[:, None]
            index = None
        else:
            index = cache["index"]
            if positions is None:
                positions = cache["next_position"][:, None] + positions_from_mask(attention_mask)
            key_valid = jax.lax.dynamic_update_slice(cache["mask"], attention_mask, (0, index))
            t = cache["mask"].shape[1]
            causal = jnp.arange(t)[None, :] <= (index + jnp.arange(s))[:, None]
        no_padding = not attention_mask_given and segment_ids is None
        allowed = causal[None, :, :] & (key_valid[:, None, :] > 0)
        if segment_ids is not None and cache is None:
            allowed = allowed & (segment_ids[:, :, None] == segment_ids[:, None, :])
        local_layers = cfg.local_layers
        variants = (allowed,)
        if any(local_layers):  # sliding window on cache (= row) indices, as HF's masks count it
            query_at = jnp.arange(s) if cache is None else index + jnp.arange(s)
            near = (query_at[:, None] - jnp.arange(allowed.shape[-1])[None, :]) < cfg.sliding_window
            variants = (allowed, allowed & near[None])
        if self.attention not in ATTENTION_IMPLS:
            raise ValueError(f"attention={self.attention!r}; allowed: {ATTENTION_IMPLS}")
        if cache is None and self.attention in ("dpa", "cudnn"):
            masks = [None if no_padding else a[:, None] for a in variants]
            bias = FusedMask(masks[0], self.attention, masks[-1], cfg.sliding_window)
        else:
            bias = tuple(jnp.where(a, 0.0, _NEG).astype(jnp.float32) for a in variants)
            if cache is None and self.attention == "chunked":
                bias = tuple(ChunkedBias(b_) for b_ in bias)

        x = self.model.embed_tokens(input_ids, self.dtype)
        if cfg.scale_embeddings:
            x = x * jnp.asarray(cfg.embed_scale, self.dtype)
        rope = (rope_cos_sin(positions, cfg.head_dim, cfg.rope_theta, self.dtype, cfg.rope_scaling),)
        if any(local_layers):
            theta = cfg.rope_local_theta if cfg.rope_local_theta is not None else cfg.rope_theta
            rope = (*rope, rope_cos_sin(positions, cfg.head_dim, theta, self.dtype))
        new_k, new_v = [], []
        scanned = self._scan_layers(x, rope, bias, dropout_rng) if cache is None else None
        for i, layer in enumerate(self.model.layers if scanned is None else ()):
            layer_cache = None if cache is None else (cache["k"][i], cache["v"][i], index)
            x, c = layer(x, rope, bias, local_layers[i], layer_cache, _fold(dropout_rng, i))
            if c is not None:
                new_k.append(c[0])
                new_v.append(c[1])
        if scanned is not None:
            x = scanned
        if last_logits_only:
            x = x[:, -1:]
        x = self.model.norm(x)
        if return_hidden:
            return x
        if cfg.tie_word_embeddings:
            w = self.model.embed_tokens.weight[...]
        else:
            w = self.lm_head.weight[...]
        logits = project(x, w.astype(self.dtype), preferred_element_type=jnp.float32)
        if cache is None:
            return logits
        new_cache = {
            "k": tuple(new_k), "v": tuple(new_v), "mask": key_valid,
            "index": index + s,
            "next_position": positions[:, -1] + 1,
        }
        return logits, new_cache


    def _scan_layers(self, x, rope, bias, dropout_rng):
        """All layers as one lax.scan over stacked parameters, or None when that is off or impossible
        (layers adapted differently have different structures and stay unrolled). Sliding and full
        layers differ only in the mask and rope table they pick: a scanned per-layer flag selects
        them from the two variants stacked once (a FusedMask takes the flag itself)."""
        layers = list(self.model.layers)
        if not (self.scan_layers or self.remat != "none") or len(layers) < 2:
            return None
        splits = [nnx.split(layer) for layer in layers]
        graphdef = splits[0][0]
        if any(g != graphdef for g, _ in splits):
            return None
        policies = {"full": None, "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable}
        local_layers = self.config.local_layers
        mixed = len(set(local_layers)) > 1
        flags = jnp.asarray(local_layers)
        stack = lambda *v: jax.tree.map(lambda *a: jnp.stack(a), *v)  # noqa: E731
        rope_stack = stack(*rope) if mixed else None
        bias_stack = stack(*bias) if mixed and not isinstance(bias, FusedMask) else None

        def body(h, inputs):
            state, key, local = inputs
            layer_rope, layer_bias = rope, bias
            if not mixed:  # one kind everywhere: the same static choice as the unrolled loop
                local = local_layers[0]
            else:
                at = local.astype(jnp.int32)
                layer_rope = (jax.tree.map(lambda a: a[at], rope_stack),)
                if bias_stack is not None:
                    layer_bias = (jax.tree.map(lambda a: a[at], bias_stack),)
            h, _ = nnx.merge(graphdef, state)(h, layer_rope, layer_bias, local, None, key)
            return h, None

        if self.remat != "none":
            body = jax.checkpoint(body, policy=policies[self.remat], prevent_cse=False)
        keys = None
        if dropout_rng is not None:
            keys = jnp.stack([jax.random.fold_in(dropout_rng, i) for i in range(len(layers))])
        if not self.scan_layers:  # remat without scan: still one layer at a time
            for i, (_, state) in enumerate(splits):
                x, _ = body(x, (state, None if keys is None else keys[i], flags[i]))
            return x
        stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves), *[state for _, state in splits])
        x, _ = jax.lax.scan(body, x, (stacked, keys, flags))
        return x


def init_cache(cfg: ModelConfig, batch: int, max_len: int, dtype: Any = jnp.float32) -> dict:
    """A static-shape KV cache: per layer, k and v of [batch, kv_heads, max_len, head_dim].

    Kept as tuples of per-layer arrays so updates inside a while_loop stay in place.
    """
    shape = (batch, cfg.num_key_value_heads, max_len, cfg.head_dim)
    layers = range(cfg.num_hidden_layers)
    return {
        "k": tuple(jnp.zeros(shape, dtype) for _ in layers),
        "v": tuple(jnp.zeros(shape, dtype) for _ in layers),
        "mask": jnp.zeros((batch, max_len), jnp.int32),
        "index": jnp.asarray(0, jnp.int32),
        "next_position": jnp.zeros((batch,), jnp.int32),
    }
