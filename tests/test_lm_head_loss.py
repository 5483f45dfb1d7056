"""The fused, chunked LM head + cross-entropy against references: torch float64 for the kernel, and the
unfused (dense) path for the loss and gradients of tiny models, packed batches and whole train steps.

Tolerances: float32 within 2e-5 of the reference, relative to the largest value of the quantity
compared; bfloat16 (relative Frobenius error per tensor against float32/float64) no more than 1.5x
the dense bfloat16 path's own error + 1e-3, and under 1% (kernel) / 2% (model)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from flax import nnx

from jaxft.errors import ConfigError
from jaxft.models import ModelConfig, Transformer
from jaxft.peft import apply_peft, split_params
from jaxft.train.lm_head_loss import check_loss_settings, lm_head_cross_entropy_sum
from jaxft.train.step import cross_entropy_sum, loss_fn, make_train_step

F32_TOL = 2e-5
VOCAB = 256


def rel_err(got, want) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-30))


def kernel_inputs(b=3, s=20, h=32, vocab=300, dtype=jnp.float32, seed=0):
    """Masked tokens carry -1, 0 and past-the-vocabulary targets; the mask also holds fractional weights."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(b, s, h)).astype(np.float32)
    w = (rng.normal(size=(vocab, h)) * 0.3).astype(np.float32)
    t = rng.integers(0, vocab, (b, s)).astype(np.int32)
    m = rng.choice([0.0, 1.0, 0.5], size=(b, s), p=[0.3, 0.6, 0.1]).astype(np.float32)
    masked = m == 0
    t[masked] = rng.choice([-1, 0, vocab + 3], size=int(masked.sum()))
    return jnp.asarray(x, dtype), jnp.asarray(w), jnp.asarray(t), jnp.asarray(m)


def torch_reference(x, w, t, m):
    """sum(mask · CE) and its gradients in float64 (torch autograd), from the exact inputs given."""
    xt = torch.tensor(np.asarray(x, np.float64), requires_grad=True)
    wt = torch.tensor(np.asarray(w, np.float64), requires_grad=True)
    tt = torch.tensor(np.asarray(t, np.int64)).clamp(0, w.shape[0] - 1)  # masked anyway
    mt = torch.tensor(np.asarray(m, np.float64))
    logp = torch.log_softmax(xt @ wt.T, dim=-1)
    loss = -(mt * logp.gather(-1, tt[..., None])[..., 0]).sum()
    loss.backward()
    return loss.item(), xt.grad.numpy(), wt.grad.numpy()


def fro_err(got, want) -> float:
    """||got - want|| / ||want||: the bfloat16 comparisons' measure (max-abs is too noisy there)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.linalg.norm(got - want) / np.linalg.norm(want))


def chunked_value_and_grads(x, w, t, m, chunk):
    def f(x, w):
        return lm_head_cross_entropy_sum(x, w, t, m, chunk=chunk)
    (total, count), grads = jax.jit(jax.value_and_grad(f, (0, 1), has_aux=True))(x, w)
    return total, count, grads


def dense_value_and_grads(x, w, t, m):
    def f(x, w):
        logits = jnp.einsum("bsh,vh->bsv", x, w.astype(x.dtype), preferred_element_type=jnp.float32)
        return cross_entropy_sum(logits, t, m)
    (total, count), grads = jax.jit(jax.value_and_grad(f, (0, 1), has_aux=True))(x, w)
    return total, count, grads


# chunk 60 = all tokens in one chunk; 20 -> 6 positions a row: 4 chunks, the last padded; 3 -> 1 position.
@pytest.mark.parametrize("chunk", [60, 20, 3])
def test_kernel_matches_torch_float64(chunk):
    x, w, t, m = kernel_inputs()
    total, count, (dx, dw) = chunked_value_and_grads(x, w, t, m, chunk)
    want, want_dx, want_dw = torch_reference(x, w, t, m)
    assert abs(float(total) / want - 1) < F32_TOL
    assert float(count) == float(np.sum(np.asarray(m)))
    assert rel_err(dx, want_dx) < F32_TOL and rel_err(dw, want_dw) < F32_TOL
    assert not np.any(np.asarray(dx)[np.asarray(m) == 0])  # masked tokens get no gradient


def test_kernel_bfloat16_as_close_to_float64_as_the_dense_path():
    x, w, t, m = kernel_inputs(b=4, s=64, h=64, vocab=1000, dtype=jnp.bfloat16)
    # Both paths multiply bfloat16 copies of the weights: that rounding is part of the model, not an error.
    want, want_dx, want_dw = torch_reference(x.astype(jnp.float32), w.astype(jnp.bfloat16).astype(jnp.float32), t, m)
    total, _, (dx, dw) = chunked_value_and_grads(x, w, t, m, 64)
    d_total, _, (d_dx, d_dw) = dense_value_and_grads(x, w, t, m)
    assert dx.dtype == jnp.bfloat16 and dw.dtype == jnp.float32
    errors = {"loss": (abs(float(total) / want - 1), abs(float(d_total) / want - 1)),
              "dx": (fro_err(dx, want_dx), fro_err(d_dx, want_dx)),
              "dw": (fro_err(dw, want_dw), fro_err(d_dw, want_dw))}
    for name, (chunked, dense) in errors.items():
        assert chunked <= 1.5 * dense + 1e-3, (name, errors)
    assert max(e for e, _ in errors.values()) < 1e-2, errors


def test_unmasked_target_outside_the_vocabulary_is_nan():
    x, w, t, m = kernel_inputs()
    total, _ = lm_head_cross_entropy_sum(x, w, t.at[0, 0].set(w.shape[0]), m.at[0, 0].set(1.0), chunk=16)
    assert np.isnan(float(total))


def test_second_order_matches_dense():
    """Hessian-vector products (forward over reverse, as jaxft.analysis.hessian takes them)
    differentiate the custom VJP's forward, where the gradient is computed: they must equal the
    dense path's."""
    x, w, t, m = kernel_inputs()
    v = (jnp.asarray(np.random.default_rng(1).normal(size=x.shape), jnp.float32),
         jnp.asarray(np.random.default_rng(2).normal(size=w.shape), jnp.float32))

    def hvp(f):
        return jax.jit(lambda x, w: jax.jvp(jax.grad(lambda *a: f(*a)[0], (0, 1)), (x, w), v)[1])(x, w)

    got = hvp(lambda x, w: lm_head_cross_entropy_sum(x, w, t, m, chunk=20))
    want = hvp(lambda x, w: cross_entropy_sum(jnp.einsum("bsh,vh->bsv", x, w), t, m))
    for g, r in zip(got, want):
        assert rel_err(g, r) < 1e-4


# --- through the model ------------------------------------------------------------------------


def tiny_model(tied: bool, dtype=jnp.float32) -> Transformer:
    cfg = ModelConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=16, tie_word_embeddings=tied)
    return Transformer(cfg, dtype=dtype, rngs=nnx.Rngs(3))


def padded_batch(b=2, s=32, seed=0) -> dict:
    """Rows with left padding (attention_mask), unscored prompts and -1 targets where masked."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, VOCAB, (b, s + 1)).astype(np.int32)
    attn = np.ones((b, s), np.int32)
    attn[1, :5] = 0
    mask = np.ones((b, s), np.float32)
    mask[0, :7] = 0.0
    mask[1, :5] = 0.0
    targets = np.where(mask > 0, ids[:, 1:], -1).astype(np.int32)
    return {"input_ids": jnp.asarray(ids[:, :-1]), "attention_mask": jnp.asarray(attn),
            "targets": jnp.asarray(targets), "loss_mask": jnp.asarray(mask)}


def packed_batch(s=64) -> dict:
    """A real packed batch from the training pipeline: several examples per row, segment ids, positions."""
    from jaxft.data.pipeline import StepPlan, make_dataset

    rng = np.random.default_rng(4)
    records = []
    for n in (9, 14, 20, 11, 25, 7, 17, 12):
        loss = np.zeros(n, np.int32)
        loss[n // 2:] = 1
        records.append({"tokens": rng.integers(0, VOCAB, n).astype(np.int32), "loss": loss,
                        "example": np.full(n, len(records), np.int32)})
    plan = StepPlan([len(r["tokens"]) for r in records], batch_size=8, seq_len=s, seed=0, rows_per_step=2)
    batch, _ = next(iter(make_dataset(records, plan)))
    assert batch["segment_ids"].max() >= 3  # really packed: three or more examples in a row
    return {k: jnp.asarray(v) for k, v in batch.items() if k != "example"}


def loss_and_grads(model, method, batch, impl, chunk=16):
    graphdef, trainable, frozen = split_params(model, method)
    f = jax.jit(jax.value_and_grad(loss_fn), static_argnums=2, static_argnames=("impl", "chunk"))
    return f(trainable, frozen, graphdef, batch, None, impl=impl, chunk=chunk)


def assert_trees_close(got, want, tol):
    leaves_got, leaves_want = jax.tree.leaves(got), jax.tree.leaves(want)
    assert len(leaves_got) == len(leaves_want) > 0
    scale = max(float(np.max(np.abs(np.asarray(x, np.float64)))) for x in leaves_want)
    for path_got, a, b in zip(jax.tree_util.tree_leaves_with_path(got), leaves_got, leaves_want):
        err = float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))
        assert err <= tol * scale, f"{jax.tree_util.keystr(path_got[0])}: {err:.3g} > {tol} x {scale:.3g}"


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("batch_kind", ["padded", "packed"])
def test_model_loss_and_grads_equal_dense_float32(tied, batch_kind):
    batch = padded_batch() if batch_kind == "padded" else packed_batch()
    model = tiny_model(tied)
    loss, grads = loss_and_grads(model, "full", batch, "chunked", chunk=24)  # 24 // 2 rows: 12 positions, padded
    d_loss, d_grads = loss_and_grads(model, "full", batch, "dense")
    assert abs(float(loss) / float(d_loss) - 1) < F32_TOL
    assert_trees_close(grads, d_grads, F32_TOL)


@pytest.mark.parametrize("tied", [True, False])
def test_model_grads_bfloat16_compute(tied):
    """bfloat16 compute: both paths against the float32 model's gradients, tensor by tensor; the
    chunked one may not stray further than 1.5x the dense one (+1e-3), nor beyond 2%."""
    batch = packed_batch()
    ref_loss, ref = loss_and_grads(tiny_model(tied), "full", batch, "dense")
    got_loss, got = loss_and_grads(tiny_model(tied, jnp.bfloat16), "full", batch, "chunked")
    d_loss, dense = loss_and_grads(tiny_model(tied, jnp.bfloat16), "full", batch, "dense")
    assert abs(float(got_loss) - float(ref_loss)) <= 1.5 * abs(float(d_loss) - float(ref_loss)) + 1e-3
    named = jax.tree_util.tree_leaves_with_path(ref)
    for (path, r), g, d in zip(named, jax.tree.leaves(got), jax.tree.leaves(dense), strict=True):
        chunked_err, dense_err = fro_err(g, r), fro_err(d, r)
        assert chunked_err <= 1.5 * dense_err + 1e-3 and chunked_err < 0.02, (
            jax.tree_util.keystr(path), chunked_err, dense_err)


@pytest.mark.parametrize("method", ["full", "lora"])
@pytest.mark.parametrize("accum", [1, 2])
def test_train_step_gradients_equal_dense(method, accum):
    """The whole jitted step with SGD(lr=1): new params = old - gradients, so the trainable deltas are
    the step's gradients; accum 2 goes through micro_loss (two micro-batches of 2 rows)."""
    model = tiny_model(tied=True)
    if method == "lora":
        model = apply_peft(model, "lora", r=4, alpha=8)
        # B starts at zero, which would leave A's gradient zero: give B values so both are tested.
        for _, m in nnx.iter_modules(model):
            if hasattr(m, "lora_B"):
                m.lora_B[...] = jax.random.normal(jax.random.key(5), m.lora_B.shape) * 0.02
    graphdef, trainable, frozen = split_params(model, method)
    batch = {k: jnp.concatenate([v, v[::-1]]) for k, v in padded_batch().items()}  # 4 rows
    if accum > 1:
        batch = {k: v.reshape(accum, -1, *v.shape[1:]) for k, v in batch.items()}
    opt = optax.sgd(1.0)
    out = {}
    for impl in ("chunked", "dense"):
        step = make_train_step(graphdef, opt, accum_steps=accum, loss_impl=impl, loss_chunk=16)
        t0 = jax.tree.map(jnp.copy, trainable)
        new, _, metrics = step(t0, frozen, opt.init(t0), batch, None)
        out[impl] = (jax.tree.map(jnp.subtract, trainable, new), metrics)
    (grads, metrics), (d_grads, d_metrics) = out["chunked"], out["dense"]
    assert bool(metrics["finite"]) and bool(d_metrics["finite"])
    assert abs(float(metrics["loss"]) / float(d_metrics["loss"]) - 1) < F32_TOL
    assert abs(float(metrics["grad_norm"]) / float(d_metrics["grad_norm"]) - 1) < F32_TOL
    assert_trees_close(grads, d_grads, F32_TOL)


def test_loss_settings_are_validated():
    with pytest.raises(ConfigError, match="allowed: chunked, dense"):
        check_loss_settings("sparse", 1024)
    with pytest.raises(ConfigError, match="loss_chunk"):
        check_loss_settings("chunked", 0)
    with pytest.raises(ConfigError, match="loss_impl='fused'"):
        make_train_step(None, optax.sgd(1.0), loss_impl="fused")


def test_train_cli_refuses_an_unknown_loss_impl(tmp_path, capsys):
    import os

    from conftest import REPO
    from jaxft.train.__main__ import main

    argv = [f"--config={os.path.join(REPO, 'configs', 'tiny.py')}", f"--workdir={tmp_path / 'w'}",
            "--config.loss_impl=sparse"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "loss_impl='sparse'" in err and "chunked, dense" in err
    assert not (tmp_path / "w").exists()
