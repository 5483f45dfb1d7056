"""Trainable/frozen parameter partitions: what the optimizer sees is what gets gradients."""

from __future__ import annotations

from typing import Any

from flax import nnx

from jaxft.errors import ConfigError
from jaxft.peft.methods import METHODS


def trainable_filter(method: str) -> Any:
    """Full FT trains every Param; LoRA/DoRA only the adapters (nnx.LoRAParam, a Param subclass)."""
    if method not in METHODS:
        raise ConfigError(f"peft method {method!r} is not supported; allowed: {list(METHODS)}")
    return nnx.Param if method == "full" else nnx.LoRAParam


def split_params(model: Any, method: str) -> tuple[nnx.GraphDef, nnx.State, nnx.State]:
    """(graphdef, trainable, frozen); frozen also holds any non-Param state."""
    graphdef, trainable, frozen = nnx.split(model, trainable_filter(method), ...)
    if method != "full" and not nnx.to_flat_state(trainable):
        raise ConfigError(f"method {method!r}: the model has no adapters; call apply_peft(model, {method!r}) first")
    return graphdef, trainable, frozen


def merge_params(graphdef: nnx.GraphDef, trainable: nnx.State, frozen: nnx.State) -> Any:
    return nnx.merge(graphdef, trainable, frozen)
