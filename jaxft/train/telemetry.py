"""metrics.jsonl + TensorBoard scalars (and the same on W&B with `logging.wandb`), the train loop's
per-step metrics, and model FLOPs utilisation against a table of peaks."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import jax

from jaxft.atomic import write_atomic
from jaxft.errors import JaxftError
from jaxft.jsonl import append_jsonl, read_jsonl

# Dense peak FLOP/s per device for bfloat16 matmuls (vendor figures). CPU has no fixed peak: MFU null.
PEAK_FLOPS = {
    "h100": 989e12, "h200": 989e12, "a100": 312e12, "l4": 121e12, "a10": 125e12,
    "tpu v4": 275e12, "tpu v5 lite": 197e12, "tpu v5e": 197e12, "tpu v5p": 459e12, "tpu v5": 459e12,
    "tpu v6 lite": 918e12, "tpu v6e": 918e12,
}


def device_peak_flops(device=None) -> float | None:
    device = device or jax.devices()[0]
    if device.platform == "cpu":
        return None
    kind = device.device_kind.lower()
    for key in sorted(PEAK_FLOPS, key=len, reverse=True):
        if key in kind:
            return PEAK_FLOPS[key]
    return None


def train_flops_per_token(model_config, method: str, seq_len: int) -> float:
    """Full FT: 6N (+ attention); adapters skip weight gradients of frozen matrices: about 4N."""
    full = model_config.flops_per_token(seq_len)
    return full if method == "full" else full * 4.0 / 6.0


class MetricsLog:
    """One JSON object per step; on resume, lines past the restored step are dropped first."""

    def __init__(self, workdir: str, *, resume_step: int, enabled: bool = True, config=None):
        from jaxft.rundir import RunDir
        from jaxft.train.wandb_logger import WandbLog, wandb_settings

        self.enabled = enabled
        self.path = RunDir(workdir).metrics
        self.writer = self.wandb = None
        if not enabled:
            return
        if os.path.exists(self.path):
            # A line cut by a kill ends the reading: it and everything after it are redone.
            keep = [row for row in read_jsonl(self.path, torn_tail=True) if row.get("step", 0) <= resume_step]
            write_atomic(self.path, "".join(json.dumps(row) + "\n" for row in keep))
        from tensorboardX import SummaryWriter

        self.writer = SummaryWriter(RunDir(workdir).tensorboard, purge_step=resume_step + 1)
        settings = None if config is None else wandb_settings(config)
        if settings is not None:  # `logging.wandb`: the same scalars on Weights & Biases
            self.wandb = WandbLog(config, workdir, settings)

    def write(self, row: dict[str, Any], prefix: str = "train") -> None:
        if not self.enabled:
            return
        append_jsonl(self.path, [row])  # a failed write: WriteError naming the file
        self.scalars(row, prefix)

    def event(self, row: dict[str, Any]) -> None:
        """A line that is no step's metrics (e.g. an unreadable checkpoint skipped); no TensorBoard scalars."""
        if self.enabled:
            append_jsonl(self.path, [row])

    def scalars(self, row: dict[str, Any], prefix: str) -> None:
        if not self.enabled:
            return
        step = int(row["step"])
        scalars = {f"{prefix}/{k}": v for k, v in row.items()
                   if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)}
        for tag, v in scalars.items():
            self.writer.add_scalar(tag, v, step)
        self.writer.flush()
        if self.wandb is not None:
            self.wandb.log(step, scalars)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.wandb is not None:
            self.wandb.close()


class NonFiniteError(JaxftError):
    """Too many consecutive non-finite steps: the run stops, the last good checkpoint stays."""


class StepLogger:
    """A step's metrics, written one step late (the device never waits for the host): loss, norms,
    learning rate, throughput and MFU per step, the count of consecutive non-finite steps, the bar."""

    def __init__(self, c, log: MetricsLog, *, schedule, rows: int, accum: int, flops_per_token: float,
                 start: int, workdir: str, record_examples: bool, bar):
        self.c, self.log, self.schedule, self.bar = c, log, schedule, bar
        self.rows, self.accum, self.start, self.workdir = rows, accum, start, workdir
        self.record_examples = record_examples
        self.flops_step = flops_per_token * rows * c.data.seq_len
        peak = device_peak_flops()
        self.peak_all = peak * jax.device_count() if peak else None
        self.pending = None
        self.nonfinite_run = 0
        self.t_last = time.perf_counter()
        # without a process's first step; "load": the host's 1-minute load average, summed per step
        self.timed = {"steps": 0, "seconds": 0.0, "tokens": 0, "examples": 0, "load": 0.0}

    def push(self, step: int, metrics: Any, info: dict) -> None:
        """Step `step` (1-based) was dispatched: write the previous one, keep this one for later."""
        self.flush()
        self.pending = (step, metrics, info["tokens"], info["examples"], info["epoch"])

    def flush(self) -> None:
        if self.pending is not None:
            pending, self.pending = self.pending, None
            self._write(*pending)

    def _write(self, step: int, metrics: Any, n_tokens: int, ids: list, epoch: float) -> None:
        metrics = jax.device_get(metrics)
        now = time.perf_counter()
        dt, self.t_last = now - self.t_last, now
        if step > self.start + 1:  # the first step of a process includes compilation
            for key, value in (("steps", 1), ("seconds", dt), ("tokens", n_tokens), ("examples", len(ids)),
                               ("load", os.getloadavg()[0])):
                self.timed[key] += value
        finite = bool(metrics["finite"])
        self.nonfinite_run = 0 if finite else self.nonfinite_run + 1
        row = {"step": step, "loss": float(metrics["loss"]), "grad_norm": float(metrics["grad_norm"]),
               "update_norm": float(metrics["update_norm"]), "learning_rate": float(self.schedule(step - 1)),
               "tokens_per_second": n_tokens / dt, "examples_per_second": len(ids) / dt, "step_time": dt,
               "mfu": self.flops_step / dt / self.peak_all if self.peak_all else None,
               "skipped_nonfinite": int(not finite), "accum_steps": self.accum, "examples": len(ids),
               "epoch": epoch}
        if self.record_examples:
            row["example_ids"] = ids
        self.log.write(row)
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{row['loss']:.4f}", tokens_per_s=f"{row['tokens_per_second']:.0f}")
        if self.nonfinite_run >= self.c.max_consecutive_nonfinite:
            raise NonFiniteError(f"{self.nonfinite_run} consecutive steps with a non-finite loss or gradient "
                                 f"(last at step {step}); the last good checkpoint is kept in {self.workdir}")

    def throughput(self) -> dict[str, float | None]:
        """Examples and tokens per second over the timed steps (None when none was timed), and the host's
        mean load over them: other jobs on the host make samples/s incomparable (the report marks them)."""
        t = self.timed
        return {"samples_per_second": t["examples"] / t["seconds"] if t["seconds"] else None,
                "tokens_per_second": t["tokens"] / t["seconds"] if t["seconds"] else None,
                "host_load": t["load"] / t["steps"] if t["steps"] else None, "host_cpus": os.cpu_count()}
