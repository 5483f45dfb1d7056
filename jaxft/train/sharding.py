"""One mesh (`data`, `fsdp`) and one rule from parameter shapes to mesh axes.

fsdp shards each matrix (and its optimizer moments, which inherit the layout) along its largest
dimension divisible by the fsdp size; vectors stay replicated. The batch is split over both axes.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxft.errors import ConfigError

AXES = ("data", "fsdp")
BATCH_AXES = ("data", "fsdp")


def mesh_axes(mesh_shape: dict, n: int) -> tuple[int, int]:
    """(data, fsdp) for `n` devices, -1 standing for what is left; no devices needed (the planner)."""
    data, fsdp = int(mesh_shape.get("data", -1)), int(mesh_shape.get("fsdp", 1))
    if data == -1 and fsdp == -1:
        raise ConfigError("mesh_shape: at most one of data/fsdp may be -1")
    if data == -1:
        data = n // fsdp
    if fsdp == -1:
        fsdp = n // data
    if data * fsdp != n:
        raise ConfigError(f"mesh_shape data={data} x fsdp={fsdp} does not match the {n} devices")
    return data, fsdp


def make_mesh(mesh_shape: dict, devices: list | None = None) -> Mesh:
    devices = list(devices if devices is not None else jax.devices())
    return Mesh(np.asarray(devices).reshape(mesh_axes(mesh_shape, len(devices))), AXES)


def param_spec(shape: tuple[int, ...], fsdp: int) -> P:
    if fsdp <= 1 or len(shape) < 2:
        return P()
    dims = sorted(range(len(shape)), key=lambda d: -shape[d])
    for d in dims:
        if shape[d] % fsdp == 0:
            spec = [None] * len(shape)
            spec[d] = "fsdp"
            return P(*spec)
    return P()


def param_shardings(mesh: Mesh, tree: Any) -> Any:
    fsdp = mesh.shape["fsdp"]
    return jax.tree.map(lambda x: NamedSharding(mesh, param_spec(tuple(x.shape), fsdp)), tree)


def batch_sharding(mesh: Mesh, accumulated: bool) -> NamedSharding:
    """[accum, micro, seq] when accumulating, else [batch, seq]; the example axis is split."""
    return NamedSharding(mesh, P(None, BATCH_AXES, None) if accumulated else P(BATCH_AXES, None))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())
