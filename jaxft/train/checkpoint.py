"""Orbax checkpoints of (trainable params, optimizer state, step) plus the data-iterator state.

Orbax writes each step to a temporary directory and renames it when complete, so a save killed
midway leaves nothing that `latest_step` would pick. Leaves are saved under index keys with their
tree paths stored beside them: a restore into a different tree fails with a clear error instead
of loading weights into the wrong places.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxft.errors import ConfigError


def _flat(tree: Any) -> tuple[dict[str, Any], list[str], Any]:
    leaves_with_path, treedef = jax.tree_util.tree_flatten_with_path(tree)
    names = [jax.tree_util.keystr(p) for p, _ in leaves_with_path]
    flat = {f"leaf_{i:05d}": leaf for i, (_, leaf) in enumerate(leaves_with_path)}
    return flat, names, treedef


class ProcessStateHandler(ocp.CheckpointHandler):
    """One JSON file per process (`process_<i>-of-<n>.json`): each host's data iterator has read its
    own shard, so every host must get its own state back, not the primary host's."""

    def save(self, directory, args):
        i, n = jax.process_index(), jax.process_count()
        (directory / f"process_{i}-of-{n}.json").write_text(json.dumps(args.state))

    def restore(self, directory, args=None):
        i, n = jax.process_index(), jax.process_count()
        path = directory / f"process_{i}-of-{n}.json"
        if not path.exists():
            saved = sorted(p.name for p in directory.iterdir())
            raise ConfigError(f"{directory}: no data-iterator state for process {i} of {n} (found {saved}); "
                              f"a run resumes its data order only with the process count it was saved with")
        return json.loads(path.read_text())

    def metadata(self, directory):
        return None

    def structure(self, directory):
        return None

    def finalize(self, directory):
        pass

    def close(self):
        pass


@ocp.args.register_with_handler(ProcessStateHandler, for_save=True)
@dataclasses.dataclass
class ProcessStateSave(ocp.args.CheckpointArgs):
    state: Any


@ocp.args.register_with_handler(ProcessStateHandler, for_restore=True)
@dataclasses.dataclass
class ProcessStateRestore(ocp.args.CheckpointArgs):
    pass


class Checkpointer:
    """Items per step: `trainable`, `opt_state` (each a flat leaf dict), `meta` (JSON: tree paths, step)
    and `data` (each process's data-iterator state). Export and analysis restore `trainable` alone."""

    def __init__(self, directory: str, *, keep: int = 2, async_save: bool = True):
        self.directory = os.path.abspath(directory)
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=async_save,
                                               create=True)
        self.manager = ocp.CheckpointManager(self.directory, options=options,
                                             item_names=("trainable", "opt_state", "meta", "data"))

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, trainable: Any, opt_state: Any, data_state: Any, extra: dict | None = None, *,
             force: bool = False):
        t_flat, t_names, _ = _flat(trainable)
        o_flat, o_names, _ = _flat(opt_state)
        meta = {"trainable_paths": t_names, "opt_state_paths": o_names, "step": step,
                "process_count": jax.process_count(), **(extra or {})}
        self.manager.save(step, args=ocp.args.Composite(
            trainable=ocp.args.StandardSave(t_flat), opt_state=ocp.args.StandardSave(o_flat),
            meta=ocp.args.JsonSave(meta), data=ProcessStateSave(data_state)), force=force)

    def _restore_item(self, step: int, item: str, abstract: Any, meta: dict) -> Any:
        flat, names, treedef = _flat(abstract)
        if meta[f"{item}_paths"] != names:
            missing = sorted(set(names) - set(meta[f"{item}_paths"]))[:3]
            raise ConfigError(f"checkpoint {self.directory}/{step} holds a different {item} tree than this "
                              f"config builds (e.g. missing {missing}); was the method or model changed?")
        restored = self.manager.restore(step, args=ocp.args.Composite(**{item: ocp.args.StandardRestore(flat)}))
        return jax.tree_util.tree_unflatten(treedef, [restored[item][k] for k in sorted(flat)])

    def restore(self, step: int, abstract_trainable: Any, abstract_opt_state: Any = None) -> tuple[Any, Any, dict]:
        """Abstract trees of jax.ShapeDtypeStruct (with .sharding); opt_state is skipped when None."""
        meta = self.read_meta(step)
        trainable = self._restore_item(step, "trainable", abstract_trainable, meta)
        opt_state = None
        if abstract_opt_state is not None:
            opt_state = self._restore_item(step, "opt_state", abstract_opt_state, meta)
        return trainable, opt_state, meta

    def read_data_state(self, step: int) -> Any:
        return self.manager.restore(step, args=ocp.args.Composite(data=ProcessStateRestore()))["data"]

    def read_meta(self, step: int) -> dict:
        return self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def abstract_like(tree: Any) -> Any:
    default = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype,
                                                       sharding=getattr(x, "sharding", None) or default), tree)


def to_numpy(tree: Any) -> Any:
    return jax.tree.map(np.asarray, tree)


def read_json(path: str) -> dict:
    with open(path) as f:
        return json.load(f)
