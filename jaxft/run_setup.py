"""A validated config -> what a run is made of: the model with its adapters (real weights, or shapes
only), the tokenizer, the mesh and the batch layout.

One builder for the train loop, the memory planner, restore, analysis, the study, export, the benches
and the tests: the planner counts the model and micro-batches the loop trains, not a copy of them.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any

from jaxft.errors import ConfigError
from jaxft.train.batch_layout import BatchLayout, layout, planned_rows


def model_options(c) -> dict[str, Any]:
    """Transformer's constructor arguments beyond the weights; "auto" must be resolved (jaxft.train.auto)."""
    for key in ("attention", "remat"):
        if str(c[key]) == "auto":
            raise ConfigError(f"config.{key}='auto' must be resolved first (jaxft.train.auto.resolve)")
    return {"scan_layers": bool(c.scan_layers), "remat": str(c.remat), "attention": str(c.attention)}


def has_shapes(c) -> bool:
    """Whether `model_config(c)` can answer without weights (a hub id cannot before it is downloaded)."""
    from jaxft.models.registry import GGUF_PACKAGES, HF_CONFIGS
    from jaxft.rundir import dir_kind

    return (c.model == "random" or c.model in HF_CONFIGS or c.model in GGUF_PACKAGES
            or (c.model.endswith(".gguf") and os.path.isfile(c.model)) or dir_kind(c.model) == "hf")


@functools.lru_cache(maxsize=8)
def _gguf_config(path: str, mtime_ns: int, size: int):
    """A GGUF file's ModelConfig from its header (tensors stay on disk), read once per file version: the
    reader parses every metadata field, the vocabulary too, which takes seconds."""
    from jaxft.models.gguf_loader import gguf_config

    return gguf_config(path)


def model_config(c):
    """The ModelConfig of `c.model` from its config alone: no weights are read."""
    import json

    from jaxft.models import ModelConfig
    from jaxft.models.hf_config import config_from_hf
    from jaxft.models.registry import GGUF_PACKAGES, HF_CONFIGS, gguf_package_file, registry_config
    from jaxft.rundir import HF_CONFIG, dir_kind

    if c.model == "random":
        return ModelConfig(**c.random_model.to_dict())
    if c.model in HF_CONFIGS:
        return registry_config(c.model)
    if c.model in GGUF_PACKAGES or (c.model.endswith(".gguf") and os.path.isfile(c.model)):
        path = gguf_package_file(c.model) if c.model in GGUF_PACKAGES else c.model
        st = os.stat(path)
        return _gguf_config(path, st.st_mtime_ns, st.st_size)
    if dir_kind(c.model) == "hf":
        path = os.path.join(c.model, HF_CONFIG)
        with open(path) as f:
            return config_from_hf(json.load(f), where=path)
    raise ConfigError(f"model {c.model!r}: shapes alone need 'random', a registry name ({', '.join(HF_CONFIGS)}), "
                      f"a .gguf file or an HF directory with config.json")


def add_adapters(model, c):
    """LoRA/DoRA adapters of `c.peft` on `model` (Full FT: the model as it is)."""
    if c.method == "full":
        return model
    from jaxft.peft import apply_peft

    return apply_peft(model, c.method, targets=tuple(c.peft.targets), r=c.peft.r, alpha=c.peft.alpha,
                      dropout=c.peft.dropout, rslora=c.peft.rslora, seed=c.seed)


def build_model(c, *, abstract: bool = False) -> tuple[Any, Any]:
    """(model with adapters, tokenizer). `abstract`: shapes only (jax.eval_shape), no weights read and
    no tokenizer (None). Real weights resolve attention/remat "auto" for this host first."""
    from flax import nnx

    from jaxft.models import Transformer, load_model, load_tokenizer
    from jaxft.models.load import as_dtype
    from jaxft.models.params import abstract_model

    dtype, pdtype = as_dtype(c.compute_dtype), as_dtype(c.param_dtype)
    if abstract:
        return add_adapters(abstract_model(model_config(c), dtype, pdtype, **model_options(c)), c), None
    if "auto" in (c.attention, c.remat):
        from jaxft.train.auto import resolve_for_this_host

        resolve_for_this_host(c, micro=False, refuse=False)  # what the model is built with; no training check
    options = model_options(c)
    if c.model == "random":
        model = Transformer(model_config(c), dtype=dtype, param_dtype=pdtype, rngs=nnx.Rngs(c.seed), **options)
        tok = load_tokenizer(c.tokenizer)
    else:
        model, tok = load_model(c.model, dtype=dtype, param_dtype=pdtype, **options)
        if c.tokenizer:
            tok = load_tokenizer(c.tokenizer)
    return add_adapters(model, c), tok


def batch_layout(c, shards: int, rows: int | None = None) -> BatchLayout:
    """Rows per step over `shards` batch shards and micro-steps; `rows` None: the planner's count
    (`planned_rows`), else what the data pipeline's StepPlan chose."""
    return layout(planned_rows(c, shards) if rows is None else rows, c.micro_batch_size, shards)


@dataclasses.dataclass(frozen=True)
class RunParts:
    model: Any  # Transformer with adapters (abstract: jax.ShapeDtypeStruct leaves)
    tokenizer: Any  # None when abstract
    mesh: Any  # jax.sharding.Mesh over this host's view of the devices; None when abstract
    data: int  # mesh axes
    fsdp: int

    @property
    def shards(self) -> int:
        """Batch shards: the batch axis is split over data x fsdp."""
        return self.data * self.fsdp


def build(c, *, abstract: bool = False, n_devices: int | None = None) -> RunParts:
    """Everything `c` trains with. Real: weights, tokenizer and a mesh over jax.devices(). Abstract:
    shapes for `n_devices` devices (default: this host's count), nothing allocated."""
    import jax

    from jaxft.train import sharding as shard_lib

    model, tok = build_model(c, abstract=abstract)
    if abstract:
        n = jax.device_count() if n_devices is None else n_devices
        data, fsdp = shard_lib.mesh_axes(dict(c.mesh_shape), n)
        return RunParts(model, tok, None, data, fsdp)
    mesh = shard_lib.make_mesh(dict(c.mesh_shape), jax.devices())
    return RunParts(model, tok, mesh, mesh.shape["data"], mesh.shape["fsdp"])
