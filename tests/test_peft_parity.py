"""jaxft LoRA/DoRA against HF PEFT 0.21 on torch CPU float32: forward, gradients, init, counts.

Adapter values are copied from the PEFT model into jaxft, so the two inits' randomness never matters
for the forward/gradient checks; the init distributions are checked on their own.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from jaxft.models import load_model, registry_config
from jaxft.models.params import abstract_model, flat_params, set_params
from jaxft.models.registry import HF_CONFIGS
from jaxft.models.transformer import Linear
from jaxft.peft import DEFAULT_TARGETS, METHODS, apply_peft, dora_weight_norm, split_params
from jaxft.peft.adapters import keep_mask
from jaxft.train.step import masked_cross_entropy
from tests.hf_tiny import make_hf_model

peft = pytest.importorskip("peft")

# biases, GQA, clip_qkv, tied/untied; Gemma 3 (q/k norms, four norms, sliding window) and Qwen3 (q/k norms)
CASES = [("llama", 1), ("qwen2", 0), ("olmo", 1), ("gemma", 0), ("gemma3", 0), ("qwen3", 0)]


def peft_wrap(torch_model, dora: bool, **kw):
    cfg = peft.LoraConfig(r=4, lora_alpha=8, target_modules=list(DEFAULT_TARGETS), lora_dropout=0.0,
                          use_dora=dora, **kw)
    return peft.get_peft_model(torch_model, cfg)


def jaxft_name(peft_name: str) -> str:
    """base_model.model.X.lora_A.default.weight -> X.lora_A (PEFT's names minus adapter and '.weight')."""
    name = peft_name.removeprefix("base_model.model.").replace(".default", "")
    return name.removesuffix(".weight")


def randomize_adapters(pm, seed: int = 0) -> None:
    """Non-trivial B and m, so every term of the adapter math shows up in logits and gradients."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in pm.named_parameters():
            if "lora_B" in name:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
            elif "lora_magnitude_vector" in name:
                p.mul_(1.0 + 0.3 * (torch.rand(p.shape, generator=g) - 0.5))


def adapter_values(pm) -> dict[str, np.ndarray]:
    return {jaxft_name(n): p.detach().numpy().copy() for n, p in pm.named_parameters() if "lora_" in n}


def next_token_batch(ids: np.ndarray) -> dict:
    targets = np.concatenate([ids[:, 1:], np.zeros_like(ids[:, :1])], axis=1)
    mask = np.ones(ids.shape, np.float32)
    mask[:, -1] = 0.0
    return {"input_ids": jnp.asarray(ids), "targets": jnp.asarray(targets), "loss_mask": jnp.asarray(mask)}


def jax_logits_and_grads(model, method: str, batch: dict):
    graphdef, trainable, frozen = split_params(model, method)

    @jax.jit
    def run(trainable, frozen):
        def loss(tr):
            logits = nnx.merge(graphdef, tr, frozen)(batch["input_ids"])
            return masked_cross_entropy(logits, batch["targets"], batch["loss_mask"]), logits
        (_, logits), grads = jax.value_and_grad(loss, has_aux=True)(trainable)
        return logits, grads

    logits, grads = run(trainable, frozen)
    return np.asarray(logits), {k: np.asarray(v) for k, v in flat_params(grads).items()}


def torch_logits_and_grads(pm, ids: np.ndarray):
    pm.zero_grad()
    t_ids = torch.from_numpy(ids).long()
    logits = pm(input_ids=t_ids).logits
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), t_ids[:, 1:].reshape(-1))
    loss.backward()
    grads = {jaxft_name(n): p.grad.numpy().copy() for n, p in pm.named_parameters() if p.requires_grad}
    return logits.detach().numpy(), grads


@pytest.mark.parametrize("family,variant", CASES)
@pytest.mark.parametrize("method", ["lora", "dora"])
def test_logits_and_gradients_match_peft(tmp_path, family, variant, method):
    torch_model = make_hf_model(family, variant, str(tmp_path))
    jmodel, _ = load_model(str(tmp_path))
    pm = peft_wrap(torch_model, method == "dora")
    randomize_adapters(pm)
    apply_peft(jmodel, method, r=4, alpha=8, dropout=0.0)
    values = adapter_values(pm)
    assert set(values) == {k for k in flat_params(jmodel) if ".lora_" in k}
    set_params(jmodel, values)

    ids = np.random.default_rng(0).integers(0, 128, (2, 9)).astype(np.int32)
    j_logits, j_grads = jax_logits_and_grads(jmodel, method, next_token_batch(ids))
    t_logits, t_grads = torch_logits_and_grads(pm, ids)

    assert np.max(np.abs(j_logits - t_logits)) <= 1e-5
    assert set(j_grads) == set(t_grads)
    for name, gt in t_grads.items():
        rel = np.max(np.abs(j_grads[name] - gt)) / np.max(np.abs(gt))
        assert rel <= 1e-4, (name, rel)


def test_dora_magnitude_init_matches_peft(tmp_path):
    """PEFT's init-from-weights path with B != 0 (init_lora_weights=False keeps nn.Linear's init)."""
    torch_model = make_hf_model("llama", 1, str(tmp_path))
    base = {n: p.detach().numpy().copy() for n, p in torch_model.named_parameters()}
    pm = peft_wrap(torch_model, True, init_lora_weights=False)
    values = adapter_values(pm)
    layers = {k.removesuffix(".lora_A") for k in values if k.endswith(".lora_A")}
    assert len(layers) == 14
    for layer in layers:
        a, b = values[f"{layer}.lora_A"], values[f"{layer}.lora_B"]
        assert np.abs(b).max() > 0
        got = np.asarray(dora_weight_norm(jnp.asarray(base[f"{layer}.weight"]), jnp.asarray(a), jnp.asarray(b), 2.0))
        want = values[f"{layer}.lora_magnitude_vector"]
        np.testing.assert_allclose(got, want, rtol=2e-6)

    jmodel, _ = load_model(str(tmp_path))  # jaxft's own init: B = 0, so m = ||W|| per output row
    apply_peft(jmodel, "dora", r=4, alpha=8)
    params = flat_params(jmodel)
    for layer in layers:
        want = np.linalg.norm(base[f"{layer}.weight"].astype(np.float64), axis=1)
        np.testing.assert_allclose(np.asarray(params[f"{layer}.lora_magnitude_vector"]), want, rtol=2e-6)


class _Wide(nnx.Module):
    """Two wide linear layers: enough A entries for a tight check of the init distribution."""

    def __init__(self, seed: int = 0):
        kw = dict(bias=False, dtype=jnp.float32, param_dtype=jnp.float32, rngs=nnx.Rngs(seed))
        self.up_proj = Linear(256, 512, **kw)
        self.down_proj = Linear(512, 256, **kw)


def test_lora_init_distribution():
    """kaiming_uniform_(a=sqrt(5)): U(-1/sqrt(in), 1/sqrt(in)); B starts at zero; seeds reproduce."""
    targets = ["up_proj", "down_proj"]
    params = flat_params(apply_peft(_Wide(), "lora", targets=targets, r=16, seed=3))
    for name in ("up_proj.lora_A", "down_proj.lora_A"):
        a = np.asarray(params[name])
        bound = 1.0 / math.sqrt(a.shape[1])
        assert np.abs(a).max() <= bound
        assert np.abs(a).max() > 0.99 * bound
        assert abs(a.std() / (bound / math.sqrt(3.0)) - 1.0) < 0.05
        assert abs(a.mean()) < 0.05 * bound
        assert not np.any(np.asarray(params[name.replace("lora_A", "lora_B")]))
    again = flat_params(apply_peft(_Wide(), "lora", targets=targets, r=16, seed=3))
    other = flat_params(apply_peft(_Wide(), "lora", targets=targets, r=16, seed=4))
    assert np.array_equal(params["up_proj.lora_A"], again["up_proj.lora_A"])
    assert not np.array_equal(params["up_proj.lora_A"], other["up_proj.lora_A"])
    assert not np.array_equal(params["up_proj.lora_A"][:, :256], params["down_proj.lora_A"][:, :256])


class _Holder(nnx.Module):
    def __init__(self, w: np.ndarray, b: np.ndarray):
        self.q_proj = Linear(w.shape[1], w.shape[0], bias=True, dtype=jnp.float32, param_dtype=jnp.float32,
                             rngs=nnx.Rngs(0))
        self.q_proj.weight = nnx.Param(jnp.asarray(w))
        self.q_proj.bias = nnx.Param(jnp.asarray(b))


class _TorchHolder(torch.nn.Module):
    def __init__(self, w: np.ndarray, b: np.ndarray):
        super().__init__()
        self.q_proj = torch.nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            self.q_proj.weight.copy_(torch.from_numpy(w))
            self.q_proj.bias.copy_(torch.from_numpy(b))

    def forward(self, x):
        return self.q_proj(x)


class _FixedMaskDropout(torch.nn.Module):
    def __init__(self, keep: np.ndarray, p: float):
        super().__init__()
        self.keep = torch.from_numpy(keep.astype(np.float32))
        self.p = p

    def forward(self, x):
        if not self.training:
            return x
        return x * self.keep * (1.0 / (1.0 - self.p))


@pytest.mark.parametrize("method", ["lora", "dora"])
def test_dropout_matches_peft_with_same_mask(method):
    """Same mask on both sides: jaxft draws its keep mask from the key it is given
    (`adapters.keep_mask`), and the test swaps PEFT's nn.Dropout for a module applying that very
    mask in training mode, so PEFT takes its dropout branch (for DoRA: W·dropout(x) recomputed).
    Outputs and adapter gradients must agree; with rng=None jaxft must equal PEFT in eval mode."""
    p = 0.3
    rng = np.random.default_rng(1)
    w = rng.normal(size=(12, 16)).astype(np.float32) * 0.3
    b = rng.normal(size=(12,)).astype(np.float32)
    x = rng.normal(size=(3, 5, 16)).astype(np.float32)
    key = jax.random.key(7)
    keep = np.asarray(keep_mask(key, p, x.shape))
    assert 0 < keep.mean() < 1

    cfg = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj"], lora_dropout=p, use_dora=method == "dora")
    pm = peft.get_peft_model(_TorchHolder(w, b), cfg)
    randomize_adapters(pm, seed=2)
    lora_layer = pm.base_model.model.q_proj
    lora_layer.lora_dropout["default"] = _FixedMaskDropout(keep, p)
    pm.train()
    t_out = pm(torch.from_numpy(x))
    cot = rng.normal(size=t_out.shape).astype(np.float32)
    (t_out * torch.from_numpy(cot)).sum().backward()
    t_grads = {jaxft_name(n): q.grad.numpy() for n, q in pm.named_parameters() if q.requires_grad}

    holder = apply_peft(_Holder(w, b), method, targets=["q_proj"], r=4, alpha=8, dropout=p)
    set_params(holder, adapter_values(pm))
    graphdef, trainable, frozen = split_params(holder, method)

    def f(tr, rng_key):
        return nnx.merge(graphdef, tr, frozen).q_proj(jnp.asarray(x), rng_key)

    j_out, vjp = jax.vjp(lambda tr: f(tr, key), trainable)
    np.testing.assert_allclose(np.asarray(j_out), t_out.detach().numpy(), atol=1e-5)
    j_grads = flat_params(vjp(jnp.asarray(cot))[0])
    assert set(j_grads) == set(t_grads)
    for name, gt in t_grads.items():
        assert np.max(np.abs(np.asarray(j_grads[name]) - gt)) / np.max(np.abs(gt)) <= 1e-5, name

    pm.eval()
    np.testing.assert_allclose(np.asarray(f(trainable, None)), pm(torch.from_numpy(x)).detach().numpy(), atol=1e-5)


def _peft_counts(name: str) -> dict[str, int]:
    """Trainable counts from one meta-device model: full, then DoRA (LoRA = DoRA minus magnitudes)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**HF_CONFIGS[name]))
    counts = {"full": sum(p.numel() for p in model.parameters() if p.requires_grad)}
    model = peft.get_peft_model(model, peft.LoraConfig(r=8, lora_alpha=32, target_modules=list(DEFAULT_TARGETS),
                                                       use_dora=True))
    trainable = {n: p.numel() for n, p in model.named_parameters() if p.requires_grad}
    counts["dora"] = sum(trainable.values())
    counts["lora"] = sum(v for n, v in trainable.items() if "lora_magnitude_vector" not in n)
    return counts


@pytest.mark.parametrize("name", sorted(n for n in HF_CONFIGS if not n.endswith(("-it", "-instruct"))))
def test_trainable_parameter_counts_match_peft(name):  # (the -it/-instruct twins share the shapes)
    graphdef, state = nnx.split(abstract_model(registry_config(name)))
    want = _peft_counts(name)
    for method in METHODS:
        model = apply_peft(nnx.merge(graphdef, state), method, r=8, alpha=32)
        _, trainable, _ = split_params(model, method)
        ours = sum(int(np.prod(v.shape)) for v in jax.tree.leaves(trainable))
        assert ours == want[method], (name, method)
