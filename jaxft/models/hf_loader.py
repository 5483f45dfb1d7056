"""Local Hugging Face directories (config.json + safetensors, single or sharded) and hub ids."""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from jaxft.errors import UnknownModelError, WeightLoadError
from jaxft.models.hf_config import config_from_hf
from jaxft.models.params import build_from_tensors
from jaxft.models.transformer import Transformer

_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


def is_hf_dir(path: str) -> bool:
    """An HF model directory, and no training workdir (an older one holds a config.json too)."""
    from jaxft.rundir import dir_kind

    return dir_kind(path) == "hf"


def read_config(path: str):
    where = os.path.join(path, "config.json")
    try:
        with open(where) as f:
            d = json.load(f)
    except json.JSONDecodeError as e:
        raise WeightLoadError(f"{where}: not valid JSON ({e})") from e
    return config_from_hf(d, where)


def _tensor_index(path: str) -> dict[str, str]:
    """tensor name -> safetensors file holding it."""
    index = os.path.join(path, "model.safetensors.index.json")
    single = os.path.join(path, "model.safetensors")
    if os.path.isfile(index):
        with open(index) as f:
            weight_map = json.load(f)["weight_map"]
        return {k: os.path.join(path, v) for k, v in weight_map.items()}
    if os.path.isfile(single):
        from safetensors import safe_open
        with safe_open(single, framework="flax") as f:
            return {k: single for k in f.keys()}
    raise WeightLoadError(f"{path}: no model.safetensors or model.safetensors.index.json "
                          "(only safetensors checkpoints are read)")


def load_hf_dir(path: str, *, dtype: Any, param_dtype: Any, **options: Any) -> Transformer:
    from safetensors import safe_open

    cfg = read_config(path)
    where = _tensor_index(path)
    handles: dict[str, Any] = {}

    def get(name: str) -> np.ndarray:
        file = where[name]
        if file not in handles:
            handles[file] = safe_open(file, framework="flax")
        return handles[file].get_tensor(name)

    def ignore(name: str) -> bool:
        return name.endswith(_IGNORED_SUFFIXES) or (cfg.tie_word_embeddings and name == "lm_head.weight")

    return build_from_tensors(cfg, get, set(where), dtype=dtype, param_dtype=param_dtype,
                              source=path, ignore=ignore, **options)


def download_hub(repo_id: str) -> str:
    """Fetch config, tokenizer and safetensors of a hub model (needs network; users have it)."""
    try:
        from huggingface_hub import snapshot_download
        return snapshot_download(repo_id, allow_patterns=["*.json", "*.safetensors", "tokenizer*", "*.model",
                                                          "*.txt"])
    except Exception as e:  # noqa: BLE001 - any hub failure becomes one clear message
        raise UnknownModelError(f"could not fetch {repo_id!r} from the Hugging Face hub: {e}. "
                                "Offline, pass a local HF directory, a .gguf file or a registry name.") from e
