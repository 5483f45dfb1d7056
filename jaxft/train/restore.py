"""A trained model back from a workdir (its resolved config + newest readable checkpoint), for export and
analysis."""

from __future__ import annotations

import jax

from jaxft import rundir
from jaxft.errors import CheckpointError, ConfigError
from jaxft.train import checkpoint as ckpt_lib


def restore_model(workdir: str, step: int | None = None, compute_dtype: str | None = None, *,
                  log=lambda line: print(line, flush=True)):
    """(model with trained parameters, tokenizer, config); LoRA/DoRA models keep their adapters.

    Without `step`, the newest step that verifies and reads: an unreadable newer one is skipped with the
    line training prints for it (`checkpoint.unreadable_line`), and left where it is (export and analysis
    only read; the next training run moves it aside). A `step` asked for is that step or an error.
    `compute_dtype` replaces the run's (analysis rebuilds bfloat16 runs in float32); parameters load as saved.
    """
    from flax import nnx

    from jaxft.peft import split_params
    from jaxft.run_setup import build_model

    c = rundir.read_config(workdir)
    if compute_dtype is not None:
        c.compute_dtype = compute_dtype
    checkpointer = ckpt_lib.Checkpointer(rundir.RunDir(workdir).checkpoints, async_save=False)
    try:
        saved = sorted(checkpointer.manager.all_steps(), reverse=True)
        if not saved:
            raise ConfigError(f"{workdir}: holds no complete checkpoint")
        if step is not None and step not in saved:
            raise ConfigError(f"{workdir}: no checkpoint of step {step}; saved steps: {sorted(saved)}")
        model, tok = build_model(c)
        graphdef, trainable, frozen = split_params(model, c.method)
        abstract = ckpt_lib.abstract_like(trainable)
        bad: list[ckpt_lib.UnreadableCheckpoint] = []
        for candidate in [step] if step is not None else saved:
            try:
                trainable, _, _, _ = checkpointer.restore_checked(candidate, abstract)
            except ckpt_lib.UnreadableCheckpoint as e:
                if step is not None:
                    others = [s for s in saved if s != step]
                    raise CheckpointError(f"{workdir}: {e}" + (f"; other saved steps: {others} (pass one as the "
                                                               f"step, or leave it out for the newest readable)"
                                                               if others else "")) from e
                log(ckpt_lib.unreadable_line(e))
                bad.append(e)
                continue
            if bad:
                log(f"checkpoint: restoring step {candidate}, the newest readable one")
            break
        else:
            raise checkpointer.none_readable(bad)
    finally:
        checkpointer.close()
    trainable = jax.device_get(trainable)
    return nnx.merge(graphdef, trainable, frozen), tok, c
