"""Trainable/frozen partitions, the weight-decay mask and the jitted train step."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxft.errors import ConfigError
from jaxft.models.config import ModelConfig
from jaxft.models.params import flat_params
from jaxft.models.transformer import Transformer
from jaxft.peft import DEFAULT_TARGETS, METHODS, apply_peft, merge_params, resolve_targets, split_params
from jaxft.train.optim import decay_mask, make_optimizer
from jaxft.train.step import loss_fn, make_train_step

CFG = ModelConfig(vocab_size=256, hidden_size=64, intermediate_size=192, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=16, attention_bias=True, mlp_bias=True)
ADAPTER_SUFFIXES = (".lora_A", ".lora_B", ".lora_magnitude_vector")


@functools.cache
def _base() -> tuple:
    return nnx.split(Transformer(CFG, rngs=nnx.Rngs(1)))


def model_for(method: str, **kw) -> Transformer:
    """A fresh copy of one random base model (merge makes new Variables), then adapters."""
    return apply_peft(nnx.merge(*_base()), method, r=4, alpha=8, **kw)


def batch(seed: int = 0, b: int = 2, s: int = 16) -> dict:
    ids = np.random.default_rng(seed).integers(0, CFG.vocab_size, (b, s + 1)).astype(np.int32)
    mask = np.ones((b, s), np.float32)
    mask[0, :4] = 0.0  # unscored prompt tokens
    return {"input_ids": jnp.asarray(ids[:, :-1]), "attention_mask": jnp.ones((b, s), jnp.int32),
            "targets": jnp.asarray(ids[:, 1:]), "loss_mask": jnp.asarray(mask)}


@pytest.mark.parametrize("method", METHODS)
def test_gradient_tree_holds_only_trainable_leaves(method):
    graphdef, trainable, frozen = split_params(model_for(method), method)
    grads = jax.eval_shape(jax.grad(loss_fn), trainable, frozen, graphdef, batch(), jax.random.key(0))
    names = set(flat_params(grads))
    everything = set(flat_params(merge_params(graphdef, trainable, frozen)))
    if method == "full":
        assert names == everything and not jax.tree.leaves(frozen)
    else:
        expected = {n for n in everything if n.endswith(ADAPTER_SUFFIXES)}
        assert names == expected
        assert len(names) == 14 * (3 if method == "dora" else 2)
        assert set(flat_params(frozen)) == everything - expected


def test_split_without_adapters_fails_clearly():
    with pytest.raises(ConfigError, match="apply_peft"):
        split_params(Transformer(CFG), "lora")
    with pytest.raises(ConfigError, match="not supported"):
        split_params(Transformer(CFG), "qlora")


def test_weight_decay_only_on_matrices():
    model = model_for("dora")
    _, params, _ = split_params(model, "full")  # every parameter, adapters included
    mask = flat_params(decay_mask(params))
    for name, decayed in mask.items():
        vector = name.endswith(("norm.weight", ".bias", ".lora_magnitude_vector"))
        assert bool(decayed) is (not vector), name
    # zero gradients: AdamW's update is pure decay, so vectors must not move and matrices must shrink
    opt = make_optimizer(0.1, weight_decay=0.5, grad_clip=None)
    updates, _ = jax.jit(opt.update)(jax.tree.map(jnp.zeros_like, params), opt.init(params), params)
    flat_u, flat_p = flat_params(updates), flat_params(params)
    for name, u in flat_u.items():
        want = 0.0 if np.ndim(u) < 2 else -0.05 * np.asarray(flat_p[name])
        np.testing.assert_allclose(np.asarray(u), want, rtol=1e-6, atol=1e-12, err_msg=name)


DROPOUT = {"full": 0.0, "lora": 0.0, "dora": 0.1}  # DoRA's dropout branch is the one with extra math


@functools.cache
def compiled_step(method: str):
    """(compiled step, graphdef, trainable, frozen, optimizer), compiled once per method for all tests."""
    graphdef, trainable, frozen = split_params(model_for(method, dropout=DROPOUT[method]), method)
    opt = make_optimizer(3e-2 if method != "full" else 3e-3)
    rng = jax.random.key(0) if DROPOUT[method] else None
    step = make_train_step(graphdef, opt).lower(trainable, frozen, opt.init(trainable), batch(), rng).compile()
    return step, trainable, frozen, opt


def _step_memory(method: str) -> int:
    mem = compiled_step(method)[0].memory_analysis()
    return mem.temp_size_in_bytes + mem.argument_size_in_bytes + mem.output_size_in_bytes - mem.alias_size_in_bytes


def test_lora_step_needs_less_memory_than_full_step():
    full, lora = _step_memory("full"), _step_memory("lora")
    assert lora < 0.6 * full, (lora, full)


@pytest.mark.parametrize("method", METHODS)
def test_steps_reduce_loss_and_leave_frozen_weights_alone(method):
    step, trainable, frozen, opt = compiled_step(method)
    trainable = jax.tree.map(jnp.copy, trainable)  # the step donates it; keep the cached one alive
    frozen_before = {k: np.array(v) for k, v in flat_params(frozen).items()}
    opt_state = opt.init(trainable)
    data = batch()
    losses = []
    for i in range(6):
        rng = jax.random.key(i) if DROPOUT[method] else None
        trainable, opt_state, metrics = step(trainable, frozen, opt_state, data, rng)
        losses.append(float(metrics["loss"]))
        assert np.isfinite(float(metrics["grad_norm"])) and float(metrics["update_norm"]) > 0
    assert losses[-1] < losses[0] - 0.1, losses
    for name, before in frozen_before.items():
        assert np.array_equal(np.asarray(flat_params(frozen)[name]), before), name
    if method != "full":
        assert any(np.any(np.asarray(v)) for k, v in flat_params(trainable).items() if k.endswith(".lora_B"))


def test_target_patterns_follow_peft_semantics():
    model = nnx.merge(*_base())
    assert len(resolve_targets(model, DEFAULT_TARGETS)) == 14
    assert resolve_targets(model, ["q_proj"]) == ["model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.q_proj"]
    assert resolve_targets(model, ["self_attn.v_proj"]) == ["model.layers.0.self_attn.v_proj",
                                                            "model.layers.1.self_attn.v_proj"]
    assert resolve_targets(model, r"model\.layers\.1\.mlp\.(up|down)_proj") == ["model.layers.1.mlp.down_proj",
                                                                               "model.layers.1.mlp.up_proj"]
    assert resolve_targets(model, [r".*\.0\..*o_proj"]) == ["model.layers.0.self_attn.o_proj"]
    with pytest.raises(ConfigError, match="'qproj' matches no linear layer"):
        resolve_targets(model, ["q_proj", "qproj"])
    assert len(resolve_targets(model, ["q_proj", "qproj"], strict=False)) == 2  # PEFT: the union must match
    with pytest.raises(ConfigError, match="matches no linear layer"):
        resolve_targets(model, ["qproj"], strict=False)
    with pytest.raises(ConfigError, match="already carries an adapter"):
        apply_peft(apply_peft(model, "lora", targets=["q_proj"]), "dora", targets=["q_proj"])
    with pytest.raises(ConfigError, match="dropout"):
        apply_peft(model, "lora", dropout=1.0)
