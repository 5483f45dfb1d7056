"""A trained model back from a workdir (config.json + latest checkpoint), for export and analysis."""

from __future__ import annotations

import json
import os

import jax
import ml_collections

from jaxft.errors import ConfigError
from jaxft.train import checkpoint as ckpt_lib


def is_training_workdir(path: str) -> bool:
    """What jaxft.train writes: checkpoints/ beside the resolved config.json."""
    return os.path.isdir(os.path.join(path, "checkpoints")) and os.path.isfile(os.path.join(path, "config.json"))


def read_workdir_config(workdir: str) -> ml_collections.ConfigDict:
    path = os.path.join(workdir, "config.json")
    if not os.path.isfile(path):
        raise ConfigError(f"{workdir}: no config.json, so it is no jaxft training workdir")
    with open(path) as f:
        return ml_collections.ConfigDict(json.load(f))


def restore_model(workdir: str, step: int | None = None):
    """(model with trained parameters, tokenizer, config); LoRA/DoRA models keep their adapters."""
    from flax import nnx

    from jaxft.peft import split_params
    from jaxft.train.loop import build_model

    c = read_workdir_config(workdir)
    checkpointer = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"), async_save=False)
    step = checkpointer.latest_step() if step is None else step
    if step is None:
        raise ConfigError(f"{workdir}: holds no complete checkpoint")
    if step not in checkpointer.manager.all_steps():
        raise ConfigError(f"{workdir}: no checkpoint of step {step}; saved steps: {list(checkpointer.manager.all_steps())}")
    model, tok = build_model(c)
    graphdef, trainable, frozen = split_params(model, c.method)
    trainable, _, _ = checkpointer.restore(step, ckpt_lib.abstract_like(trainable))
    checkpointer.close()
    trainable = jax.device_get(trainable)
    return nnx.merge(graphdef, trainable, frozen), tok, c
