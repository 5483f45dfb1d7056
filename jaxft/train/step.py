"""Masked next-token loss and one jitted AdamW step that differentiates only the trainable tree."""

from __future__ import annotations

from functools import partial
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jaxft.train.lm_head_loss import DEFAULT_CHUNK, check_loss_settings, lm_head_cross_entropy_sum

Array = jax.Array


def cross_entropy_sum(logits: Array, targets: Array, loss_mask: Array) -> tuple[Array, Array]:
    """(sum(mask · CE), sum(mask)) in float32; sums, so micro-batches add up to the full batch."""
    logits = logits.astype(jnp.float32)
    logz = jax.nn.logsumexp(logits, axis=-1)
    picked = jnp.take_along_axis(logits, targets[..., None].astype(jnp.int32), axis=-1)[..., 0]
    mask = loss_mask.astype(jnp.float32)
    # where, not a bare product: a masked target past the vocabulary gathers NaN, and 0 * NaN is NaN.
    return jnp.sum(jnp.where(mask != 0, mask * (logz - picked), 0.0)), jnp.sum(mask)


def masked_cross_entropy(logits: Array, targets: Array, loss_mask: Array) -> Array:
    """sum(mask · CE(logits[:, t], targets[:, t])) / max(sum(mask), 1), in float32."""
    total, count = cross_entropy_sum(logits, targets, loss_mask)
    return total / jnp.maximum(count, 1.0)


def _model_inputs(batch: dict) -> dict:
    return dict(positions=batch.get("positions"), segment_ids=batch.get("segment_ids"))


def _head_weight(model) -> Array:
    """The [vocab, hidden] head matrix (never an adapter: peft.apply refuses lm_head targets)."""
    if model.config.tie_word_embeddings:
        return model.model.embed_tokens.weight[...]
    return model.lm_head.weight[...]


def loss_sum(trainable: nnx.State, frozen: nnx.State, graphdef: nnx.GraphDef, batch: dict,
             dropout_rng: Array | None, *, impl: str = "chunked", chunk: int = DEFAULT_CHUNK,
             batch_shards: int = 1) -> tuple[Array, Array]:
    """(sum(mask · CE), sum(mask)) of the model on `batch`.

    impl "chunked": the fused LM head + cross-entropy (`lm_head_loss`), `chunk` tokens per device at a
    time; "dense": the model's full logits, then `cross_entropy_sum` (the reference).
    """
    check_loss_settings(impl, chunk)
    model = nnx.merge(graphdef, trainable, frozen)
    args = (batch["input_ids"], batch.get("attention_mask"))
    weight = _head_weight(model) if impl == "chunked" else None
    if weight is None:
        logits = model(*args, **_model_inputs(batch), dropout_rng=dropout_rng)
        return cross_entropy_sum(logits, batch["targets"], batch["loss_mask"])
    hidden = model(*args, **_model_inputs(batch), dropout_rng=dropout_rng, return_hidden=True)
    return lm_head_cross_entropy_sum(hidden, weight, batch["targets"], batch["loss_mask"], chunk=chunk,
                                     batch_shards=batch_shards)


def loss_fn(trainable: nnx.State, frozen: nnx.State, graphdef: nnx.GraphDef, batch: dict,
            dropout_rng: Array | None, *, impl: str = "chunked", chunk: int = DEFAULT_CHUNK,
            batch_shards: int = 1) -> Array:
    """The mean masked next-token loss: sum(mask · CE) / max(sum(mask), 1), in float32.

    batch: input_ids, targets [b, s] int32, loss_mask [b, s] float; optional attention_mask, or
    segment_ids + positions for packed rows. targets[:, t] is the token to predict at position t
    (usually input_ids[:, t + 1]). impl/chunk/batch_shards: see `loss_sum`.
    """
    total, count = loss_sum(trainable, frozen, graphdef, batch, dropout_rng, impl=impl, chunk=chunk,
                            batch_shards=batch_shards)
    return total / jnp.maximum(count, 1.0)


def make_train_step(graphdef: nnx.GraphDef, optimizer: optax.GradientTransformation, *, accum_steps: int = 1,
                    in_shardings: Any = None, out_shardings: Any = None, loss_impl: str = "chunked",
                    loss_chunk: int = DEFAULT_CHUNK, batch_shards: int = 1) -> Callable:
    """jit(step)(trainable, frozen, opt_state, batch, rng) -> (trainable, opt_state, metrics).

    Only `trainable` is differentiated, so frozen weights get no gradient buffers; `trainable` and
    `opt_state` are donated. `rng=None` turns dropout off. With `accum_steps` > 1 every batch leaf is
    [accum_steps, micro, ...] and gradients are summed over a scan: the objective is the same token
    mean as one big batch. A non-finite loss or gradient leaves parameters and optimizer state as
    they were (metrics["finite"] is False). loss_impl/loss_chunk/batch_shards: see `loss_sum`
    (batch_shards: how many devices split the batch axis, so a chunk is `loss_chunk` tokens per device).
    """
    check_loss_settings(loss_impl, loss_chunk)
    loss_kw = dict(impl=loss_impl, chunk=loss_chunk, batch_shards=batch_shards)

    def grads_one(trainable, frozen, batch, rng):
        return jax.value_and_grad(partial(loss_fn, **loss_kw))(trainable, frozen, graphdef, batch, rng)

    def grads_accumulated(trainable, frozen, batch, rng):
        count = jnp.maximum(jnp.sum(batch["loss_mask"].astype(jnp.float32)), 1.0)

        def micro_loss(params, micro, key):
            return loss_sum(params, frozen, graphdef, micro, key, **loss_kw)[0] / count

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
