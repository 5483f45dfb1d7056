"""Fold adapters into plain weights, and write HF (merged) or PEFT (adapter-only) directories.

Both writers fill a temporary sibling directory and rename it into place (jaxft.atomic.atomic_dir), so a
failure leaves no half-written output, keeps the previous one and raises WriteError naming the directory.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxft.atomic import atomic_dir
from jaxft.errors import ConfigError, WeightLoadError
from jaxft.models.config import ModelConfig
from jaxft.models.hf_config import config_to_hf
from jaxft.models.params import flat_params, set_params
from jaxft.models.transformer import Linear
from jaxft.peft.adapters import DoRALinear, LoRALinear
from jaxft.peft.apply import (DEFAULT_TARGETS, adapted_layers, apply_peft, is_plain, leaf_targets,
                              linear_layers, matches, module_name, peft_method, replace_module,
                              resolve_targets)
from jaxft.rundir import ADAPTER_CONFIG

PEFT_PREFIX = "base_model.model."
ADAPTER_WEIGHTS = "adapter_model.safetensors"


def merged_weight(layer: LoRALinear) -> jax.Array:
    """W + s·B·A (LoRA) or m/||W + s·B·A||·(W + s·B·A) (DoRA), in float32, cast once to W's dtype."""
    w = layer.weight[...]
    a = layer.lora_A[...].astype(jnp.float32)
    b = layer.lora_B[...].astype(jnp.float32)
    merged = w.astype(jnp.float32) + layer.scaling * jnp.matmul(b, a, precision=jax.lax.Precision.HIGHEST)
    if isinstance(layer, DoRALinear):
        norm = jnp.linalg.norm(merged, axis=1)
        merged = (layer.lora_magnitude_vector[...].astype(jnp.float32) / norm)[:, None] * merged
    return merged.astype(w.dtype)


def _plain_linear(layer: LoRALinear, weight: jax.Array) -> Linear:
    """A Linear holding `weight` and the adapter's bias, built without a random init."""
    out, inp = weight.shape
    lin = nnx.eval_shape(lambda: Linear(inp, out, bias=layer.bias is not None, dtype=layer.dtype,
                                        param_dtype=weight.dtype, rngs=nnx.Rngs(0)))
    lin.weight = nnx.Param(weight)
    lin.bias = layer.bias if layer.bias is None else nnx.Param(layer.bias[...])
    return lin


def merge_adapters(model: Any) -> Any:
    """A copy of `model` with every adapter folded into its weight; `model` itself is unchanged."""
    graphdef, state = nnx.split(model)
    copy = nnx.merge(graphdef, state)  # new Variables over the same (immutable) arrays
    paths = {module_name(p): p for p, m in nnx.iter_modules(copy) if isinstance(m, LoRALinear)}
    for name, layer in adapted_layers(copy).items():
        replace_module(copy, paths[name], _plain_linear(layer, merged_weight(layer)))
    return copy


def _save_safetensors(tensors: dict[str, Any], path: str) -> None:
    from safetensors.numpy import save_file

    save_file({k: np.ascontiguousarray(np.asarray(v)) for k, v in tensors.items()}, path,
              metadata={"format": "pt"})


def _write_json(d: dict, path: str) -> None:
    with open(path, "w") as f:
        json.dump(d, f, indent=2, sort_keys=True)
        f.write("\n")


def export_merged(model: Any, tokenizer: Any, out_dir: str, base_config: dict | ModelConfig | None = None,
                  dtype: Any = None) -> str:
    """An HF directory transformers loads: config.json, model.safetensors, tokenizer files.

    Adapters are merged at the model's parameter precision (float32 for training checkpoints) and
    the result is cast once to `dtype` (e.g. "bfloat16") when given.

    `base_config` may be the source config.json dict (its extra fields are kept, architecture fields
    come from the model) or a ModelConfig; by default the model's own config. Tied embeddings: no
    lm_head tensor is written.
    """
    plain = merge_adapters(model) if adapted_layers(model) else model
    cfg = base_config if isinstance(base_config, ModelConfig) else plain.config
    config = dict(base_config) if isinstance(base_config, dict) else {}
    config.update(config_to_hf(cfg))
    tensors = flat_params(plain)
    if dtype is not None:
        tensors = {k: np.asarray(v).astype(jnp.dtype(dtype)) for k, v in tensors.items()}
    config.pop("torch_dtype", None)  # superseded by "dtype" in transformers 5
    config["dtype"] = str(np.dtype(tensors["model.embed_tokens.weight"].dtype))
    with atomic_dir(out_dir) as tmp:
        _write_json(config, os.path.join(tmp, "config.json"))
        _save_safetensors(tensors, os.path.join(tmp, "model.safetensors"))
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
    return out_dir


def _peft_targets(model: Any, names: list[str], targets: Any) -> str | list[str]:
    """target_modules that selects exactly `names` under PEFT's own matching rules."""
    if isinstance(targets, str):
        return targets
    if targets is not None and all(is_plain(t) for t in targets):
        return sorted(set(targets))
    leaves = leaf_targets(names)
    if sorted(n for n in linear_layers(model) if any(matches(t, n) for t in leaves)) == sorted(names):
        return leaves
    return sorted(names)


def _check(name: str, given: Any, actual: Any) -> None:
    if given is not None and given != actual:
        raise ConfigError(f"export_peft: {name}={given!r} but the model's adapters have {name}={actual!r}")


def export_peft(model: Any, out_dir: str, *, base_model: str | None, method: str | None = None,
                r: int | None = None, alpha: float | None = None, dropout: float | None = None,
                targets: Any = None, rslora: bool | None = None) -> str:
    """adapter_config.json + adapter_model.safetensors that `peft.PeftModel.from_pretrained` loads.

    Hyper-parameters default to (and are checked against) what the adapter layers carry.
    """
    layers = adapted_layers(model)
    if not layers:
        raise ConfigError("export_peft: the model has no adapters (full fine-tuning exports with export_merged)")
    first = next(iter(layers.values()))
    hp = {"r": first.r, "alpha": first.lora_alpha, "dropout": first.lora_dropout, "rslora": first.use_rslora}
    for name, layer in layers.items():
        other = {"r": layer.r, "alpha": layer.lora_alpha, "dropout": layer.lora_dropout, "rslora": layer.use_rslora}
        if other != hp:
            raise ConfigError(f"export_peft: layer {name!r} has {other}, others {hp}; PEFT needs one setting")
    actual_method = peft_method(model)
    for key, given in (("method", method), ("r", r), ("alpha", alpha), ("dropout", dropout), ("rslora", rslora)):
        _check(key, given, actual_method if key == "method" else hp[key])
    names = sorted(layers)
    config = {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": base_model,
        "r": hp["r"], "lora_alpha": hp["alpha"], "lora_dropout": hp["dropout"], "use_rslora": hp["rslora"],
        "use_dora": actual_method == "dora", "target_modules": _peft_targets(model, names, targets),
        "bias": "none", "fan_in_fan_out": False, "init_lora_weights": True, "inference_mode": True,
        "modules_to_save": None,
    }
    tensors = {}
    for name, layer in layers.items():
        tensors[f"{PEFT_PREFIX}{name}.lora_A.weight"] = layer.lora_A[...]
        tensors[f"{PEFT_PREFIX}{name}.lora_B.weight"] = layer.lora_B[...]
        if isinstance(layer, DoRALinear):
            tensors[f"{PEFT_PREFIX}{name}.lora_magnitude_vector"] = layer.lora_magnitude_vector[...]
    with atomic_dir(out_dir) as tmp:
        _write_json(config, os.path.join(tmp, ADAPTER_CONFIG))
        _save_safetensors(tensors, os.path.join(tmp, ADAPTER_WEIGHTS))
    return out_dir


_UNSUPPORTED = {"rank_pattern": {}, "alpha_pattern": {}, "layers_to_transform": None, "layers_pattern": None,
                "modules_to_save": None, "lora_bias": False, "fan_in_fan_out": False, "exclude_modules": None}


def read_adapter_config(adapter_dir: str) -> dict:
    path = os.path.join(adapter_dir, ADAPTER_CONFIG)
    if not os.path.isfile(path):
        raise WeightLoadError(f"{adapter_dir}: no {ADAPTER_CONFIG}, so it is no PEFT adapter directory")
    with open(path) as f:
        cfg = json.load(f)
    if cfg.get("peft_type", "LORA") != "LORA":
        raise WeightLoadError(f"{path}: peft_type={cfg.get('peft_type')!r}; only LORA (with or without DoRA) loads")
    for key, default in _UNSUPPORTED.items():
        if cfg.get(key, default) not in (default, [], {}, None):
            raise WeightLoadError(f"{path}: field {key!r}={cfg[key]!r} is not supported by jaxft")
    if cfg.get("bias", "none") != "none":
        raise WeightLoadError(f"{path}: field 'bias'={cfg['bias']!r} is not supported by jaxft (only 'none')")
    return cfg


def load_peft_adapter(model: Any, adapter_dir: str) -> Any:
    """Add the adapters of a PEFT LoRA/DoRA directory to a plain jaxft model, in place; returns it."""
    from safetensors.numpy import load_file

    cfg = read_adapter_config(adapter_dir)
    method = "dora" if cfg.get("use_dora") else "lora"
    targets = cfg.get("target_modules") or list(DEFAULT_TARGETS)
    r = int(cfg["r"])
    path = os.path.join(adapter_dir, ADAPTER_WEIGHTS)
    if not os.path.isfile(path):
        raise WeightLoadError(f"{adapter_dir}: no {ADAPTER_WEIGHTS}")
    stored = load_file(path)
    layers = linear_layers(model)
    wanted = {}  # PEFT key -> (jaxft name, shape); checked in full before the model is touched
    for name in resolve_targets(model, targets, strict=False):
        out, inp = layers[name].out_features, layers[name].in_features
        wanted[f"{PEFT_PREFIX}{name}.lora_A.weight"] = (f"{name}.lora_A", (r, inp))
        wanted[f"{PEFT_PREFIX}{name}.lora_B.weight"] = (f"{name}.lora_B", (out, r))
        if method == "dora":
            wanted[f"{PEFT_PREFIX}{name}.lora_magnitude_vector"] = (f"{name}.lora_magnitude_vector", (out,))
    missing = sorted(set(wanted) - set(stored))
    extra = sorted(set(stored) - set(wanted))
    if missing or extra:
        bad = f"missing tensor {missing[0]!r}" if missing else f"unexpected tensor {extra[0]!r}"
        raise WeightLoadError(f"{path}: {bad} for target_modules={targets!r}")
    for key, (_, shape) in wanted.items():
        if tuple(stored[key].shape) != shape:
            raise WeightLoadError(f"{path}: tensor {key!r} has shape {tuple(stored[key].shape)}, expected {shape}")
    apply_peft(model, method, targets=targets, r=r, alpha=cfg.get("lora_alpha", 8),
               dropout=float(cfg.get("lora_dropout", 0.0)), rslora=bool(cfg.get("use_rslora", False)),
               strict=False)
    values = {name: stored[key] for key, (name, _) in wanted.items()}
    set_params(model, values)
    return model
