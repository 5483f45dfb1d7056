"""Flat HF-named parameter dicts <-> NNX models (tree mode: split outside, plain arrays inside)."""

from __future__ import annotations

from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, traverse_util

from jaxft.errors import WeightLoadError
from jaxft.models.config import ModelConfig
from jaxft.models.transformer import Transformer


def path_name(path: tuple) -> str:
    return ".".join(str(p) for p in path)


def flat_params(state_or_model: Any) -> dict[str, Any]:
    """{'model.layers.0.self_attn.q_proj.weight': array, ...} for a model or an nnx.State."""
    state = state_or_model if isinstance(state_or_model, nnx.State) else nnx.state(state_or_model, nnx.Param)
    pure = nnx.to_pure_dict(state)
    return {path_name(k): v for k, v in traverse_util.flatten_dict(pure).items()}


def abstract_model(cfg: ModelConfig, dtype: Any = jnp.float32, param_dtype: Any = jnp.float32,
                   **options: Any) -> Transformer:
    """Shapes only (jax.eval_shape): no memory, usable for real sizes. `options`: Transformer's
    scan_layers, remat and attention."""
    return nnx.eval_shape(lambda: Transformer(cfg, dtype=dtype, param_dtype=param_dtype, rngs=nnx.Rngs(0),
                                              **options))


def count_params(model: Any) -> int:
    return int(sum(np.prod(v.shape) for v in flat_params(model).values()))


def build_from_tensors(cfg: ModelConfig, get: Callable[[str], np.ndarray], names: set[str], *,
                       dtype: Any, param_dtype: Any, source: str,
                       ignore: Callable[[str], bool] = lambda n: False, **options: Any) -> Transformer:
    """Create the model (`options`: Transformer's scan_layers, remat, attention) and fill every
    parameter from `get(name)`.

    Missing, unexpected (not ignored) and mis-shaped tensors raise WeightLoadError naming the
    tensor and the source; nothing is allocated with random values first.
    """
    abstract = abstract_model(cfg, dtype, param_dtype, **options)
    graphdef, state = nnx.split(abstract)
    pure = nnx.to_pure_dict(state)
    flat = traverse_util.flatten_dict(pure)
    wanted = {path_name(k) for k in flat}
    missing = sorted(wanted - names)
    if missing:
        raise WeightLoadError(f"{source}: missing tensor {missing[0]!r}"
                              + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    extra = sorted(n for n in names - wanted if not ignore(n))
    if extra:
        raise WeightLoadError(f"{source}: unexpected tensor {extra[0]!r} that this {cfg.family} config does "
                              f"not use" + (f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""))
    filled = {}
    for key, abstract_leaf in flat.items():
        name = path_name(key)
        arr = get(name)
        if tuple(arr.shape) != tuple(abstract_leaf.shape):
            raise WeightLoadError(f"{source}: tensor {name!r} has shape {tuple(arr.shape)}, "
                                  f"expected {tuple(abstract_leaf.shape)}")
        filled[key] = jnp.asarray(arr, dtype=param_dtype)
    nnx.replace_by_pure_dict(state, traverse_util.unflatten_dict(filled))
    return nnx.merge(graphdef, state)


def set_params(model: Any, values: Mapping[str, Any]) -> None:
    """Overwrite named parameters in place (tests and export use it)."""
    state = nnx.state(model, nnx.Param)
    pure = traverse_util.flatten_dict(nnx.to_pure_dict(state))
    by_name = {path_name(k): k for k in pure}
    for name, v in values.items():
        if name not in by_name:
            raise WeightLoadError(f"no parameter named {name!r}")
        pure[by_name[name]] = jnp.asarray(v, dtype=pure[by_name[name]].dtype)
    nnx.replace_by_pure_dict(state, traverse_util.unflatten_dict(pure))
    nnx.update(model, state)


def cast_params(model: Any, dtype: Any) -> None:
    state = nnx.state(model, nnx.Param)
    nnx.update(model, jax.tree.map(lambda x: x.astype(dtype), state))
