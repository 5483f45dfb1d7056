"""Parameter-efficient fine-tuning: LoRA/DoRA adapters, trainable partitions, merge and export."""

from jaxft.peft.adapters import DoRALinear, LoRALinear, dora_weight_norm
from jaxft.peft.apply import DEFAULT_TARGETS, METHODS, apply_peft, resolve_targets
from jaxft.peft.export import export_merged, export_peft, load_peft_adapter, merge_adapters
from jaxft.peft.partition import merge_params, split_params

__all__ = ["DoRALinear", "LoRALinear", "dora_weight_norm", "DEFAULT_TARGETS", "METHODS", "apply_peft",
           "resolve_targets", "merge_params", "split_params", "export_merged", "export_peft", "load_peft_adapter",
           "merge_adapters"]
