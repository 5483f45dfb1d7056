"""Weights & Biases beside TensorBoard (config `logging.wandb`, the extra `jaxft[wandb]`).

The study's readers look for loss and gradient norms on W&B, so a run can log there the scalars it
writes to TensorBoard, under the same names (`train/loss`, `eval/exact_match`, ...) against the same
optimizer step (the metric `step`; W&B's own `_step` only counts calls, so evaluation rows at a
training step and steps redone after a resume never clash with it). The run carries the resolved
config and the workdir's name; its id is kept in the workdir, so a resumed run continues the same W&B
run. `wandb` is imported only when the key is on: jaxft does not need it otherwise. WANDB_MODE,
WANDB_ENTITY, WANDB_API_KEY and the rest of W&B's environment apply as usual (WANDB_MODE=offline
writes the run under `<workdir>/wandb/` for `wandb sync`). A run that finishes or stops on SIGTERM
closes its W&B run, which writes out everything logged; a SIGKILL can lose W&B's last seconds (its
core writes the run file in the background), which TensorBoard and metrics.jsonl still hold.
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets

from jaxft.errors import ConfigError

HINT = "pip install 'jaxft[wandb]'"
STEP = "step"  # the x-axis every logged scalar is plotted against


def wandb_settings(c) -> dict | None:
    """The config's `logging` section when `logging.wandb` is on, else None (configs without the
    section, a study's or older ones, log to TensorBoard only)."""
    section = c.get("logging")
    if section is None or not section.get("wandb", False):
        return None
    return dict(section)


def check_wandb_config(c) -> None:
    """At config resolution: `logging.wandb` on needs the wandb package, named with the install hint."""
    s = wandb_settings(c)
    if s is None:
        return
    if importlib.util.find_spec("wandb") is None:
        raise ConfigError(f"config.logging.wandb=True needs the wandb package, which is not installed: {HINT} "
                          "(or set --config.logging.wandb=false)")
    for key in ("wandb_project", "wandb_name"):
        if not isinstance(s.get(key, ""), str):
            raise ConfigError(f"config.logging.{key}={s[key]!r} must be a string")


def default_name(workdir: str) -> str:
    """The workdir's name; a study cell's `train/` goes by its model and method."""
    from jaxft.rundir import StudyCell

    path = os.path.abspath(workdir)
    parts = path.rsplit(os.sep, 3)
    if len(parts) == 4 and StudyCell(*parts[:3]).train.root == path:
        return f"{parts[1]}/{parts[2]}"
    return os.path.basename(path)


def _run_id(path: str) -> str:
    """This workdir's W&B run id: the one a previous run stored, else a new one, stored before the run
    starts (so a run killed at once still resumes into it)."""
    from jaxft.atomic import write_atomic

    if os.path.isfile(path):
        with open(path) as f:
            run_id = f.read().strip()
        if run_id:
            return run_id
    run_id = secrets.token_hex(4)  # W&B's own ids: 8 lower-case letters and digits
    write_atomic(path, run_id + "\n")
    return run_id


class WandbLog:
    """One W&B run per workdir, fed the scalars MetricsLog gives TensorBoard."""

    def __init__(self, c, workdir: str, settings: dict):
        check_wandb_config(c)
        import wandb

        from jaxft.rundir import RunDir
        from jaxft.train.config import config_to_json

        paths = RunDir(workdir)
        run_id = _run_id(paths.wandb_run_id)
        name = settings.get("wandb_name") or default_name(workdir)
        try:
            self.run = wandb.init(project=settings.get("wandb_project") or "jaxft", name=name, id=run_id,
                                  resume="allow", dir=workdir)
        except Exception as e:  # wandb's errors (no login, no network) as one line, exit 2
            raise ConfigError(f"config.logging.wandb: W&B could not start run {run_id} for {workdir}: {e} "
                              "(log in with `wandb login`, or set WANDB_MODE=offline)") from None
        # a resumed run may have trained under other settings (more steps): the config is the latest one
        self.run.config.update(json.loads(config_to_json(c)), allow_val_change=True)
        self.run.define_metric(STEP)
        self.run.define_metric("*", step_metric=STEP)

    def log(self, step: int, scalars: dict[str, float]) -> None:
        """`scalars` by TensorBoard tag (`train/loss`), at optimizer step `step`."""
        self.run.log({STEP: step, **scalars})

    def close(self) -> None:
        self.run.finish()
