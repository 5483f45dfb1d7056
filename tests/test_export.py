"""Merged (HF) and adapter-only (PEFT) exports load in transformers/peft with jaxft's logits."""

from __future__ import annotations

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from safetensors.numpy import load_file, save_file

from jaxft.errors import ConfigError, WeightLoadError
from jaxft.export import main as export_main
from jaxft.models import load_model
from jaxft.models.params import flat_params, set_params
from jaxft.peft import DEFAULT_TARGETS, apply_peft
from jaxft.peft.export import export_merged, export_peft, load_peft_adapter, merge_adapters
from tests.hf_tiny import make_hf_model

peft = pytest.importorskip("peft")
from transformers import AutoModelForCausalLM  # noqa: E402

# LoRA and DoRA, each on a tied and an untied family (qwen2/olmo variants also carry biases)
CASES = [("llama", 0, "lora"), ("olmo", 1, "lora"), ("gemma", 0, "dora"), ("qwen2", 1, "dora")]
IDS = np.random.default_rng(0).integers(0, 128, (2, 11)).astype(np.int32)


@functools.partial(jax.jit, static_argnums=0)
def _forward(graphdef, state, ids):
    return nnx.merge(graphdef, state)(ids)


def jaxft_logits(model) -> np.ndarray:
    graphdef, state = nnx.split(model)
    return np.asarray(_forward(graphdef, state, jnp.asarray(IDS)))


def torch_logits(model) -> np.ndarray:
    with torch.no_grad():
        return model(input_ids=torch.from_numpy(IDS).long()).logits.numpy()


def randomize(model, seed: int = 0) -> None:
    """Trained-looking adapters: B != 0 and magnitudes off ||W||."""
    rng = np.random.default_rng(seed)
    values = {}
    for name, v in flat_params(model).items():
        if name.endswith(".lora_B"):
            values[name] = 0.2 * rng.normal(size=v.shape)
        elif name.endswith(".lora_magnitude_vector"):
            values[name] = np.asarray(v) * (1.0 + 0.3 * (rng.random(v.shape) - 0.5))
    set_params(model, values)


@pytest.fixture(scope="module", params=CASES, ids=lambda c: f"{c[2]}-{c[0]}{c[1]}")
def adapted(request, tmp_path_factory):
    family, variant, method = request.param
    base_dir = str(tmp_path_factory.mktemp(f"{family}{variant}"))
    make_hf_model(family, variant, base_dir)
    model, _ = load_model(base_dir)
    apply_peft(model, method, r=4, alpha=8, dropout=0.05)
    randomize(model)
    return base_dir, method, model, jaxft_logits(model)


def test_merged_export_loads_in_transformers(adapted, tmp_path):
    base_dir, method, model, logits = adapted
    merged = merge_adapters(model)
    assert not any(".lora_" in k for k in flat_params(merged))
    assert any(".lora_" in k for k in flat_params(model))  # merging copies, the adapted model stays
    out = export_merged(model, None, str(tmp_path / "merged"), json.load(open(os.path.join(base_dir, "config.json"))))
    hf = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    assert np.max(np.abs(torch_logits(hf) - logits)) <= 1e-4
    assert np.max(np.abs(jaxft_logits(merged) - logits)) <= 1e-4
    keys = set(load_file(os.path.join(out, "model.safetensors")))
    assert ("lm_head.weight" in keys) == (not model.config.tie_word_embeddings)


def test_peft_export_loads_in_peft_and_round_trips(adapted, tmp_path):
    base_dir, method, model, logits = adapted
    out = export_peft(model, str(tmp_path / "adapter"), base_model=base_dir, method=method, r=4, alpha=8,
                      dropout=0.05, targets=DEFAULT_TARGETS, rslora=False)
    config = json.load(open(os.path.join(out, "adapter_config.json")))
    assert config["use_dora"] == (method == "dora") and config["r"] == 4 and config["lora_alpha"] == 8
    assert sorted(config["target_modules"]) == sorted(DEFAULT_TARGETS)

    # the key set PEFT itself writes for the same configuration
    ref = peft.get_peft_model(AutoModelForCausalLM.from_pretrained(base_dir),
                              peft.LoraConfig(r=4, lora_alpha=8, target_modules=list(DEFAULT_TARGETS),
                                              use_dora=method == "dora"))
    ref.save_pretrained(str(tmp_path / "ref"))
    ours = load_file(os.path.join(out, "adapter_model.safetensors"))
    theirs = load_file(str(tmp_path / "ref" / "adapter_model.safetensors"))
    assert set(ours) == set(theirs)
    assert all(ours[k].shape == theirs[k].shape for k in ours)

    pm = peft.PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), out)
    pm.eval()
    assert np.max(np.abs(torch_logits(pm) - logits)) <= 1e-4

    fresh, _ = load_model(base_dir)
    load_peft_adapter(fresh, out)
    np.testing.assert_array_equal(jaxft_logits(fresh), logits)


def test_export_peft_checks_hyperparameters(adapted, tmp_path):
    _, method, model, _ = adapted
    with pytest.raises(ConfigError, match="r=16"):
        export_peft(model, str(tmp_path / "x"), base_model="b", r=16)
    with pytest.raises(ConfigError, match="no adapters"):
        export_peft(merge_adapters(model), str(tmp_path / "y"), base_model="b")
    assert not os.listdir(tmp_path)


def test_bad_adapter_dir_fails_before_touching_the_model(adapted, tmp_path):
    base_dir, _, model, _ = adapted
    out = export_peft(model, str(tmp_path / "adapter"), base_model=base_dir)
    weights = os.path.join(out, "adapter_model.safetensors")
    tensors = load_file(weights)
    tensors.pop(sorted(tensors)[-1])
    save_file(tensors, weights)
    fresh, _ = load_model(base_dir)
    with pytest.raises(WeightLoadError, match="missing tensor"):
        load_peft_adapter(fresh, out)
    assert not any(".lora_" in k for k in flat_params(fresh))


class _BrokenTokenizer:
    def save_pretrained(self, path):
        open(os.path.join(path, "tokenizer.json"), "w").write("{")
        raise OSError("disk full")


def test_failed_export_leaves_nothing_and_overwrite_is_whole(adapted, tmp_path):
    _, _, model, _ = adapted
    out = tmp_path / "merged"
    with pytest.raises(OSError, match="disk full"):
        export_merged(model, _BrokenTokenizer(), str(out))
    assert os.listdir(tmp_path) == []
    export_merged(model, None, str(out))
    (out / "stale.txt").write_text("old")
    export_merged(model, None, str(out))
    assert sorted(os.listdir(tmp_path)) == ["merged"]
    assert sorted(os.listdir(out)) == ["config.json", "model.safetensors"]


def test_cli_exports_adapter_dir(tmp_path):
    base_dir = str(tmp_path / "base")
    make_hf_model("llama", 0, base_dir)
    model, _ = load_model(base_dir)
    apply_peft(model, "lora", r=4, alpha=8)
    randomize(model)
    adapter = export_peft(model, str(tmp_path / "adapter"), base_model=base_dir)
    assert export_main(["--checkpoint", adapter, "--out", str(tmp_path / "m"), "--format", "merged"]) == 0
    hf = AutoModelForCausalLM.from_pretrained(str(tmp_path / "m"), dtype=torch.float32)
    assert np.max(np.abs(torch_logits(hf) - jaxft_logits(model))) <= 1e-4
    assert export_main(["--checkpoint", base_dir, "--out", str(tmp_path / "p"), "--format", "peft"]) == 2
    assert export_main(["--checkpoint", str(tmp_path), "--out", str(tmp_path / "q")]) == 2


@pytest.mark.parametrize("method", ["dora", "full"])
def test_cli_exports_a_training_workdir(method, tmp_path):
    """What jaxft.train saved goes out as merged HF weights (and, for adapters, a PEFT adapter that
    loads back onto a fresh base) with the restored model's logits."""
    from jaxft.train.config import load_config_file
    from jaxft.run_setup import build_model
    from jaxft.train.loop import train
    from jaxft.train.restore import restore_model

    c = load_config_file(os.path.join(os.path.dirname(__file__), "..", "configs", "tiny.py"))
    c.method, c.total_steps, c.checkpoint_every_steps, c.data.limit = method, 3, 3, 16
    work = str(tmp_path / "run")
    train(c, work, progress=False)
    trained, _, _ = restore_model(work)
    want = jaxft_logits(trained)
    assert export_main(["--checkpoint", work, "--out", str(tmp_path / "m"), "--format", "merged"]) == 0
    hf = AutoModelForCausalLM.from_pretrained(str(tmp_path / "m"), dtype=torch.float32)
    assert np.max(np.abs(torch_logits(hf) - want)) <= 1e-4
    assert os.path.isfile(tmp_path / "m" / "tokenizer.json")
    if method == "full":
        assert export_main(["--checkpoint", work, "--out", str(tmp_path / "p"), "--format", "peft"]) == 2
        assert not os.path.exists(tmp_path / "p")
        return
    assert any(".lora_B" in k and np.abs(np.asarray(v)).max() > 0 for k, v in flat_params(trained).items())
    assert export_main(["--checkpoint", work, "--out", str(tmp_path / "p"), "--format", "peft"]) == 0
    with open(tmp_path / "p" / "adapter_config.json") as f:
        cfg = json.load(f)
    assert (cfg["r"], cfg["lora_alpha"], cfg["use_dora"]) == (c.peft.r, c.peft.alpha, True)
    c.method = "full"
    fresh, _ = build_model(c)  # the same seeded random base the run started from
    load_peft_adapter(fresh, str(tmp_path / "p"))
    np.testing.assert_allclose(jaxft_logits(fresh), want, atol=1e-5, rtol=0)
