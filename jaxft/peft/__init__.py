"""Parameter-efficient fine-tuning: LoRA/DoRA adapters, trainable partitions, merge and export.

Names are imported on first use, so `jaxft.peft.methods` (METHODS, TARGETS) loads without jax or flax:
configs and the report read it.
"""

import importlib

from jaxft.peft.methods import METHODS, TARGETS

_HOME = {
    "DoRALinear": "adapters", "LoRALinear": "adapters", "dora_weight_norm": "adapters",
    "DEFAULT_TARGETS": "apply", "apply_peft": "apply", "resolve_targets": "apply",
    "export_merged": "export", "export_peft": "export", "load_peft_adapter": "export", "merge_adapters": "export",
    "merge_params": "partition", "split_params": "partition",
}


def __getattr__(name):
    if name in _HOME:
        return getattr(importlib.import_module(f"jaxft.peft.{_HOME[name]}"), name)
    raise AttributeError(f"module 'jaxft.peft' has no attribute {name!r}")


__all__ = ["METHODS", "TARGETS", *_HOME]
