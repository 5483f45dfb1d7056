"""The analysis differentiates the loss the model computes: v·Hv and u·Hv from jaxft's HVP against
float64 finite differences of the forward loss, for Full FT, LoRA and DoRA (adapters only, and all
parameters); and analysis of a bfloat16 run computes in float32 unless told otherwise.

Reference: the same tiny model run by transformers + PEFT in float64 (jaxft's forward computes its
norms, logits and loss in float32 whatever the dtype, so it cannot give a float64 loss; PEFT's forward
equals jaxft's to 1e-5 in float32, tests/test_peft_parity.py). HF's LlamaRMSNorm casts to float32 even
in a float64 model, which leaves ~1e-9 of noise in L, as much as the second difference itself at
h = 1e-3; the test swaps in the same formula without the cast. (L(x+hv) - 2L(x) + L(x-hv))/h² then has
truncation error h²/12·∂⁴L and rounding error ~1e-16·L/h², both below 1e-8 at h = 1e-3 (checked: h
and 2h agree to a tenth of the tolerance); likewise the four-point mixed difference for u·Hv. jaxft's
HVP runs in float32 (~1e-6 relative error in Hv), so with unit v and u the products must match to 1e-3
relative plus 1e-5·||Hv|| (measured: ~1e-6 relative). The detached-norm surrogate, what the analysis
measured before, misses DoRA's v·Hv by 4x with the adapters analysed (~1000 tolerances) and by 2% with
all parameters (12 tolerances).
"""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from jaxft.analysis import hessian as H
from jaxft.models import load_model, set_params
from jaxft.models.params import flat_params
from jaxft.peft import apply_peft
from jaxft.peft.adapters import DoRALinear
from jaxft.train.step import loss_fn
from tests.hf_tiny import make_hf_model
from tests.test_peft_parity import adapter_values, jaxft_name, next_token_batch, peft_wrap, randomize_adapters

H_STEP = 1e-3


@pytest.fixture
def float64_rmsnorm(monkeypatch):
    from transformers.models.llama import modeling_llama

    def forward(self, h):
        return self.weight * (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.variance_epsilon))

    monkeypatch.setattr(modeling_llama.LlamaRMSNorm, "forward", forward)


class TorchLoss:
    """L(x + Σ t_i d_i) in float64 for directions d_i given as jaxft-named arrays."""

    def __init__(self, module, ids: np.ndarray, name):
        self.module = module.double()
        self.ids = torch.from_numpy(ids).long()
        self.params = {name(n): p for n, p in module.named_parameters()}
        self.base = {k: p.detach().clone() for k, p in self.params.items()}

    @torch.no_grad()
    def __call__(self, *steps) -> float:
        for k, p in self.params.items():
            p.copy_(self.base[k] + sum(t * torch.from_numpy(d[k]) for t, d in steps if k in d))
        logits = self.module(input_ids=self.ids).logits
        return float(torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                                       self.ids[:, 1:].reshape(-1)))


def peft_to_jaxft(name: str) -> str:
    """PEFT's parameter names (adapters and the wrapped base layers) as jaxft's."""
    return jaxft_name(name) if ".lora_" in name else name.removeprefix("base_model.model.").replace(".base_layer", "")


def second_difference(L, v, h):
    return (L((h, v)) - 2 * L() + L((-h, v))) / h ** 2


def mixed_difference(L, u, v, h):
    return (L((h, u), (h, v)) - L((h, u), (-h, v)) - L((-h, u), (h, v)) + L((-h, u), (-h, v))) / (4 * h * h)


def unit(key, like):
    v = H.tree_random(key, like, "gaussian")
    return H.tree_scale(1.0 / jnp.sqrt(H.tree_dot(v, v)), v)


def as_numpy(v) -> dict[str, np.ndarray]:
    return {k: np.asarray(x, np.float64) for k, x in flat_params(v).items()}


@pytest.mark.parametrize("method,subset", [("full", "all"), ("lora", "adapters"), ("dora", "adapters"),
                                           ("dora", "all")])
def test_hvp_is_the_curvature_of_the_forward_loss(tmp_path, float64_rmsnorm, method, subset):
    torch_model = make_hf_model("llama", 1, str(tmp_path))  # untied, with biases
    model, _ = load_model(str(tmp_path))
    if method == "full":
        reference, name = torch_model, (lambda n: n)
    else:  # non-zero B and m != ||W||, so every adapter term has curvature
        reference, name = peft_wrap(torch_model, method == "dora"), peft_to_jaxft
        randomize_adapters(reference)
        apply_peft(model, method, r=4, alpha=8, dropout=0.0)
        set_params(model, adapter_values(reference))
    ids = np.random.default_rng(0).integers(0, 128, (2, 9)).astype(np.int32)
    batch = next_token_batch(ids)

    problem = H.hessian_problem(model, [batch], subset)
    v, u = unit(jax.random.key(1), problem.params), unit(jax.random.key(2), problem.params)
    hv = problem.hvp(v)
    vhv, uhv, hv_norm = float(H.tree_dot(v, hv)), float(H.tree_dot(u, hv)), H.tree_norm(hv)

    L = TorchLoss(reference, ids, name)
    vn, un = as_numpy(v), as_numpy(u)
    assert set(vn) <= set(L.params), sorted(set(vn) - set(L.params))[:3]
    fd = second_difference(L, vn, H_STEP)
    fd_mixed = mixed_difference(L, un, vn, H_STEP)
    tol = 1e-3 * abs(fd) + 1e-5 * hv_norm
    print(f"\n{method}/{subset}: {problem.num_params} params, v.Hv {vhv:.7e}, FD {fd:.7e}, u.Hv {uhv:.7e}, "
          f"FD {fd_mixed:.7e}, |Hv| {hv_norm:.3e}")
    assert abs(second_difference(L, vn, 2 * H_STEP) - fd) < 0.1 * tol  # the difference quotient has converged
    assert abs(vhv - fd) <= tol
    assert abs(uhv - fd_mixed) <= 1e-3 * abs(fd_mixed) + 1e-5 * hv_norm

    if method == "dora":
        dora = [m for _, m in nnx.iter_modules(model) if isinstance(m, DoRALinear)]
        assert dora and all(m.detach_norm for m in dora)  # the analysed model itself still trains as PEFT does
        graphdef, params, frozen = nnx.split(model, H.param_filter(subset), ...)
        surrogate = jax.jvp(lambda q: jax.grad(loss_fn)(q, frozen, graphdef, batch, None), (params,), (v,))[1]
        vhv_detached = float(H.tree_dot(v, surrogate))
        print(f"detached-norm surrogate v.Hv {vhv_detached:.7e}")
        assert abs(vhv_detached - fd) > 10 * tol  # what the old analysis measured: this test catches it


@pytest.mark.slow
def test_analyze_rebuilds_a_bf16_run_in_float32(tmp_path):
    """A DoRA run trained in bfloat16 is analysed in float32 by default, in bfloat16 with --dtype; the
    loss hessian.json reports is that of the model in the chosen dtype with the run's trained values."""
    from jaxft import analyze
    from jaxft.analysis.batches import random_batches
    from jaxft.train.config import load_config_file
    from jaxft.train.loop import train

    c = load_config_file(os.path.join(os.path.dirname(__file__), "..", "configs", "tiny.py"))
    c.method, c.compute_dtype, c.total_steps, c.checkpoint_every_steps, c.data.limit = "dora", "bfloat16", 2, 2, 8
    c.optim.learning_rate = 1e-2
    work = str(tmp_path / "run")
    train(c, work, progress=False)

    f32, b16 = analyze.load_source(work)[0], analyze.load_source(work, dtype="bfloat16")[0]
    assert f32.dtype == jnp.float32 and b16.dtype == jnp.bfloat16
    assert {m.dtype for _, m in nnx.iter_modules(f32) if isinstance(m, DoRALinear)} == {jnp.dtype(jnp.float32)}
    trained = flat_params(b16)  # the same trained values either way (float32 master weights, as saved)
    assert all(np.array_equal(np.asarray(trained[k]), np.asarray(x)) for k, x in flat_params(f32).items())
    assert any(np.any(np.asarray(x)) for k, x in trained.items() if k.endswith("lora_B"))  # it did train

    vocab = f32.config.vocab_size
    batch = random_batches(vocab, 1, 8, 1, seed=0)[0]
    subset = r"layers\.0\.self_attn\.q_proj\.lora_"
    losses = {}
    for dtype, model in (("float32", f32), ("bfloat16", b16)):
        out = str(tmp_path / dtype)
        argv = ["hessian", f"--checkpoint={work}", f"--out={out}", "--data=random", "--batches=1", "--batch_size=1",
                "--seq_len=8", "--k=1", f"--subset={subset}", "--lanczos_steps=2", "--trace_probes=2",
                "--slq_probes=1", "--slq_steps=2"] + ([] if dtype == "float32" else ["--dtype=bfloat16"])
        assert analyze.main(argv) == 0
        with open(os.path.join(out, "hessian.json")) as f:
            res = json.load(f)
        assert res["compute_dtype"] == dtype
        graphdef, params, frozen = nnx.split(model, nnx.Param, ...)
        want = float(loss_fn(params, frozen, graphdef, {k: jnp.asarray(x) for k, x in batch.items()}, None))
        assert abs(res["loss"] - want) <= 1e-6 * abs(want), (dtype, res["loss"], want)
        losses[dtype] = res["loss"]
    assert losses["float32"] != losses["bfloat16"]
