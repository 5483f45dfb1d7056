"""Multi-process start-up on JAX's own distributed runtime (TPU pods, SLURM, explicit flags)."""

from __future__ import annotations

import os

import jax

from jaxft.errors import ConfigError

_FLAGS = ("coordinator_address", "num_processes", "process_id")


def maybe_initialize(flags: dict) -> bool:
    """Call jax.distributed.initialize when this process is one of several; True if it did.

    Explicit `--coordinator_address --num_processes --process_id` win; otherwise JAX's own cluster
    detection (TPU pod metadata, SLURM variables) is used when JAXFT_DISTRIBUTED=1 or SLURM_NTASKS>1.
    """
    unknown = sorted(set(flags) - set(_FLAGS))
    if unknown:
        raise ConfigError(f"unknown flag --{unknown[0]}; allowed: --config, --workdir, --config.KEY, "
                          + ", ".join(f"--{f}" for f in _FLAGS))
    if "coordinator_address" in flags:
        missing = [f for f in _FLAGS if f not in flags]
        if missing:
            raise ConfigError(f"--coordinator_address needs --{missing[0]} too")
        jax.distributed.initialize(coordinator_address=flags["coordinator_address"],
                                   num_processes=int(flags["num_processes"]), process_id=int(flags["process_id"]))
        return True
    if os.environ.get("JAXFT_DISTRIBUTED") == "1" or int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        jax.distributed.initialize()
        return True
    return False
