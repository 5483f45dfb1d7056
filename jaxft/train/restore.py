"""A trained model back from a workdir (its resolved config + latest checkpoint), for export and analysis."""

from __future__ import annotations

import jax

from jaxft import rundir
from jaxft.errors import CheckpointError, ConfigError
from jaxft.train import checkpoint as ckpt_lib


def restore_model(workdir: str, step: int | None = None, compute_dtype: str | None = None):
    """(model with trained parameters, tokenizer, config); LoRA/DoRA models keep their adapters.

    `compute_dtype` replaces the run's (analysis rebuilds bfloat16 runs in float32); parameters load as saved.
    """
    from flax import nnx

    from jaxft.peft import split_params
    from jaxft.run_setup import build_model

    c = rundir.read_config(workdir)
    if compute_dtype is not None:
        c.compute_dtype = compute_dtype
    checkpointer = ckpt_lib.Checkpointer(rundir.RunDir(workdir).checkpoints, async_save=False)
    step = checkpointer.latest_step() if step is None else step
    if step is None:
        raise ConfigError(f"{workdir}: holds no complete checkpoint")
    if step not in checkpointer.manager.all_steps():
        raise ConfigError(f"{workdir}: no checkpoint of step {step}; saved steps: {list(checkpointer.manager.all_steps())}")
    model, tok = build_model(c)
    graphdef, trainable, frozen = split_params(model, c.method)
    try:
        trainable, _, _, _ = checkpointer.restore_checked(step, ckpt_lib.abstract_like(trainable))
    except ckpt_lib.UnreadableCheckpoint as e:
        others = [s for s in checkpointer.manager.all_steps() if s != step]
        raise CheckpointError(f"{workdir}: {e}" + (f"; other saved steps: {others} (pass one as the step, or "
                                                   f"rerun training here to fall back and redo the rest)"
                                                   if others else "")) from e
    finally:
        checkpointer.close()
    trainable = jax.device_get(trainable)
    return nnx.merge(graphdef, trainable, frozen), tok, c
