"""DoRA in bfloat16: jaxft (compute dtype bf16, float32 parameters) against PEFT 0.21 under
torch.autocast("cpu", bfloat16), and the magnitude scale keeping changes smaller than bf16's step.

Tolerances. bfloat16 keeps 8 significant bits: one rounding moves a value by up to 2^-9 of itself,
and a logit of these tiny models passes through ~20 roundings (two layers of norms, seven matmuls,
attention). jaxft keeps the residual stream in bf16 where autocast keeps it in float32, so the two
sides round different intermediates and agree to a few bf16 steps: logits to 4·2^-8 of max|logit|
(measured 0.5-0.6%), all adapter gradients together to 3% in norm (measured 0.6-1.2%). A single
adapter tensor can be much worse on both sides: gradients are sums over tokens with cancellation,
and where one is 1e-4 of the largest (the second layer's k_proj) PEFT-bf16 is itself 5-11% off its
float32 result. So per tensor the test asks that jaxft-bf16 be no further from PEFT-float32 than twice
PEFT-bf16's own distance plus three bf16 steps (worst measured: 83% of that bound), and likewise for
the logits with one step: jaxft in bf16 is not the less accurate of the two.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from jaxft.models import load_model
from jaxft.models.params import flat_params, set_params
from jaxft.models.transformer import FEW_ROWS
from jaxft.peft import DEFAULT_TARGETS, apply_peft, split_params
from jaxft.peft.adapters import keep_mask
from jaxft.train.step import masked_cross_entropy
from tests.hf_tiny import make_hf_model
from tests.test_peft_parity import adapter_values, jaxft_name, next_token_batch, randomize_adapters

peft = pytest.importorskip("peft")

BF16_STEP = 2.0 ** -8  # spacing of bfloat16 numbers in [1, 2) is 2^-7, in [0.5, 1) 2^-8
P_DROP = 0.1
PROJ_INDEX = {name: i for i, name in enumerate(DEFAULT_TARGETS)}  # the Transformer's fold_in order


class FixedMask(torch.nn.Module):
    """PEFT's dropout replaced by jaxft's keep mask for the same layer (applied in training mode)."""

    def __init__(self, keep: np.ndarray, p: float):
        super().__init__()
        self.keep, self.p = torch.from_numpy(keep.astype(np.float32)), p

    def forward(self, x):
        return x * self.keep.to(x.dtype) * (1.0 / (1.0 - self.p)) if self.training else x


def layer_key(dropout_rng, name: str):
    """The key jaxft's model hands to the adapter `name` (model.layers.i.<...>.proj)."""
    parts = name.split(".")
    return jax.random.fold_in(jax.random.fold_in(dropout_rng, int(parts[2])), PROJ_INDEX[parts[-1]])


def install_masks(pm, dropout_rng, shape_of) -> int:
    """Give every PEFT adapter jaxft's mask (with a wrong one, logits differ by 6-57%); returns how many."""
    count = 0
    for name, module in pm.named_modules():
        if hasattr(module, "lora_dropout") and "default" in module.lora_dropout:
            short = name.removeprefix("base_model.model.")
            keep = np.asarray(keep_mask(layer_key(dropout_rng, short), P_DROP, shape_of(module.in_features)))
            module.lora_dropout["default"] = FixedMask(keep, P_DROP)
            count += 1
    return count


def torch_run(pm, ids: np.ndarray, autocast: bool):
    pm.zero_grad()
    t_ids = torch.from_numpy(ids).long()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        logits = pm(input_ids=t_ids).logits
    logits = logits.float()
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), t_ids[:, 1:].reshape(-1))
    loss.backward()
    grads = {jaxft_name(n): p.grad.float().numpy().copy() for n, p in pm.named_parameters() if p.requires_grad}
    return logits.detach().numpy(), grads


def jax_run(model, batch: dict, dropout_rng):
    graphdef, trainable, frozen = split_params(model, "dora")

    @jax.jit
    def run(trainable, frozen, rng):
        def loss(tr):
            logits = nnx.merge(graphdef, tr, frozen)(batch["input_ids"], dropout_rng=rng)
            return masked_cross_entropy(logits, batch["targets"], batch["loss_mask"]), logits
        (_, logits), grads = jax.value_and_grad(loss, has_aux=True)(trainable)
        return logits, grads

    logits, grads = run(trainable, frozen, dropout_rng)
    return np.asarray(logits, np.float32), {k: np.asarray(v, np.float32) for k, v in flat_params(grads).items()}


def rel_max(a, b) -> float:
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def rel_fro(a, b) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def rel_all(ga: dict, gb: dict) -> float:
    return float(np.sqrt(sum(np.sum((ga[k] - gb[k]) ** 2) for k in gb) / sum(np.sum(gb[k] ** 2) for k in gb)))


@pytest.mark.parametrize("dropout", [False, True], ids=["no_dropout", "dropout"])
@pytest.mark.parametrize("family,variant", [("llama", 1), ("qwen2", 0)])
def test_bf16_logits_and_gradients_match_peft_autocast(tmp_path, family, variant, dropout):
    torch_model = make_hf_model(family, variant, str(tmp_path))
    cfg = peft.LoraConfig(r=4, lora_alpha=8, target_modules=list(DEFAULT_TARGETS), use_dora=True,
                          lora_dropout=P_DROP if dropout else 0.0)
    pm = peft.get_peft_model(torch_model, cfg)
    randomize_adapters(pm)
    ids = np.random.default_rng(0).integers(0, 128, (2, 9)).astype(np.int32)
    rng = jax.random.key(3) if dropout else None
    if dropout:
        assert install_masks(pm, rng, lambda n: ids.shape + (n,)) == 14
        pm.train()  # PEFT's dropout branch: W·dropout(x) recomputed, as jaxft does with an rng
    else:
        pm.eval()

    model, _ = load_model(str(tmp_path), dtype="bfloat16")
    apply_peft(model, "dora", r=4, alpha=8, dropout=P_DROP if dropout else 0.0)
    set_params(model, adapter_values(pm))
    j_logits, j_grads = jax_run(model, next_token_batch(ids), rng)
    t_logits, t_grads = torch_run(pm, ids, autocast=True)
    f_logits, f_grads = torch_run(pm, ids, autocast=False)  # PEFT float32: the accuracy reference

    assert set(j_grads) == set(t_grads) and any("lora_magnitude_vector" in k for k in t_grads)
    assert rel_max(j_logits, t_logits) <= 4 * BF16_STEP
    assert rel_all(j_grads, t_grads) <= 0.03
    # jaxft-bf16 is no less accurate than PEFT-bf16, measured against PEFT in float32: logits, and
    # every adapter tensor (including tensors whose gradient is 1e-4 of the largest, where both are off
    # by up to ~10%)
    assert rel_max(j_logits, f_logits) <= 2 * rel_max(t_logits, f_logits) + BF16_STEP
    for k in t_grads:
        assert rel_fro(j_grads[k], f_grads[k]) <= 2 * rel_fro(t_grads[k], f_grads[k]) + 3 * BF16_STEP, k


def bf16_step(y: np.ndarray) -> np.ndarray:
    """Spacing of bfloat16 numbers at |y| (8 significant bits)."""
    return 2.0 ** (np.floor(np.log2(np.abs(y))) - 7)


def check_row_moves(y0: np.ndarray, y1: np.ndarray, row: int, expected: np.ndarray) -> float:
    """Only column `row` differs, by `expected` up to one bf16 step of rounding (each of y0, y1 is within
    half a step of its exact value), and moved entries move with its sign (rounding is monotone);
    returns the fraction that moved."""
    others = np.arange(y0.shape[1]) != row
    assert np.array_equal(y1[:, others], y0[:, others])
    delta = y1[:, row] - y0[:, row]
    moved = delta != 0
    assert np.all(np.sign(delta[moved]) == np.sign(expected[moved]))
    step = bf16_step(np.maximum(np.abs(y0[:, row]), np.abs(y1[:, row])))
    assert np.all(np.abs(delta - expected) <= step)
    return float(moved.mean())


@pytest.mark.parametrize("variant", [0, 1], ids=["no_bias", "bias"])
def test_small_magnitude_change_reaches_bf16_output(tmp_path, variant):
    """m_i · 1.001 must change row i of a bf16 DoRA layer's output and nothing else. Rounded to bf16
    (step 2^-7 above 1) the scale m/||W + sBA|| = 1.001 would be 1 and the output bit-identical: the
    change would live only in the gradient. bf16 steps are 2^-8..2^-7 of a value, so a 0.1% change
    moves ~13-26% of the outputs one step. B != 0: with B = 0 and no bias the output is (m/n)·W x with
    W x already a bf16 number, which a 0.1% change (under half a step) cannot move, in PEFT either;
    without a bias the test also fails if W x + sBAx is rounded to bf16 before it is scaled."""
    make_hf_model("llama", variant, str(tmp_path))  # variant 1 has attention/MLP biases
    model, _ = load_model(str(tmp_path), dtype="bfloat16")
    apply_peft(model, "dora", r=4, alpha=8, dropout=0.0)
    layer = model.model.layers[-1].mlp.down_proj
    b = np.random.default_rng(1).normal(size=layer.lora_B.shape) * 0.2
    layer.lora_B.set_value(jnp.asarray(b, jnp.float32))
    layer.lora_magnitude_vector.set_value(layer.weight_norm())  # m = ||W + sBA||: the scale is exactly 1
    x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 256, layer.in_features)), jnp.bfloat16)
    row = 5

    def output():
        y = layer(x)
        assert y.dtype == jnp.bfloat16
        return np.asarray(y, np.float32).reshape(-1, y.shape[-1])

    y0 = output()
    layer.lora_magnitude_vector.set_value(layer.lora_magnitude_vector[...].at[row].multiply(1.001))
    y1 = output()
    bias = 0.0 if layer.bias is None else float(layer.bias[...][row])
    moved = check_row_moves(y0, y1, row, 1e-3 * (y0[:, row] - bias))
    print(f"\nfraction of row {row} moved: {moved:.3f}")
    assert moved > 0.08


def one_layer(method: str, shapes: dict[str, tuple[int, int]], *, bias: bool, dropout: float):
    """A bare decoder layer (the paths adapters accept: model.layers.0.self_attn.q_proj, ...mlp.down_proj)
    of bf16 Linear projections {name: (in, out)}, adapted; returns {name: adapted layer}."""
    from jaxft.models.transformer import Linear

    class Part(nnx.Module):
        def __init__(self, names):
            for i, name in enumerate(names):
                setattr(self, name, Linear(*shapes[name], bias=bias, dtype=jnp.bfloat16, param_dtype=jnp.float32,
                                           rngs=nnx.Rngs(i)))

    attention = [n for n in shapes if n in ("q_proj", "k_proj", "v_proj", "o_proj")]

    class Layer(nnx.Module):
        def __init__(self):
            self.self_attn = Part(attention)
            self.mlp = Part([n for n in shapes if n not in attention])

    class Inner(nnx.Module):
        def __init__(self):
            self.layers = nnx.List([Layer()])

    class Holder(nnx.Module):
        def __init__(self):
            self.model = Inner()

    holder = apply_peft(Holder(), method, targets=list(shapes), r=4, alpha=8, dropout=dropout)
    layer = holder.model.layers[0]
    return {n: getattr(layer.self_attn if n in attention else layer.mlp, n) for n in shapes}


def test_dropout_branch_small_magnitude_change():
    """Same with dropout on: (m/n - 1)·W·dropout(x) must carry a 0.1% change in bf16 too."""
    layer = one_layer("dora", {"q_proj": (32, 16)}, bias=True, dropout=0.2)["q_proj"]
    x = jnp.asarray(np.random.default_rng(1).normal(size=(256, 32)), jnp.bfloat16)
    key = jax.random.key(0)
    y0 = np.asarray(layer(x, key), np.float32)
    layer.lora_magnitude_vector.set_value(layer.lora_magnitude_vector[...].at[3].multiply(1.001))
    y1 = np.asarray(layer(x, key), np.float32)
    xd = np.asarray(x, np.float32) * np.asarray(keep_mask(key, 0.2, x.shape)) / 0.8
    wxd = xd @ np.asarray(layer.weight[...]).T  # the term the scale change multiplies (B = 0)
    moved = check_row_moves(y0, y1, 3, 1e-3 * wxd[:, 3])
    print(f"\nfraction of row 3 moved (dropout): {moved:.3f}")
    assert moved > 0.08


ROWS = (0, 7, 29)  # the rows whose change is checked, one at a time


@pytest.fixture(scope="module")
def fresh_projections():
    """Freshly initialised bf16 q_proj [64 <- 64] and down_proj [48 <- 128] without bias, as at the start
    of training (B = 0, m = ||W||, so DoRA's scale is exactly 1), and 1024 bf16 input rows for each."""
    def build(method):
        return one_layer(method, {"q_proj": (64, 64), "down_proj": (128, 48)}, bias=False, dropout=0.0)

    rng = np.random.default_rng(2)
    inputs = {n: jnp.asarray(rng.normal(size=(1024, k)), jnp.bfloat16) for n, k in (("q_proj", 64), ("down_proj", 128))}
    return build, inputs


def bf16_rows(layer, x, rows_per_call: int) -> np.ndarray:
    """The layer's bf16 output, `rows_per_call` input rows at a time (see ROWS_PER_CALL)."""
    ys = [layer(x[i:i + rows_per_call]) for i in range(0, x.shape[0], rows_per_call)]
    assert all(y.dtype == jnp.bfloat16 for y in ys)
    return np.concatenate([np.asarray(y, np.float32) for y in ys])


def exact_wx(layer, x) -> np.ndarray:
    """W x in float64 from the bf16 operands the layer multiplies."""
    w = np.asarray(jnp.asarray(layer.weight[...], jnp.bfloat16), np.float64)
    return np.asarray(x, np.float64) @ w.T


# All 1024 rows in one x Wᵀ GEMM, and FEW_ROWS at a time: project's (W xᵀ)ᵀ form on CPU (decode steps),
# which must round once just the same.
ROWS_PER_CALL = [1024, FEW_ROWS]


@pytest.mark.parametrize("rows_per_call", ROWS_PER_CALL)
@pytest.mark.parametrize("proj", ["q_proj", "down_proj"])
def test_dora_magnitude_change_moves_its_row_after_one_rounding(fresh_projections, proj, rows_per_call):
    """m_i · 1.001 on a fresh DoRA layer (B = 0, no bias) must move row i of the bf16 output and nothing
    else. If W x is rounded to bf16 before the float32 scale multiplies it, 1.001 · (a bf16 number) is
    under half a bf16 step from it (steps are 2^-8..2^-7 of a value) and rounds back: 0% of the row
    moves. Accumulated in float32 and rounded once, about a fifth moves (0.1% of the value over a step
    of 0.4-0.8% of it); the test asks >= 10% on each of three rows of two projections, and that each
    moved entry moved by 0.1% of W x up to one bf16 step."""
    build, inputs = fresh_projections
    layer, x = build("dora")[proj], inputs[proj]
    m0 = layer.lora_magnitude_vector[...]
    y0, wx = bf16_rows(layer, x, rows_per_call), exact_wx(layer, x)
    for row in ROWS:
        layer.lora_magnitude_vector.set_value(m0.at[row].multiply(1.001))
        moved = check_row_moves(y0, bf16_rows(layer, x, rows_per_call), row, 1e-3 * wx[:, row])
        assert moved >= 0.10, (proj, row, moved)
    layer.lora_magnitude_vector.set_value(m0)


@pytest.mark.parametrize("rows_per_call", ROWS_PER_CALL)
@pytest.mark.parametrize("proj", ["q_proj", "down_proj"])
def test_lora_small_update_moves_its_row_after_one_rounding(fresh_projections, proj, rows_per_call):
    """The same for LoRA's sum W x + s·B A x: an update s·B_i A = 0.001 · W_i of row i alone (A's first
    row set to W_i, B's entry (i, 0) to 0.001/s, the rest of B zero) must move row i of the bf16 output
    by 0.1% of W x, on >= 10% of its entries. A bf16 W x plus an update under half its step rounds back
    to W x: summing the rounded base and update moves 0%."""
    build, inputs = fresh_projections
    layer, x = build("lora")[proj], inputs[proj]
    y0, wx = bf16_rows(layer, x, rows_per_call), exact_wx(layer, x)
    assert not np.any(np.asarray(layer.lora_B[...]))  # fresh: the adapter adds exactly 0
    a0 = layer.lora_A[...]
    for row in ROWS:
        layer.lora_A.set_value(a0.at[0].set(layer.weight[...][row]))
        layer.lora_B.set_value(jnp.zeros_like(layer.lora_B[...]).at[row, 0].set(1e-3 / layer.scaling))
        moved = check_row_moves(y0, bf16_rows(layer, x, rows_per_call), row, 1e-3 * wx[:, row])
        assert moved >= 0.10, (proj, row, moved)


@pytest.mark.parametrize("method", ["lora", "dora"])
def test_bf16_adapter_gemms_take_bf16_operands_forward_and_backward(fresh_projections, method):
    """Accumulating in float32 must not make the backward pass multiply in float32: the float32 output's
    cotangent is rounded to bf16 before the GEMMs (jaxft.peft.adapters.wide_project), as a bf16 output's
    would be. Plain autodiff of a preferred_element_type=float32 dot would hand XLA float32 x float32
    products for dx and dW (about half the accelerator's bf16 rate). Checked on the lowered program:
    every dot over the 1024 tokens has bf16 operands."""
    import re

    build, inputs = fresh_projections
    graphdef, params = nnx.split(build(method)["down_proj"])
    x = inputs["down_proj"]

    def loss(p, x):
        return jnp.sum(nnx.merge(graphdef, p)(x).astype(jnp.float32) ** 2)

    text = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(params, x).as_text()
    operands = re.findall(r"stablehlo\.dot_general .*?: \((tensor<[^>]*>), (tensor<[^>]*>)\)", text)
    over_tokens = [ab for ab in operands if any("1024x" in t or "x1024x" in t for t in ab)]
    # forward W x, x Aᵀ, h Bᵀ; backward dx (through W and A) and dA, dB: DoRA's norm terms are float32 on
    # purpose but have no token dimension
    assert len(over_tokens) >= 6, operands
    assert all(t.endswith("xbf16>") for ab in over_tokens for t in ab), over_tokens
