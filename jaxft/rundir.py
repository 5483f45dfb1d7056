"""Every path of a training workdir and of a study's runs directory, named once; and the one test that
tells a training workdir from an HF model or PEFT adapter directory.

A workdir:
    jaxft_config.json   the resolved config the run trained with (older workdirs: config.json, still read)
    checkpoints/        orbax steps
    metrics.jsonl       one object per optimizer step (and events)
    tensorboard/        the same scalars for TensorBoard
    wandb_run_id        with logging.wandb: the W&B run this workdir logs to (a resumed run continues it);
    wandb/              W&B's own files for the run (offline runs wait here for `wandb sync`)
    data_stats.json     examples kept, rows per step, padding, steps per epoch
    summary.json        the finished (or interrupted) run
    eval/<task>/        the final evaluation; eval/<task>_step<N>/ the ones during training

A study's runs directory (`python -m jaxft.study`, read by `python -m jaxft.report`):
    study.json, and per cell <model>/<method>/train/ (a workdir) and <model>/<method>/eval/<benchmark>/.

The resolved config is not called config.json: a workdir must never pass for an HF model directory.
"""

from __future__ import annotations

import json
import os

from jaxft.atomic import write_atomic
from jaxft.errors import ConfigError

CONFIG = "jaxft_config.json"
LEGACY_CONFIG = "config.json"  # workdirs written before jaxft_config.json; an HF directory's name too
CHECKPOINTS = "checkpoints"
METRICS = "metrics.jsonl"
TENSORBOARD = "tensorboard"
WANDB_RUN_ID = "wandb_run_id"
DATA_STATS = "data_stats.json"
SUMMARY = "summary.json"
EVAL = "eval"
HF_CONFIG = "config.json"
ADAPTER_CONFIG = "adapter_config.json"
STUDY = "study.json"


def _below_root(name: str, doc: str | None = None) -> property:
    """The path of `name` in the workdir, read-only."""
    return property(lambda self: os.path.join(self.root, name), doc=doc)


class RunDir:
    """The paths of one training workdir."""

    config = _below_root(CONFIG, "Where the resolved config is written.")
    checkpoints = _below_root(CHECKPOINTS)
    metrics = _below_root(METRICS)
    tensorboard = _below_root(TENSORBOARD)
    wandb_run_id = _below_root(WANDB_RUN_ID)
    data_stats = _below_root(DATA_STATS)
    summary = _below_root(SUMMARY)

    def __init__(self, root: str):
        self.root = root

    def _join(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    def eval_dir(self, task: str, step: int | None = None) -> str:
        """The final evaluation's output (step None) or the one at `step` during training."""
        return self._join(EVAL, task if step is None else f"{task}_step{step}")

    def written_config(self) -> str | None:
        """The resolved config this workdir holds: jaxft_config.json, or an older workdir's config.json
        (only beside checkpoints/: alone, config.json is an HF model's)."""
        if os.path.isfile(self.config):
            return self.config
        legacy = self._join(LEGACY_CONFIG)
        if os.path.isfile(legacy) and os.path.isdir(self.checkpoints):
            return legacy
        return None

    def is_finished(self) -> bool:
        return os.path.isfile(self.summary)


def dir_kind(path: str) -> str | None:
    """"workdir", "adapter" (PEFT), "hf" (model directory) or None (no directory, or none of those).

    The one place that decides: a training workdir first, since an older one holds a config.json too.
    """
    if not os.path.isdir(path):
        return None
    if RunDir(path).written_config() is not None:
        return "workdir"
    if os.path.isfile(os.path.join(path, ADAPTER_CONFIG)):
        return "adapter"
    if os.path.isfile(os.path.join(path, HF_CONFIG)):
        return "hf"
    return None


def is_training_workdir(path: str) -> bool:
    return dir_kind(path) == "workdir"


def write_config(workdir: str, text: str) -> str:
    """The resolved config as JSON text, atomically; returns its path."""
    path = RunDir(workdir).config
    write_atomic(path, text)
    return path


def read_config(workdir: str):
    """The resolved config of a workdir as an ml_collections.ConfigDict."""
    import ml_collections

    path = RunDir(workdir).written_config()
    if path is None:
        raise ConfigError(f"{workdir}: no {CONFIG} (or, from older runs, config.json beside {CHECKPOINTS}/), "
                          f"so it is no jaxft training workdir")
    try:
        with open(path) as f:
            return ml_collections.ConfigDict(json.load(f))
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: unreadable ({e})") from None


def write_json(path: str, obj) -> None:
    """Indented, sorted JSON, atomically (summary.json, data_stats.json)."""
    write_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


class StudyCell:
    """One (model, method) of a study's runs directory: its training workdir and evaluation outputs."""

    def __init__(self, root: str, model: str, method: str):
        self.dir = os.path.join(root, model, method)
        self.train = RunDir(os.path.join(self.dir, "train"))
        self.evals = os.path.join(self.dir, EVAL)  # one evaluation output per benchmark

    def eval_dir(self, benchmark: str) -> str:
        return os.path.join(self.evals, benchmark)

    def evaluated(self, benchmark: str) -> bool:
        """Its evaluation finished (an output's files are named in jaxft.eval.resume)."""
        from jaxft.eval.resume import METRICS

        return os.path.isfile(os.path.join(self.eval_dir(benchmark), METRICS))


def study_file(root: str) -> str:
    return os.path.join(root, STUDY)
