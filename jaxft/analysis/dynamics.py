"""A minimal training run that records per-step loss and gradient norm, for comparing methods.

The full trainer (checkpoints, schedules, evaluation) lives in jaxft.train; this loop only chains
`make_train_step` over a fixed batch list so notebooks can contrast Full FT, LoRA and DoRA curves and
then analyse the resulting weights.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxft.peft import apply_peft, split_params
from jaxft.train.optim import make_optimizer
from jaxft.train.step import make_train_step


@functools.lru_cache(maxsize=16)
def _train_step(graphdef: Any, learning_rate: float, weight_decay: float, grad_clip: float | None):
    """Runs with the same structure and optimizer settings share one compiled step."""
    return make_train_step(graphdef, make_optimizer(learning_rate, weight_decay=weight_decay, grad_clip=grad_clip))


def train_curve(model: Any, method: str, batches: Sequence[dict], *, steps: int, learning_rate: float,
                r: int = 8, alpha: float = 16, weight_decay: float = 0.0, grad_clip: float | None = 1.0,
                seed: int = 0) -> tuple[Any, dict[str, np.ndarray]]:
    """Train a copy of `model` (adapters added for lora/dora, dropout off) cycling through `batches`.

    Returns (trained model, {"loss", "grad_norm", "update_norm"} per step). `model` is untouched:
    the train step donates its inputs, so the copy owns fresh buffers.
    """
    graphdef, state = nnx.split(model)
    copy = nnx.merge(graphdef, jax.tree.map(jnp.copy, state))
    apply_peft(copy, method, r=r, alpha=alpha, dropout=0.0, seed=seed)
    graphdef, trainable, frozen = split_params(copy, method)
    optimizer = make_optimizer(learning_rate, weight_decay=weight_decay, grad_clip=grad_clip)
    opt_state = optimizer.init(trainable)
    step = _train_step(graphdef, learning_rate, weight_decay, grad_clip)
    device_batches = [jax.tree.map(jnp.asarray, b) for b in batches]
    metrics = []
    for i in range(steps):
        trainable, opt_state, m = step(trainable, frozen, opt_state, device_batches[i % len(batches)], None)
        metrics.append(m)
    history = {k: np.asarray([float(m[k]) for m in metrics]) for k in ("loss", "grad_norm", "update_norm")}
    return nnx.merge(graphdef, trainable, frozen), history
