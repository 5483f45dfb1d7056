"""metrics.jsonl + TensorBoard scalars, and model FLOPs utilisation against a table of peaks."""

from __future__ import annotations

import json
import os
from typing import Any

import jax

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

    def __init__(self, workdir: str, *, resume_step: int, enabled: bool = True):
        self.enabled = enabled
        self.path = os.path.join(workdir, "metrics.jsonl")
        self.writer = None
        if not enabled:
            return
        if os.path.exists(self.path):
            keep = []
            with open(self.path) as f:
                for line in f:
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError:
                        break  # a line cut by a kill: everything after it is redone
                    if row.get("step", 0) <= resume_step:
                        keep.append(line if line.endswith("\n") else line + "\n")
            tmp = self.path + ".tmp"
            with open(tmp, "w") as f:
                f.writelines(keep)
            os.replace(tmp, self.path)
        from tensorboardX import SummaryWriter

        self.writer = SummaryWriter(os.path.join(workdir, "tensorboard"), purge_step=resume_step + 1)

    def write(self, row: dict[str, Any], prefix: str = "train") -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        self.scalars(row, prefix)

    def event(self, row: dict[str, Any]) -> None:
        """A line that is no step's metrics (e.g. an unreadable checkpoint skipped); no TensorBoard scalars."""
        if self.enabled:
            with open(self.path, "a") as f:
                f.write(json.dumps(row) + "\n")

    def scalars(self, row: dict[str, Any], prefix: str) -> None:
        if not self.enabled:
            return
        step = int(row["step"])
        for k, v in row.items():
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool):
                self.writer.add_scalar(f"{prefix}/{k}", v, step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
