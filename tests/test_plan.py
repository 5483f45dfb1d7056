"""The memory planner: its formula against XLA's compiled memory on CPU (dense and chunked loss),
remat policies (same numbers, less memory), Gemma-2B on a v5e-8, and the CLI."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import REPO

TINY = os.path.join(REPO, "configs", "tiny.py")
# Big enough that activations and logits, not the compiler's scratch, dominate.
SMALL = dict(hidden_size=256, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4,
             num_key_value_heads=2, head_dim=64, vocab_size=8192)


def small_config(method="full", remat="none", loss_impl="chunked"):
    from jaxft.train.config import load_config_file

    c = load_config_file(TINY)
    c.random_model.update(SMALL)
    c.method, c.remat, c.scan_layers, c.attention = method, remat, True, "xla"
    c.compute_dtype = "float32"  # XLA:CPU computes bf16 matmuls in f32, so bf16 is not what a TPU would do
    c.data.seq_len, c.global_batch_size, c.micro_batch_size = 256, 4, 0
    c.peft.dropout = 0.0
    c.loss_impl, c.loss_chunk = loss_impl, 256  # 4 chunks of the 4 x 256 tokens
    return c


def compiled_memory(c) -> dict:
    from jaxft.train.memory import compiled_memory as compiled

    return compiled(c)


CASES = [("full", "none"), ("full", "full"), ("lora", "none")]
LOSS_IMPLS = ["chunked", "dense"]


class _Compiled(dict):
    """XLA's memory of each (method, remat, loss_impl) step, compiled when a test first asks (so no
    single test phase pays for all six compilations: tests/time_guard.py)."""

    def __missing__(self, key):
        self[key] = compiled_memory(small_config(*key))
        return self[key]


@pytest.fixture(scope="module")
def measured():
    return _Compiled()


@pytest.mark.parametrize("loss_impl", LOSS_IMPLS)
@pytest.mark.parametrize("method,remat", CASES)
def test_planner_within_20_percent_of_compiled_memory(measured, method, remat, loss_impl):
    from jaxft.train import memory as mem

    est = mem.estimate(mem.setup_from_config(small_config(method, remat, loss_impl), 1))["peak"]
    got = measured[(method, remat, loss_impl)]["total"]
    assert abs(est / got - 1) < 0.20, f"planner {est / 2**20:.1f} MiB vs XLA {got / 2**20:.1f} MiB"


def test_remat_full_needs_less_temp_memory(measured):
    for impl in LOSS_IMPLS:
        none, full = measured[("full", "none", impl)]["temp"], measured[("full", "full", impl)]["temp"]
        assert full < 0.6 * none, (impl, none, full)


@pytest.mark.parametrize("method,remat", CASES)
def test_chunked_loss_saves_what_the_planner_says(measured, method, remat):
    """The compiled step's temporary memory drops by at least half the planner's logits saving (the
    peak may move to the layers once the logits are gone, so not by all of it)."""
    from jaxft.train import memory as mem

    terms = {impl: mem.estimate(mem.setup_from_config(small_config(method, remat, impl), 1))["logits"]
             for impl in LOSS_IMPLS}
    saving = terms["dense"] - terms["chunked"]
    assert saving > 0.5 * terms["dense"], terms  # 4 x 256 x 8192 float32 logits vs one chunk's
    dense, chunked = (measured[(method, remat, impl)]["temp"] for impl in LOSS_IMPLS[::-1])
    assert dense - chunked > 0.5 * saving, (dense / 2**20, chunked / 2**20, saving / 2**20)


def test_remat_policies_give_the_same_loss_and_grads():
    from flax import nnx

    from jaxft.models import ModelConfig, Transformer
    from jaxft.peft import split_params
    from jaxft.train.step import loss_fn

    cfg = ModelConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=16)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 256, (2, 32))
    batch = {"input_ids": jnp.asarray(ids), "targets": jnp.asarray(np.roll(ids, -1, 1)),
             "loss_mask": jnp.ones((2, 32), jnp.float32)}

    def run(scan, remat):  # the same seeded weights each time, the options as constructor arguments
        g, t, f = split_params(Transformer(cfg, rngs=nnx.Rngs(0), scan_layers=scan, remat=remat), "full")
        return jax.jit(jax.value_and_grad(loss_fn), static_argnums=2)(t, f, g, batch, None)

    ref_loss, ref_grads = run(False, "none")
    for scan, remat in [(True, "none"), (True, "full"), (True, "dots")]:
        loss, grads = run(scan, remat)
        np.testing.assert_allclose(loss, ref_loss, atol=1e-5, rtol=0)
        for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads)):
            np.testing.assert_allclose(a, b, atol=1e-5, rtol=0, err_msg=f"scan={scan} remat={remat}")


def gemma_plan(*overrides, devices="v5e-8"):
    from jaxft import plan
    from jaxft.train import memory as mem
    from jaxft.train.config import apply_override, load_config_file

    c = load_config_file(os.path.join(REPO, "configs", "gemma2b_full.py"))
    for o in overrides:
        apply_override(c, *o.split("=", 1))
    return plan.plan(c, mem.parse_devices(devices))


def test_gemma2b_full_ft_fits_v5e8_with_fsdp_and_remat():
    p = gemma_plan("mesh_shape.fsdp=8", "mesh_shape.data=1", "remat=full", "scan_layers=true")
    # micro_batch_size "auto": a divisor of the 8 rows per device, no larger than any batch that fits
    assert p["fits"] and p["largest_batch"] >= p["micro_batch"] == p["micro_batch_size"] and 8 % p["micro_batch"] == 0
    explicit = gemma_plan("mesh_shape.fsdp=8", "mesh_shape.data=1", "remat=full", "micro_batch_size=2")
    assert (explicit["micro_batch"], explicit["accum_steps"]) == (2, 4)  # an integer keeps its meaning
    assert p["params"] == p["trainable_params"] > 2.5e9
    t = p["terms"]
    # fsdp=8 splits weights, gradients and Adam moments (float32 mu + nu) eight ways.
    assert t["parameters"] == pytest.approx(p["params"] * 4 / 8, rel=0.01)
    assert t["gradients"] == t["parameters"] and t["optimizer"] == pytest.approx(2 * t["parameters"], rel=0.01)
    assert p["by_remat"]["full"]["peak"] < p["by_remat"]["dots"]["peak"] < p["by_remat"]["none"]["peak"]
    assert gemma_plan()["fits"]  # the shipped config as it is
    # Replicated (pure data parallel), the float32 master weights and Adam alone overflow 16 GiB.
    assert not gemma_plan("mesh_shape.fsdp=1", "mesh_shape.data=8", "remat=full")["fits"]


def test_lora_trains_only_adapters():
    full = gemma_plan("mesh_shape.fsdp=8", "mesh_shape.data=1")
    lora = gemma_plan("mesh_shape.fsdp=8", "mesh_shape.data=1", "method=lora")
    assert lora["trainable_params"] < 0.01 * lora["params"]
    assert lora["terms"]["gradients"] < 0.01 * full["terms"]["gradients"]
    assert lora["terms"]["parameters"] > full["terms"]["parameters"]  # base + adapters
    assert lora["terms"]["peak"] < full["terms"]["peak"]


def test_parse_devices():
    from jaxft.train.memory import GiB, parse_devices

    assert [(h.count, h.bytes_per_device // GiB) for h in map(parse_devices, ["v5e-8", "v4-8", "v5p-8", "h100x8",
                                                                              "h100x1", "a100x8", "h100"])] == [
        (8, 16), (4, 32), (4, 95), (8, 80), (1, 80), (8, 80), (1, 80)]
    assert parse_devices("cpux8").count == 8 and parse_devices("cpu").count == 1
    assert parse_devices("v5e-8").usable == int(16 * GiB * 0.9)


def test_cli_table_json_and_errors(capsys):
    from jaxft.plan import main

    base = [f"--config={os.path.join(REPO, 'configs', 'gemma2b_full.py')}", "--devices=v5e-8",
            "--config.mesh_shape.fsdp=8", "--config.mesh_shape.data=1", "--config.remat=full"]
    assert main(base + ["--config.data.seq_len=2048"]) == 0
    out = capsys.readouterr().out
    for row in ("parameters", "gradients", "optimizer state", "activations", "peak"):
        assert row in out
    last = out.strip().splitlines()[-1]
    assert last.startswith("largest per-device batch that fits: ") and last.endswith("(seq 2048, remat=full)")
    assert main(base + ["--json"]) == 0
    p = json.loads(capsys.readouterr().out)
    assert p["seq_len"] == 512 and p["mesh"] == {"data": 1, "fsdp": 8} and p["fits"]
    assert p["largest_batch"] == p["by_remat"]["full"]["largest_batch"] >= 2
    assert main(base[:1] + ["--devices=v9-8"]) == 2 and "expected one of" in capsys.readouterr().err
    assert main(base[:2] + ["--config.remat=sometimes"]) == 2 and "remat" in capsys.readouterr().err
    assert main(base[:1]) == 2 and "missing --devices" in capsys.readouterr().err
