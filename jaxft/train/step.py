"""Masked next-token loss and one jitted AdamW step that differentiates only the trainable tree."""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx

Array = jax.Array


def cross_entropy_sum(logits: Array, targets: Array, loss_mask: Array) -> tuple[Array, Array]:
    """(sum(mask · CE), sum(mask)) in float32; sums, so micro-batches add up to the full batch."""
    logits = logits.astype(jnp.float32)
    logz = jax.nn.logsumexp(logits, axis=-1)
    picked = jnp.take_along_axis(logits, targets[..., None].astype(jnp.int32), axis=-1)[..., 0]
    mask = loss_mask.astype(jnp.float32)
    return jnp.sum(mask * (logz - picked)), jnp.sum(mask)


def masked_cross_entropy(logits: Array, targets: Array, loss_mask: Array) -> Array:
    """sum(mask · CE(logits[:, t], targets[:, t])) / max(sum(mask), 1), in float32."""
    total, count = cross_entropy_sum(logits, targets, loss_mask)
    return total / jnp.maximum(count, 1.0)


def _logits(trainable, frozen, graphdef, batch, dropout_rng):
    model = nnx.merge(graphdef, trainable, frozen)
    return model(batch["input_ids"], batch.get("attention_mask"), positions=batch.get("positions"),
                 segment_ids=batch.get("segment_ids"), dropout_rng=dropout_rng)


def loss_fn(trainable: nnx.State, frozen: nnx.State, graphdef: nnx.GraphDef, batch: dict,
            dropout_rng: Array | None) -> Array:
    """batch: input_ids, targets [b, s] int32, loss_mask [b, s] float; optional attention_mask, or
    segment_ids + positions for packed rows.

    targets[:, t] is the token to predict at position t (usually input_ids[:, t + 1]).
    """
    logits = _logits(trainable, frozen, graphdef, batch, dropout_rng)
    return masked_cross_entropy(logits, batch["targets"], batch["loss_mask"])


def make_train_step(graphdef: nnx.GraphDef, optimizer: optax.GradientTransformation, *, accum_steps: int = 1,
                    in_shardings: Any = None, out_shardings: Any = None) -> Callable:
    """jit(step)(trainable, frozen, opt_state, batch, rng) -> (trainable, opt_state, metrics).

    Only `trainable` is differentiated, so frozen weights get no gradient buffers; `trainable` and
    `opt_state` are donated. `rng=None` turns dropout off. With `accum_steps` > 1 every batch leaf is
    [accum_steps, micro, ...] and gradients are summed over a scan: the objective is the same token
    mean as one big batch. A non-finite loss or gradient leaves parameters and optimizer state as
    they were (metrics["finite"] is False).
    """

    def grads_one(trainable, frozen, batch, rng):
        return jax.value_and_grad(loss_fn)(trainable, frozen, graphdef, batch, rng)

    def grads_accumulated(trainable, frozen, batch, rng):
        count = jnp.maximum(jnp.sum(batch["loss_mask"].astype(jnp.float32)), 1.0)

        def micro_loss(params, micro, key):
            logits = _logits(params, frozen, graphdef, micro, key)
            return cross_entropy_sum(logits, micro["targets"], micro["loss_mask"])[0] / count

        def body(carry, xs):
            loss_acc, grad_acc = carry
            i, micro = xs
            key = None if rng is None else jax.random.fold_in(rng, i)
            loss, grads = jax.value_and_grad(micro_loss)(trainable, micro, key)
            return (loss_acc + loss, jax.tree.map(jnp.add, grad_acc, grads)), None

        zeros = jax.tree.map(jnp.zeros_like, trainable)
        (loss, grads), _ = jax.lax.scan(body, (jnp.zeros((), jnp.float32), zeros),
                                        (jnp.arange(accum_steps), batch))
        return loss, grads

    def step(trainable, frozen, opt_state, batch, rng):
        compute = grads_accumulated if accum_steps > 1 else grads_one
        loss, grads = compute(trainable, frozen, batch, rng)
        grad_norm = optax.tree.norm(grads)
        updates, new_opt_state = optimizer.update(grads, opt_state, trainable)
        update_norm = optax.tree.norm(updates)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & jnp.isfinite(update_norm)
        new_trainable = optax.apply_updates(trainable, updates)
        keep = lambda new, old: jnp.where(finite, new, old)  # noqa: E731
        trainable = jax.tree.map(keep, new_trainable, trainable)
        opt_state = jax.tree.map(keep, new_opt_state, opt_state)
        metrics = {"loss": loss, "grad_norm": grad_norm,
                   "update_norm": jnp.where(finite, update_norm, 0.0), "finite": finite}
        return trainable, opt_state, metrics

    kw = {}
    if in_shardings is not None:
        kw["in_shardings"] = in_shardings
    if out_shardings is not None:
        kw["out_shardings"] = out_shardings
    return jax.jit(step, donate_argnums=(0, 2), **kw)
