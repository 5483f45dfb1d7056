"""Every key of the base config (configs/base.py, flattened) reaches the code: a setting that is accepted has
an effect. The table KEYS names, for each key, a second valid value and the probe that must see a
difference when the key takes it; the probes run the code paths the loop runs (the builder, prepare_data,
init_state, run_eval, the "auto" resolution) on a tiny config with the expensive parts recorded instead
of run, so nothing trains or compiles a step. LOOP lists the keys only the running loop reads, each with
where it reads it. A key added to the base config without a row here fails the first test.
Also: the LM head and the embeddings are refused as LoRA/DoRA targets, with the valid targets named."""

import dataclasses
import os
import types

import pytest

from conftest import REPO
from jaxft.errors import ConfigError

TINY = os.path.join(REPO, "configs", "tiny.py")

# key -> (probe, another valid value)
KEYS = {
    "seed": ("data", 1),  # load_task's draw; also the dropout key (loop) and few-shot draws (eval)
    "model": ("shapes", "smollm2-135m"),
    "tokenizer": ("tokenizer", "HuggingFaceTB/SmolLM2-135M"),
    "random_model.family": ("model", "qwen2"),  # the export's model type; compute flags are other fields
    "random_model.vocab_size": ("model", 256),
    "random_model.hidden_size": ("model", 32),
    "random_model.intermediate_size": ("model", 64),
    "random_model.num_hidden_layers": ("model", 3),
    "random_model.num_attention_heads": ("model", 2),
    "random_model.num_key_value_heads": ("model", 1),
    "random_model.head_dim": ("model", 8),
    "random_model.rope_theta": ("model", 500.0),
    "random_model.tie_word_embeddings": ("model", False),
    "random_model.eos_token_id": ("model", 1),
    "method": ("model", "dora"),
    "compute_dtype": ("model", "bfloat16"),
    "param_dtype": ("model", "bfloat16"),
    "scan_layers": ("model", False),
    "remat": ("model", "full"),
    "attention": ("model", "chunked"),
    "loss_impl": ("train", "dense"),
    "loss_chunk": ("train", 128),
    "peft.r": ("model", 4),
    "peft.alpha": ("model", 8.0),
    "peft.dropout": ("model", 0.1),
    "peft.rslora": ("model", True),
    "peft.targets": ("model", ("q_proj", "v_proj")),
    "data.task": ("data", "svamp"),
    "data.split": ("data", "test"),
    "data.limit": ("data", 5),
    "data.data_dir": ("data", "/elsewhere"),
    "data.template": ("data", "chat"),
    "data.seq_len": ("data", 256),
    "data.packing": ("data", False),
    "data.shuffle_seed": ("data", 1),
    "data.num_epochs": ("data", 2),
    "data.rows_per_step": ("data", 16),
    "global_batch_size": ("data", 8),
    "micro_batch_size": ("data", 2),
    "memory_limit_bytes": ("auto", 1),  # far too little: the pick turns into a refusal naming the limit
    "mesh_shape.data": ("model", 2),  # 2 x 1 on 4 devices: refused, naming the mesh
    "mesh_shape.fsdp": ("model", 2),
    "optim.learning_rate": ("train", 1e-3),
    "optim.warmup_ratio": ("train", 0.5),
    "optim.schedule": ("train", "constant"),
    "optim.final_lr_ratio": ("train", 0.1),
    "optim.weight_decay": ("train", 0.1),
    "optim.b1": ("train", 0.8),
    "optim.b2": ("train", 0.99),
    "optim.eps": ("train", 1e-6),
    "optim.grad_clip": ("train", 0.5),
    "total_steps": ("data", 7),
    "eval.limit": ("eval", 8),
    "eval.final_limit": ("eval", 100),
    "eval.task": ("eval", "svamp"),
    "eval.split": ("eval", "train"),
    "eval.shots": ("eval", 5),
    "eval.template": ("eval", "plain"),
    "eval.max_new_tokens": ("eval", 64),
    "eval.batch_size": ("eval", 8),
    "eval.refill": ("eval", 2),
}
# Read only while the loop runs (a probe would have to train): key -> (file, the expression that reads it).
LOOP = {
    "checkpoint_every_steps": ("jaxft/train/loop.py", "completed % c.checkpoint_every_steps == 0"),
    "keep_checkpoints": ("jaxft/train/loop.py", "keep=c.keep_checkpoints"),
    "max_consecutive_nonfinite": ("jaxft/train/telemetry.py", "self.c.max_consecutive_nonfinite"),
    "eval.every_steps": ("jaxft/train/loop.py", "done % c.eval.every_steps == 0"),
    "eval.final": ("jaxft/train/loop.py", "if c.eval.final and"),
    # W&B logging (tests/test_wandb.py runs it offline and reads the values back)
    "logging.wandb": ("jaxft/train/wandb_logger.py", 'section.get("wandb", False)'),
    "logging.wandb_project": ("jaxft/train/wandb_logger.py", 'settings.get("wandb_project")'),
    "logging.wandb_name": ("jaxft/train/wandb_logger.py", 'settings.get("wandb_name")'),
}


def flat_keys(c, prefix=""):
    import ml_collections

    out = []
    for k, v in c.items():
        out += flat_keys(v, f"{prefix}{k}.") if isinstance(v, ml_collections.ConfigDict) else [prefix + k]
    return out


def base():
    """configs/tiny.py with every "auto" made explicit, so that each probe sees only the key it changes."""
    from jaxft.train.config import load_config_file, set_value

    c = load_config_file(TINY)
    c.remat, c.attention, c.eval.every_steps, c.eval.final = "none", "xla", 0, False
    set_value(c, "micro_batch_size", 0)
    return c


def with_value(key, value):
    from jaxft.train.config import apply_override, set_value

    c = base()
    *path, leaf = key.split(".")
    node = c
    for p in path:
        node = node[p]
    set_value(node, leaf, value)
    apply_override(c, key, str(value) if not isinstance(value, tuple) else ",".join(value))  # the CLI path too
    assert node[leaf] == value, (key, node[leaf])
    return c


# --------------------------------------------------------------------------------------------- probes

def probe_shapes(c, _):
    from jaxft.run_setup import model_config

    return dataclasses.asdict(model_config(c))


def probe_model(c, _):
    """The abstract build on 4 devices: the model's config, parameter shapes and dtypes, the options it was
    built with, its adapters' hyperparameters and the mesh."""
    import numpy as np

    from jaxft.models import flat_params
    from jaxft.peft.apply import adapted_layers
    from jaxft.run_setup import build

    parts = build(c, abstract=True, n_devices=4)
    m = parts.model
    return {"config": dataclasses.asdict(m.config), "dtype": str(np.dtype(m.dtype)),
            "params": {k: (tuple(v.shape), str(v.dtype)) for k, v in flat_params(m).items()},
            "options": (m.scan_layers, m.remat, m.attention), "mesh": (parts.data, parts.fsdp),
            "adapters": {n: (type(a).__name__, a.r, a.lora_alpha, a.lora_dropout, a.use_rslora, a.scaling)
                         for n, a in adapted_layers(m).items()}}


def probe_tokenizer(c, monkeypatch):
    """The real build (random weights) asks load_tokenizer for this source."""
    import jaxft.models
    from jaxft.run_setup import build_model

    asked = []
    monkeypatch.setattr(jaxft.models, "load_tokenizer", lambda source: asked.append(source) or "tok")
    build_model(c)
    return asked


def probe_data(c, monkeypatch):
    """prepare_data with the task loader, the tokenizer pass and the step plan recorded: the arguments
    they get and the batch layout the loop derives."""
    import jaxft.data.pipeline as pipeline
    import jaxft.data.tasks as tasks
    from jaxft.train.loop import prepare_data

    seen = {}

    def load_task(*args, **kw):
        seen["load_task"] = (args, kw)
        return ["example"]

    def tokenize_examples(examples, tok, **kw):
        seen["tokenize"] = kw
        return types.SimpleNamespace(records=[{"tokens": [1, 2, 3]}])

    def step_plan(lengths, **kw):
        seen["plan"] = kw
        unit = kw["row_multiple"]
        return types.SimpleNamespace(rows=-(-(kw["rows_per_step"] or kw["batch_size"]) // unit) * unit)

    monkeypatch.setattr(tasks, "load_task", load_task)
    monkeypatch.setattr(pipeline, "tokenize_examples", tokenize_examples)
    monkeypatch.setattr(pipeline, "StepPlan", step_plan)
    seen["layout"] = dataclasses.asdict(prepare_data(c, None, shards=1).lay)
    return seen


@pytest.fixture(scope="module")
def real_parts():
    """One real (random-weight) build for the train probe: no train key changes the model."""
    import jaxft.models
    from jaxft.run_setup import build

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(jaxft.models, "load_tokenizer", lambda source: None)
        return build(base())


def probe_train(c, monkeypatch, parts):
    """init_state as the loop calls it: the learning-rate schedule's values, and what make_optimizer and
    make_train_step are given (make_optimizer's response to each of its arguments: test below)."""
    import jaxft.train.optim as optim
    import jaxft.train.step as step
    from jaxft.train.batch_layout import layout
    from jaxft.train.loop import TrainData, init_state

    seen = {}
    real = optim.make_optimizer

    def make_optimizer(schedule, **kw):
        seen["optimizer"] = kw
        return real(schedule, **kw)

    def make_train_step(graphdef, optimizer, **kw):
        seen["step"] = {k: kw[k] for k in ("accum_steps", "loss_impl", "loss_chunk", "batch_shards")}
        return None

    monkeypatch.setattr(optim, "make_optimizer", make_optimizer)
    monkeypatch.setattr(step, "make_train_step", make_train_step)
    data = TrainData(None, types.SimpleNamespace(total_steps=10, rows=4), layout(4, 0, 1))
    state = init_state(c, parts, data)
    seen["schedule"] = [float(state.schedule(i)) for i in range(10)]
    return seen


def probe_eval(c, monkeypatch, parts):
    """run_eval during (limit) and after (final_limit) training, with evaluate recorded: its settings."""
    import jaxft.eval.runner as runner
    from jaxft.peft import split_params
    from jaxft.train.loop import run_eval

    seen = []

    def evaluate(model, tok, settings, **kw):
        seen.append(dataclasses.asdict(settings))
        return {"exact_match": 0.0, "n": 0, "tokens_per_second": 0.0, "task": settings.task, "correct": 0,
                "ci95": (0.0, 0.0)}

    monkeypatch.setattr(runner, "evaluate", evaluate)
    graphdef, trainable, frozen = split_params(parts.model, c.method)
    log = types.SimpleNamespace(scalars=lambda *a, **k: None)
    for final in (False, True):
        run_eval(c, graphdef, trainable, frozen, None, log, 1, "/nonexistent", final=final)
    return seen


def probe_auto(c, _):
    """micro_batch_size "auto" for this host, on the limit the key sets: the pick, or the refusal."""
    from jaxft.train.auto import resolve_for_this_host
    from jaxft.train.config import set_value

    set_value(c, "micro_batch_size", "auto")
    resolve_for_this_host(c)
    return c.micro_batch_size


PROBES = {"shapes": probe_shapes, "model": probe_model, "tokenizer": probe_tokenizer, "data": probe_data,
          "train": probe_train, "eval": probe_eval, "auto": probe_auto}


def run_probe(name, c, monkeypatch, parts):
    if name in ("train", "eval"):
        return PROBES[name](c, monkeypatch, parts)
    return PROBES[name](c, monkeypatch)


# ---------------------------------------------------------------------------------------------- tests

def test_the_table_covers_every_base_key():
    from configs.base import get_base_config

    keys = set(flat_keys(get_base_config()))
    missing, stale = keys - set(KEYS) - set(LOOP), (set(KEYS) | set(LOOP)) - keys
    assert not missing, f"base config keys with no row in tests/test_config_keys.py (KEYS or LOOP): {sorted(missing)}"
    assert not stale, f"rows for keys the base config no longer has: {sorted(stale)}"
    assert not set(KEYS) & set(LOOP)


@pytest.mark.parametrize("probe", sorted(PROBES))
def test_every_key_changes_what_its_probe_sees(probe, monkeypatch, real_parts):
    """For each key of this probe: the base config and the one with the key at its other value give
    different observations, or the other value is refused by a ConfigError that names the key."""
    keys = sorted(k for k, (p, _) in KEYS.items() if p == probe)
    with monkeypatch.context() as mp:
        before = run_probe(probe, base(), mp, real_parts)
    unchanged = []
    for key in keys:
        with monkeypatch.context() as mp:
            try:
                after = run_probe(probe, with_value(key, KEYS[key][1]), mp, real_parts)
            except ConfigError as e:
                assert key.rsplit(".", 1)[-1] in str(e), (key, str(e))
                continue
        if after == before:
            unchanged.append(key)
    assert not unchanged, f"setting these keys changed nothing the {probe!r} probe sees: {unchanged}"


def test_loop_keys_are_read_where_the_table_says():
    for key, (path, expression) in LOOP.items():
        with open(os.path.join(REPO, path)) as f:
            assert expression in f.read(), (key, path, expression)


@pytest.mark.parametrize("kwarg,value", [("weight_decay", 0.5), ("b1", 0.5), ("b2", 0.5), ("eps", 1.0),
                                         ("grad_clip", 0.1)])
def test_make_optimizer_uses_each_argument(kwarg, value):
    """The train probe sees the optim keys arrive at make_optimizer; here each argument changes the update
    (a 2-D leaf, so weight decay applies; two gradients of different directions, so the moments' decay
    rates matter; norms 5 and 0.48, so clipping at 1.0 vs 0.1 scales them differently: AdamW is blind to
    one common scale)."""
    import jax.numpy as jnp
    import numpy as np

    from jaxft.train.optim import make_optimizer

    params = {"w": jnp.ones((2, 2))}
    first, second = jnp.array([[4.0, -2.0], [1.0, 2.0]]), jnp.array([[-0.3, 0.3], [0.2, -0.1]])  # norms 5, 0.48

    def two_updates(**kw):
        opt = make_optimizer(0.1, **kw)
        state = opt.init(params)
        _, state = opt.update({"w": first}, state, params)
        u, _ = opt.update({"w": second}, state, params)
        return np.asarray(u["w"])

    assert not np.allclose(two_updates(), two_updates(**{kwarg: value}), rtol=1e-6, atol=0)


@pytest.mark.parametrize("targets,pattern,named", [
    (("q_proj", "lm_head"), "lm_head", "lm_head"), (("embed_tokens",), "embed_tokens", "model.embed_tokens"),
    ((".*",), ".*", "model.embed_tokens"), ((r"lm_.*",), r"lm_.*", "lm_head")])
@pytest.mark.parametrize("method", ["lora", "dora"])
@pytest.mark.parametrize("tied", [False, True])
def test_head_and_embeddings_are_refused_as_targets_with_the_valid_ones(targets, pattern, named, method, tied):
    """The model reads lm_head.weight and embed_tokens.weight directly (and the chunked loss the head), so
    an adapter there would have no effect: refused by name, tied head or not, with the valid targets."""
    from jaxft.run_setup import build_model

    c = base()
    c.method, c.random_model.tie_word_embeddings = method, tied
    c.peft.targets = targets
    with pytest.raises(ConfigError) as e:
        build_model(c, abstract=True)
    msg = str(e.value)
    assert f"peft target {pattern!r} selects {named!r}, which jaxft does not adapt" in msg, msg
    assert "valid targets: down_proj, gate_proj, k_proj, o_proj, q_proj, up_proj, v_proj" in msg, msg


def test_a_schedule_the_loop_does_not_know_is_refused():
    """make_schedule knows "constant" and otherwise ran cosine: any other name was accepted and ignored."""
    from jaxft.train.config import parse_args

    with pytest.raises(ConfigError, match=r"config.optim.schedule='linear'; allowed: cosine, constant"):
        parse_args([f"--config={TINY}", "--workdir=w", "--config.optim.schedule=linear"])


def test_a_one_step_cosine_run_has_a_schedule():
    """total_steps=1 rounds the warmup to 0 steps; optax's cosine needs decay > warmup, so the schedule
    must still be built (it raised optax's ValueError) and give the first step peak / 1 = peak."""
    from jaxft.train.config import load_config_file
    from jaxft.train.loop import make_schedule

    c = load_config_file(TINY, [])
    c.optim.schedule, c.optim.learning_rate = "cosine", 1e-3
    assert float(make_schedule(c, 1)(0)) == pytest.approx(1e-3)
