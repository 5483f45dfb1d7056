"""LoRA and DoRA linear layers that reproduce HF PEFT 0.21's forward math and parameter names.

Each adapter subclasses `Linear` and keeps its `weight`/`bias` Variables, so base parameter paths do
not move; it adds `lora_A` [r, in], `lora_B` [out, r] (and `lora_magnitude_vector` [out]) as
`nnx.LoRAParam`, which is what `jaxft.peft.partition` selects as trainable. Adapter parameters are
stored in float32 whatever the base storage dtype (PEFT's default `autocast_adapter_dtype`) and are
cast to the compute dtype at use.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from flax import nnx

from jaxft.models.transformer import Linear, project

Array = jax.Array
ADAPTER_DTYPE = jnp.float32
_HI = jax.lax.Precision.HIGHEST  # the norm terms are tiny matmuls; keep them exact on TPU/GPU too


def lora_scaling(r: int, alpha: float, rslora: bool) -> float:
    return alpha / math.sqrt(r) if rslora else alpha / r


def wide(dtype) -> jnp.dtype:
    """The dtype an adapter sums its terms in: float32, or the compute dtype when that is wider."""
    return jnp.promote_types(dtype, jnp.float32)


def keep_mask(rng: Array, p: float, shape: tuple[int, ...]) -> Array:
    """The Bernoulli(1 - p) keep mask adapter dropout uses; tests rebuild it from the same key."""
    return jax.random.bernoulli(rng, 1.0 - p, shape)


def dropout(x: Array, rng: Array | None, p: float) -> Array:
    """Inverted dropout like torch.nn.Dropout (x * mask / (1 - p)); rng None means evaluation."""
    if rng is None or p == 0.0:
        return x
    return jnp.where(keep_mask(rng, p, x.shape), x * jnp.asarray(1.0 / (1.0 - p), x.dtype), 0).astype(x.dtype)


@functools.partial(jax.jit, static_argnums=(2, 3))
def init_lora_A(seed_key: Array, index: int, r: int, in_features: int) -> Array:
    """torch's kaiming_uniform_(a=sqrt(5)) on an [r, in] matrix: bound sqrt(6/((1+5)*in)) = 1/sqrt(in).

    Jitted (with the key fold) because models have hundreds of target layers of a few shapes.
    """
    bound = 1.0 / math.sqrt(in_features)
    key = jax.random.fold_in(seed_key, index)
    return jax.random.uniform(key, (r, in_features), ADAPTER_DTYPE, -bound, bound)


@functools.partial(jax.jit, static_argnums=(3,))
def dora_weight_norm(weight: Array, lora_A: Array, lora_B: Array, scaling: float) -> Array:
    """Row norms ||W + s·B·A|| (at least float32) without building the [out, in] matrix B·A.

    ||W_i + s(BA)_i||² = ||W_i||² + 2s·Σ_j B_ij (W Aᵀ)_ij + s²·B_i (A Aᵀ) B_iᵀ, so the temporaries are
    W·Aᵀ [out, r] and A·Aᵀ [r, r]; work is O(out·in·r) and memory O(out·r) beyond W itself (the ||W||²
    term is a fused reduction). The expansion loses precision only if an adapter nearly cancels a
    weight row (W_i + s(BA)_i ≈ 0), which training does not reach.
    """
    f = jnp.result_type(weight, lora_A, lora_B, jnp.float32)  # float32, or float64 under x64
    w, a, b = weight.astype(f), lora_A.astype(f), lora_B.astype(f)
    wa = jnp.einsum("oi,ri->or", w, a, precision=_HI)
    gram = jnp.einsum("ri,qi->rq", a, a, precision=_HI)
    sq = (jnp.sum(w * w, axis=1) + 2.0 * scaling * jnp.sum(b * wa, axis=1)
          + scaling * scaling * jnp.sum(jnp.einsum("or,rq->oq", b, gram, precision=_HI) * b, axis=1))
    return jnp.sqrt(jnp.maximum(sq, 0.0))


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def low_rank(x: Array, a: Array, b: Array, scaling: float) -> Array:
    """s·(x Aᵀ) Bᵀ with the scale on the rank-r activation; B·A is never formed. The result is
    accumulated and returned in float32 (at least) so that the adapter's sum is rounded once.

    The custom VJP only fixes the contraction layouts: autodiff's dB = dyᵀ·h makes XLA:CPU transpose
    the [tokens, out] cotangent of every adapted layer, while (hᵀ·dy)ᵀ transposes the [tokens, r]
    activation and the [r, out] result instead.
    """
    return _low_rank_fwd(x, a, b, scaling)[0]


def _low_rank_fwd(x, a, b, scaling):
    h = jnp.einsum("...i,ri->...r", x, a) * jnp.asarray(scaling, x.dtype)
    return jnp.einsum("...r,or->...o", h, b, preferred_element_type=wide(x.dtype)), (x, a, b, h)


def _low_rank_bwd(scaling, res, g):
    x, a, b, h = res
    g = g.astype(x.dtype)
    gh = jnp.einsum("...o,or->...r", g, b) * jnp.asarray(scaling, g.dtype)
    rows = math.prod(x.shape[:-1])
    x2, g2, h2, gh2 = (t.reshape(rows, t.shape[-1]) for t in (x, g, h, gh))
    db = jnp.einsum("tr,to->ro", h2, g2).T
    da = jnp.einsum("tr,ti->ri", gh2, x2)
    dx = jnp.einsum("...r,ri->...i", gh, a)
    return dx, da.astype(a.dtype), db.astype(b.dtype)


low_rank.defvjp(_low_rank_fwd, _low_rank_bwd)


@jax.custom_vjp
def wide_project(x: Array, w: Array) -> Array:
    """`project` accumulated and returned in float32 (at least), for an adapter to add to before its
    one rounding. The VJP rounds the cotangent to the compute dtype, as a compute-dtype output would
    have it, so the backward GEMMs stay bf16 x bf16: a float32 cotangent would have XLA upcast W and
    run float32 GEMMs on accelerators."""
    return project(x, w, preferred_element_type=wide(x.dtype))


def _wide_project_fwd(x, w):
    # not wide_project itself: a nested custom_vjp call would hide the dot from remat's "dots" policy
    return project(x, w, preferred_element_type=wide(x.dtype)), (x, w)


def _wide_project_bwd(res, g):
    x, w = res
    return jax.vjp(project, x, w)[1](g.astype(x.dtype))


wide_project.defvjp(_wide_project_fwd, _wide_project_bwd)


def _abstract(v) -> bool:
    return isinstance(v, jax.ShapeDtypeStruct)


class LoRALinear(Linear):
    """y = W x + b + s·B(A·dropout(x)); B·A is never formed. The terms are summed in float32 (at
    least) and rounded to the compute dtype once: a bf16 W x plus an update below half its step
    would round back to W x, and that update would exist only in the gradient."""

    def __init__(self, base: Linear, *, r: int, alpha: float, dropout: float, rslora: bool, key: Array,
                 index: int):
        self.in_features = base.in_features
        self.out_features = base.out_features
        self.dtype = base.dtype
        self.weight = base.weight
        self.bias = base.bias
        self.r = int(r)
        self.lora_alpha = alpha
        self.lora_dropout = float(dropout)
        self.use_rslora = bool(rslora)
        self.scaling = lora_scaling(r, alpha, rslora)
        if _abstract(base.weight.get_value()):  # shapes only (planner, parameter counts)
            self.lora_A = nnx.LoRAParam(jax.ShapeDtypeStruct((r, self.in_features), ADAPTER_DTYPE))
            self.lora_B = nnx.LoRAParam(jax.ShapeDtypeStruct((self.out_features, r), ADAPTER_DTYPE))
        else:
            self.lora_A = nnx.LoRAParam(init_lora_A(key, index, r, self.in_features))
            self.lora_B = nnx.LoRAParam(jnp.zeros((self.out_features, r), ADAPTER_DTYPE))

    def matmul(self, x: Array) -> Array:
        """W x without bias, from compute-dtype operands, accumulated and returned in float32 (at least)."""
        return wide_project(x, self.weight[...].astype(self.dtype))

    def wide_base(self, x: Array) -> Array:
        """W x + b, like `matmul` not rounded to the compute dtype."""
        y = self.matmul(x)
        return y if self.bias is None else y + self.bias[...].astype(y.dtype)

    def lora_delta(self, x: Array) -> Array:
        """s·B A x from compute-dtype operands, returned in float32 (at least)."""
        return low_rank(x, self.lora_A[...].astype(self.dtype), self.lora_B[...].astype(self.dtype), self.scaling)

    def __call__(self, x: Array, rng: Array | None = None) -> Array:
        x = x.astype(self.dtype)
        return (self.wide_base(x) + self.lora_delta(dropout(x, rng, self.lora_dropout))).astype(self.dtype)


class DoRALinear(LoRALinear):
    """PEFT's DoRA: y = (m / ||W + sBA||)·(W x + s·B A x) + b.

    The scale m/||W + sBA|| stays near 1, where bfloat16's step is 2^-8..2^-7, so it is formed and
    applied in float32 (as PEFT does under autocast), and W x and s·B A x are accumulated and kept in
    float32 too: only y is rounded to the compute dtype, once. Rounding the scale, or a W x it then
    multiplies, would make a magnitude change below 0.4% vanish from the forward pass while its
    gradient keeps pushing. `detach_norm` (True for training, DoRA §4.3 and PEFT) makes the norm a constant of the
    gradient; the Hessian analysis turns it off to differentiate the loss the model really computes.

    With dropout active PEFT adds (m/n - 1)·W·dropout(x) + (m/n)·s·B A dropout(x) to the full base
    output, so one more W matmul on the dropped input is unavoidable; without dropout (eval, or p=0)
    the base matmul is shared.
    """

    def __init__(self, base: Linear, *, r: int, alpha: float, dropout: float, rslora: bool, key: Array,
                 index: int):
        super().__init__(base, r=r, alpha=alpha, dropout=dropout, rslora=rslora, key=key, index=index)
        self.detach_norm = True
        if _abstract(self.weight.get_value()):
            self.lora_magnitude_vector = nnx.LoRAParam(jax.ShapeDtypeStruct((self.out_features,), ADAPTER_DTYPE))
        else:
            self.lora_magnitude_vector = nnx.LoRAParam(self.weight_norm())

    def weight_norm(self) -> Array:
        """||W + s·B·A|| per output row; with `detach_norm` no tangents are even traced through it."""
        w, a, b = (v[...] for v in (self.weight, self.lora_A, self.lora_B))
        if self.detach_norm:
            w, a, b = (jax.lax.stop_gradient(v) for v in (w, a, b))
        return dora_weight_norm(w, a, b, self.scaling)

    def __call__(self, x: Array, rng: Array | None = None) -> Array:
        x = x.astype(self.dtype)
        f = wide(self.dtype)
        scale = self.lora_magnitude_vector[...].astype(f) / self.weight_norm().astype(f)
        if rng is not None and self.lora_dropout > 0.0:
            xd = dropout(x, rng, self.lora_dropout)
            y = self.wide_base(x) + (scale - 1) * self.matmul(xd) + scale * self.lora_delta(xd)
            return y.astype(self.dtype)
        y = scale * (self.matmul(x) + self.lora_delta(x))
        if self.bias is not None:
            y = y + self.bias[...].astype(f)
        return y.astype(self.dtype)


ADAPTERS = {"lora": LoRALinear, "dora": DoRALinear}
