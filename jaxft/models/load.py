"""`load_model(source)`: registry name, hub id, local HF directory or .gguf file -> (model, tokenizer)."""

from __future__ import annotations

import os
from typing import Any

import jax.numpy as jnp

from jaxft.errors import UnknownModelError
from jaxft.models import registry
from jaxft.models.gguf_loader import gguf_tokenizer, load_gguf
from jaxft.models.hf_loader import download_hub, is_hf_dir, load_hf_dir
from jaxft.rundir import is_training_workdir

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def as_dtype(dtype: Any):
    if isinstance(dtype, str):
        if dtype not in _DTYPES:
            raise UnknownModelError(f"dtype {dtype!r} is not supported; allowed: {sorted(_DTYPES)}")
        return _DTYPES[dtype]
    return jnp.dtype(dtype)


def resolve_source(source: str) -> tuple[str, str]:
    """-> (kind, path_or_id) with kind in {'gguf', 'hf_dir', 'hub'}."""
    if source in registry.GGUF_PACKAGES:
        return "gguf", registry.gguf_package_file(source)
    if source in registry.HUB_IDS:
        return "hub", registry.HUB_IDS[source]
    if source.endswith(".gguf"):
        if not os.path.isfile(source):
            raise UnknownModelError(f"GGUF file {source!r} does not exist")
        return "gguf", source
    if os.path.isdir(source):
        if is_hf_dir(source):
            return "hf_dir", source
        if is_training_workdir(source):
            raise UnknownModelError(f"directory {source!r} is a jaxft training workdir, not a model: export it "
                                    f"(python -m jaxft.export --checkpoint={source} --out=DIR) and load that")
        raise UnknownModelError(f"directory {source!r} has no config.json, so it is no HF model directory")
    parts = source.split("/")
    if len(parts) == 2 and all(parts) and not os.path.exists(source):
        return "hub", source
    raise UnknownModelError(f"cannot resolve model source {source!r}: not a registry name "
                            f"({', '.join(registry.KNOWN)}), a .gguf file, an HF directory or a hub id")


def _dir_tokenizer(path: str):
    from jaxft.models.tokenizer import Tokenizer

    names = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
    if not any(os.path.isfile(os.path.join(path, n)) for n in names):
        return None  # e.g. tiny random test models saved without a tokenizer
    return Tokenizer.from_dir(path)


def load_model(source: str, dtype: Any = "float32", param_dtype: Any = "float32", **options: Any):
    """(model, tokenizer) for `source`; `dtype` is the compute dtype, `param_dtype` the storage dtype,
    `options` Transformer's scan_layers, remat and attention."""
    dtype, param_dtype = as_dtype(dtype), as_dtype(param_dtype)
    kind, where = resolve_source(source)
    if kind == "gguf":
        return load_gguf(where, dtype=dtype, param_dtype=param_dtype, **options), gguf_tokenizer(where)
    if kind == "hub":
        where = download_hub(where)
    return load_hf_dir(where, dtype=dtype, param_dtype=param_dtype, **options), _dir_tokenizer(where)


def load_tokenizer(source: str):
    """Only the tokenizer of `source` (no weights are read)."""
    kind, where = resolve_source(source)
    if kind == "gguf":
        return gguf_tokenizer(where)
    if kind == "hub":
        where = download_hub(where)
    return _dir_tokenizer(where)
