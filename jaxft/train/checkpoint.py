"""Orbax checkpoints of (trainable params, optimizer state, step) plus the data-iterator state.

Orbax writes each step to a temporary directory and renames it when complete, so a save killed
midway leaves nothing that `latest_step` would pick. Leaves are saved under index keys with their
tree paths stored beside them: a restore into a different tree fails with a clear error instead
of loading weights into the wrong places.

Bytes can still rot after the save (orbax reads a flipped byte in an array file back without
complaint), so once a step is on disk its files' sizes and CRC-32s go to `<step>/checksums.json`;
a restore checks them, and a run resumes from the newest checkpoint that passes, moving broken
newer ones aside. A failed write raises CheckpointError naming the path.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import logging
import os
import re
import sys
import threading
import time
import zlib
from typing import Any

import jax
import orbax.checkpoint as ocp

from jaxft.atomic import write_atomic
from jaxft.errors import CheckpointError, ConfigError

ITEMS = ("trainable", "opt_state", "meta", "data")
CHECKSUMS = "checksums.json"  # in each step directory: {relative path: {"bytes", "crc32"}}
COMMIT_MARKER = "commit_success.txt"  # orbax writes it just before the directory gets its final name


class UnreadableCheckpoint(CheckpointError):
    """One step that fails verification or reading; `path` is the file (or item directory) at fault."""

    def __init__(self, step: int, path: str, reason: str):
        super().__init__(f"checkpoint step {step}: {path}: {reason}")
        self.step, self.path, self.reason = step, path, reason


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


@dataclasses.dataclass
class Restored:
    step: int
    trainable: Any
    opt_state: Any
    meta: dict
    data_state: Any
    skipped: list[dict]  # one metrics.jsonl event per unreadable newer step that was moved aside


class Checkpointer:
    """Items per step: `trainable`, `opt_state` (each a flat leaf dict), `meta` (JSON: tree paths, step)
    and `data` (each process's data-iterator state). Export and analysis restore `trainable` alone."""

    def __init__(self, directory: str, *, keep: int = 2, async_save: bool = True):
        self.directory = os.path.abspath(directory)
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=async_save,
                                               create=True)
        self.manager = ocp.CheckpointManager(self.directory, options=options,
                                             item_names=("trainable", "opt_state", "meta", "data"))
        _one_line_orbax_errors()
        # The last save finishes and gets its checksums in this thread while training goes on.
        self._sealer: threading.Thread | None = None
        self._sealer_error: CheckpointError | None = None
        self._failed = False

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def step_dir(self, step: int) -> str:
        return os.path.join(self.directory, str(step))

    def save(self, step: int, trainable: Any, opt_state: Any, data_state: Any, extra: dict | None = None, *,
             force: bool = False):
        self.wait()  # a failure of the previous save surfaces here, named as that step
        t_flat, t_names, _ = _flat(trainable)
        o_flat, o_names, _ = _flat(opt_state)
        meta = {"trainable_paths": t_names, "opt_state_paths": o_names, "step": step,
                "process_count": jax.process_count(), **(extra or {})}
        try:
            saved = self.manager.save(step, args=ocp.args.Composite(
                trainable=ocp.args.StandardSave(t_flat), opt_state=ocp.args.StandardSave(o_flat),
                meta=ocp.args.JsonSave(meta), data=ProcessStateSave(data_state)), force=force)
        except Exception as e:
            self._failed = True
            raise CheckpointError(f"cannot write checkpoint step {step} in {self.directory}: {_short(e)}") from e
        if not saved:  # orbax keeps a step it already holds
            return
        self._sealer = threading.Thread(target=self._finish_and_seal, args=(step,), daemon=True,
                                        name=f"jaxft-seal-{step}")
        self._sealer.start()

    def _finish_and_seal(self, step: int) -> None:
        try:
            self.manager.wait_until_finished()
        except Exception as e:
            self._sealer_error = CheckpointError(f"cannot write checkpoint step {step} in {self.directory}: "
                                                 f"{_short(e)}")
            return
        if jax.process_index() != 0:
            return
        folder = self.step_dir(step)
        path = os.path.join(folder, CHECKSUMS)
        try:
            write_atomic(path, json.dumps(_checksums(folder), indent=1, sort_keys=True) + "\n")
        except OSError as e:
            self._sealer_error = CheckpointError(f"cannot write {path}: {e.strerror or e}")

    def wait(self) -> None:
        """Block until the last save is on disk with its checksums; a failed write raises CheckpointError."""
        if self._sealer is not None:
            self._sealer.join()
            self._sealer = None
        else:
            try:
                self.manager.wait_until_finished()
            except Exception as e:
                self._sealer_error = CheckpointError(f"cannot write a checkpoint in {self.directory}: {_short(e)}")
        if self._sealer_error is not None:
            error, self._sealer_error, self._failed = self._sealer_error, None, True
            raise error

    def _writes_markers(self) -> bool:
        """Older orbax releases (0.12.0) finalize local saves by the rename alone and write no marker;
        a missing marker means an unfinished save only where the other saved steps have theirs."""
        return any(os.path.isfile(os.path.join(self.step_dir(s), COMMIT_MARKER))
                   for s in self.manager.all_steps())

    def verify(self, step: int, items: tuple[str, ...] = ITEMS) -> None:
        """Raise UnreadableCheckpoint for a step without its commit marker or an item, or whose files differ
        from the checksums taken after the save (steps saved without checksums are only read)."""
        folder = self.step_dir(step)
        if not os.path.isfile(os.path.join(folder, COMMIT_MARKER)) and self._writes_markers():
            raise UnreadableCheckpoint(step, os.path.join(folder, COMMIT_MARKER),
                                       "no commit marker: the save never finished")
        for item in items:
            if not os.path.isdir(os.path.join(folder, item)):
                raise UnreadableCheckpoint(step, os.path.join(folder, item), f"item {item!r} is missing")
        sums_path = os.path.join(folder, CHECKSUMS)
        if not os.path.exists(sums_path):
            return
        try:
            with open(sums_path) as f:
                expected = json.load(f)
        except (OSError, ValueError) as e:
            raise UnreadableCheckpoint(step, sums_path, f"unreadable checksums ({e})") from e
        for rel, want in sorted(expected.items()):
            top = rel.split("/")[0]
            if top in ITEMS and top not in items:
                continue
            path = os.path.join(folder, rel)
            if not os.path.isfile(path):
                raise UnreadableCheckpoint(step, path, "file is missing")
            got = _file_checksum(path)
            if got != want:
                raise UnreadableCheckpoint(step, path, f"{got['bytes']} bytes with CRC-32 {got['crc32']}, saved as "
                                                       f"{want['bytes']} bytes with CRC-32 {want['crc32']}")

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

    def restore_checked(self, step: int, abstract_trainable: Any, abstract_opt_state: Any = None, *,
                        data: bool = False) -> tuple[Any, Any, dict, Any]:
        """`restore` after `verify`, any read failure turned into one UnreadableCheckpoint naming the file;
        ConfigError (a tree this config does not build) passes through: the config changed, not the bytes."""
        items = ("trainable", "meta") + (("opt_state",) if abstract_opt_state is not None else ()) + \
            (("data",) if data else ())
        with _quiet_async_errors():
            self.verify(step, items)
            try:
                trainable, opt_state, meta = self.restore(step, abstract_trainable, abstract_opt_state)
                data_state = self.read_data_state(step) if data else None
            except (ConfigError, UnreadableCheckpoint):
                raise
            except Exception as e:
                path = _blamed_path(e, self.step_dir(step))
                raise UnreadableCheckpoint(step, path, _short(e, after=f'{path}": ')) from e
        return trainable, opt_state, meta, data_state

    def restore_newest_readable(self, abstract_trainable: Any, abstract_opt_state: Any, *,
                                log=lambda line: print(line, flush=True)) -> Restored | None:
        """The newest step that verifies and reads (None: no checkpoint at all). Unreadable newer steps are
        logged and renamed `<step>.corrupt-<time>` so no later run picks them; when no step is readable,
        CheckpointError names the workdir and nothing is moved (never a silent start from scratch)."""
        bad: list[UnreadableCheckpoint] = []
        for step in sorted(self.manager.all_steps(), reverse=True):
            try:
                trainable, opt_state, meta, data_state = self.restore_checked(
                    step, abstract_trainable, abstract_opt_state, data=True)
            except UnreadableCheckpoint as e:
                log(unreadable_line(e))
                bad.append(e)
                continue
            return Restored(step, trainable, opt_state, meta, data_state, self._move_aside(bad, step, log))
        if bad:
            raise self.none_readable(bad)
        return None

    def none_readable(self, bad: list[UnreadableCheckpoint]) -> CheckpointError:
        workdir = os.path.dirname(self.directory)
        return CheckpointError(f"{workdir}: none of its checkpoints can be read ("
                               + "; ".join(f"step {e.step}: {e.path}: {e.reason}" for e in bad)
                               + f"); nothing was moved: repair or remove {self.directory} to start over")

    def _move_aside(self, bad: list[UnreadableCheckpoint], resumed_from: int, log) -> list[dict]:
        events = []
        stamp = time.strftime("%Y%m%dT%H%M%S")
        for e in bad:
            src = self.step_dir(e.step)
            dst = f"{src}.corrupt-{stamp}"
            if jax.process_index() == 0:
                try:
                    os.rename(src, dst)
                except OSError as err:
                    raise CheckpointError(f"cannot move unreadable checkpoint {src} aside to {dst}: "
                                          f"{err.strerror or err}") from err
            log(f"checkpoint: moved step {e.step} aside to {dst}; resuming from step {resumed_from}")
            events.append({"step": resumed_from, "event": "checkpoint_unreadable", "unreadable_step": e.step,
                           "file": e.path, "error": e.reason, "moved_to": dst, "resumed_from": resumed_from})
        if bad:
            if jax.process_count() > 1:
                from jax.experimental import multihost_utils

                multihost_utils.sync_global_devices("jaxft_checkpoint_move_aside")
            self.manager.reload()
        return events

    def read_data_state(self, step: int) -> Any:
        return self.manager.restore(step, args=ocp.args.Composite(data=ProcessStateRestore()))["data"]

    def read_meta(self, step: int) -> dict:
        return self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]

    def close(self) -> None:
        """Finish pending saves (raising their failure) and release orbax; after a failed save only release."""
        try:
            if not self._failed:
                self.wait()
        finally:
            try:
                self.manager.close()
            except Exception:
                if not self._failed:
                    raise


def unreadable_line(e: UnreadableCheckpoint) -> str:
    """The line training (and restore_model, for export and analysis) prints for a step it skips."""
    return f"checkpoint: step {e.step} is unreadable: {e.path}: {e.reason}"


def _file_checksum(path: str) -> dict:
    crc, size = 0, 0
    with open(path, "rb") as f:
        while block := f.read(1 << 24):
            crc, size = zlib.crc32(block, crc), size + len(block)
    return {"bytes": size, "crc32": f"{crc:08x}"}


def _checksums(folder: str) -> dict[str, dict]:
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            rel = os.path.relpath(os.path.join(root, name), folder).replace(os.sep, "/")
            if rel != CHECKSUMS and not name.startswith(f".{CHECKSUMS}.tmp-"):
                out[rel] = _file_checksum(os.path.join(root, name))
    return out


def _short(e: BaseException, limit: int = 300, after: str = "") -> str:
    """One line of an orbax/TensorStore error: the JSON spec dumps are dropped, and what the error says
    `after` naming the file (or else its tail) kept."""
    text = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
    text = " ".join(text.split(" [tensorstore_spec")[0].split()) or type(e).__name__
    if after and after in text:
        text = text.rsplit(after, 1)[1]
    return text if len(text) <= limit else "..." + text[-limit:]


def _blamed_path(e: BaseException, folder: str) -> str:
    files = re.findall(r'local file "([^"]+)"', str(e))
    if files:
        return files[-1]
    item = re.search(r'Item "(\w+)" was not found', str(e))
    if item:
        return os.path.join(folder, item.group(1))
    return getattr(e, "filename", None) or folder


@contextlib.contextmanager
def _quiet_async_errors():
    """Orbax reads arrays in asyncio tasks; when a file is bad, every sibling task's failure is logged
    as a "Task exception was never retrieved" traceback (hundreds of lines), and TensorStore's callbacks
    for the reads still in flight hit the closed event loop for a while after. The error that matters is
    raised; these logs are silenced (the orphaned tasks collected while they are), and from the first
    restore on, that one closed-loop error is dropped from the unraisable-exception hook."""
    _drop_closed_loop_callbacks()
    logger = logging.getLogger("asyncio")
    before = logger.disabled
    logger.disabled = True
    try:
        yield
    finally:
        gc.collect()
        logger.disabled = before


class _NoOrbaxTraceback(logging.Filter):
    def filter(self, record):
        if record.exc_info and "orbax" in record.pathname:
            record.exc_info, record.exc_text = None, None
        return True


def _one_line_orbax_errors() -> None:
    """Orbax logs a failed background write with its traceback, then re-raises it to us as the
    CheckpointError that names the path: its log keeps one line."""
    logger = logging.getLogger("absl")
    if not any(isinstance(f, _NoOrbaxTraceback) for f in logger.filters):
        logger.addFilter(_NoOrbaxTraceback())


def _drop_closed_loop_callbacks() -> None:
    if getattr(sys.unraisablehook, "jaxft_filter", False):
        return
    previous = sys.unraisablehook

    def hook(unraisable):
        error = unraisable.exc_value
        if not (isinstance(error, RuntimeError) and str(error) == "Event loop is closed"):
            previous(unraisable)

    hook.jaxft_filter = True
    sys.unraisablehook = hook


def abstract_like(tree: Any) -> Any:
    default = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype,
                                                       sharding=getattr(x, "sharding", None) or default), tree)


def read_json(path: str) -> dict:
    with open(path) as f:
        return json.load(f)
