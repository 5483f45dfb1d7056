"""AdamW with global-norm clipping and weight decay on matrices only."""

from __future__ import annotations

from typing import Any

import jax
import optax


def decay_mask(params: Any) -> Any:
    """True for matrices; norms, biases and DoRA magnitudes (all 1-D) are not decayed."""
    return jax.tree.map(lambda p: p.ndim >= 2, params)


def make_optimizer(learning_rate: float | optax.Schedule, weight_decay: float = 0.01, b1: float = 0.9,
                   b2: float = 0.999, eps: float = 1e-8, grad_clip: float | None = 1.0
                   ) -> optax.GradientTransformation:
    """`grad_clip` None or 0 disables clipping."""
    adamw = optax.adamw(learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay, mask=decay_mask)
    if not grad_clip:
        return adamw
    return optax.chain(optax.clip_by_global_norm(grad_clip), adamw)
