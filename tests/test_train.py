"""The train loop on configs/tiny.py: learning, exact resume after SIGKILL, 1 vs 8 devices,
TensorBoard scalars, non-finite handling, config overrides."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO

TINY = os.path.join(REPO, "configs", "tiny.py")


# `python -m jaxft.train`, with test-only hooks (jaxft.train.loop.TrainHooks) given as JSON in argv[1].
HOOKED_TRAIN = """
import json, sys
from jaxft.train.config import parse_args
from jaxft.train.loop import TrainHooks, train
config, workdir, _ = parse_args(sys.argv[2:])
train(config, workdir, progress=False, hooks=TrainHooks(**json.loads(sys.argv[1])))
"""


def run_train(workdir, *overrides, env=None, check=True, hooks=None):
    args = [f"--config={TINY}", f"--workdir={workdir}", *overrides]
    cmd = [sys.executable, "-m", "jaxft.train", *args] if hooks is None else \
        [sys.executable, "-c", HOOKED_TRAIN, json.dumps(hooks), *args]
    e = dict(os.environ, **(env or {}))
    e.setdefault("XLA_FLAGS", "")
    proc = subprocess.run(cmd, cwd=REPO, env=e, capture_output=True, text=True, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"train failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def metrics(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def test_tiny_model_overfits_a_handful_of_examples(tmp_path):
    from jaxft.train.config import load_config_file
    from jaxft.train.loop import train

    c = load_config_file(TINY)
    c.method = "full"
    c.data.limit = 4
    c.global_batch_size = 2
    c.data.packing = False
    c.total_steps = 40
    c.checkpoint_every_steps = 100
    c.optim.learning_rate = 1e-2
    c.optim.schedule = "constant"
    summary = train(c, str(tmp_path / "w"), progress=False)
    rows = metrics(tmp_path / "w")
    assert summary["completed_steps"] == 40 and len(rows) == 40
    first, last = rows[0]["loss"], np.mean([r["loss"] for r in rows[-3:]])
    assert first > 10.0  # a random model over a 49k vocabulary starts near log(49152) = 10.8
    assert last < 3.5, f"loss {first:.2f} -> {last:.2f}: the tiny model did not memorise 4 examples"


@pytest.mark.slow
def test_exact_resume_after_sigkill(tmp_path):
    """8 steps straight == 4 steps, SIGKILL right after the step-4 checkpoint, then resume for 4 more:
    the same loss at every step, the same final parameters, and every example seen exactly once."""
    common = ["--config.total_steps=8", "--config.checkpoint_every_steps=4", "--config.peft.dropout=0.1",
              "--config.data.limit=64"]
    hooks = {"log_examples": True}
    straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
    run_train(straight, *common, hooks=hooks)
    killed = run_train(resumed, *common, hooks=dict(hooks, kill_after_save=4), check=False)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert max(r["step"] for r in metrics(resumed)) == 4
    run_train(resumed, *common, hooks=hooks)

    a, b = metrics(straight), metrics(resumed)
    assert [r["step"] for r in b] == list(range(1, 9))
    for ra, rb in zip(a, b):
        assert ra["loss"] == rb["loss"] and ra["grad_norm"] == rb["grad_norm"], (ra["step"], ra, rb)
    seen = [e for r in b for e in r["example_ids"]]
    assert seen == [e for r in a for e in r["example_ids"]]
    assert len(seen) == len(set(seen)), "an example was seen twice within the epoch"

    from jaxft.train.restore import restore_model
    from jaxft.models import flat_params

    pa, pb = flat_params(restore_model(straight)[0]), flat_params(restore_model(resumed)[0])
    assert pa.keys() == pb.keys()
    for k in pa:
        np.testing.assert_array_equal(np.asarray(pa[k]), np.asarray(pb[k]), err_msg=k)


@pytest.mark.slow
def test_one_vs_eight_devices_dp_and_fsdp(tmp_path):
    """Same 5 steps on 1 CPU device, on 8 simulated devices with data parallelism and with fsdp."""
    script = """
import json, sys
from jaxft.train.config import load_config_file
from jaxft.train.loop import train
c = load_config_file(sys.argv[1])
c.method, c.total_steps, c.checkpoint_every_steps, c.global_batch_size = "full", 5, 100, 8
c.micro_batch_size = int(sys.argv[4])
c.mesh_shape.data, c.mesh_shape.fsdp = int(sys.argv[2]), int(sys.argv[3])
train(c, sys.argv[5], progress=False)
"""
    def run(devices, data, fsdp, micro, name):
        env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
        out = str(tmp_path / name)
        subprocess.run([sys.executable, "-c", script, TINY, str(data), str(fsdp), str(micro), out], cwd=REPO,
                       env=env, check=True, capture_output=True, timeout=900)
        return [r["loss"] for r in metrics(out)]

    one = run(1, 1, 1, 0, "one")
    dp = run(8, 8, 1, 0, "dp")
    fsdp = run(8, 1, 8, 0, "fsdp")
    mixed = run(8, 4, 2, 0, "mixed")
    assert len(one) == 5
    np.testing.assert_allclose(dp, one, atol=1e-5, rtol=0)
    np.testing.assert_allclose(fsdp, one, atol=1e-5, rtol=0)
    np.testing.assert_allclose(mixed, one, atol=1e-5, rtol=0)


def test_gradient_accumulation_matches_one_big_batch(tmp_path):
    from jaxft.train.config import load_config_file
    from jaxft.train.loop import train

    losses = {}
    for micro in (0, 1):  # one batch of 4 vs 4 accumulated micro-batches of 1
        c = load_config_file(TINY)
        c.method, c.total_steps, c.checkpoint_every_steps = "full", 4, 100
        c.micro_batch_size, c.data.packing = micro, False  # one example per row: 4 rows
        train(c, str(tmp_path / f"m{micro}"), progress=False)
        rows = metrics(tmp_path / f"m{micro}")
        losses[micro] = [r["loss"] for r in rows]
        assert rows[0]["accum_steps"] == (4 if micro else 1)
    np.testing.assert_allclose(losses[1], losses[0], atol=1e-5, rtol=0)


def test_tensorboard_holds_every_scalar(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    w = str(tmp_path / "w")
    proc = run_train(w, "--config.total_steps=3", "--config.eval.final=true", "--config.eval.final_limit=2",
              "--config.eval.max_new_tokens=8")
    # attention/remat "auto" resolved on this CPU before the config is written, and said in the log
    with open(os.path.join(w, "jaxft_config.json")) as f:
        written = json.load(f)
    assert (written["attention"], written["remat"]) == ("xla", "none")
    assert "attention=auto -> xla (cpu" in proc.stdout and "remat=auto -> none (planner" in proc.stdout
    acc = EventAccumulator(os.path.join(w, "tensorboard"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    for name in ("loss", "grad_norm", "update_norm", "learning_rate", "tokens_per_second", "step_time"):
        assert f"train/{name}" in tags, name
        assert [e.step for e in acc.Scalars(f"train/{name}")] == [1, 2, 3]
    assert "eval_final/exact_match" in tags
    losses = [e.value for e in acc.Scalars("train/loss")]
    np.testing.assert_allclose(losses, [r["loss"] for r in metrics(w)], rtol=1e-6)
    assert all(r["mfu"] is None for r in metrics(w))  # CPU: no peak FLOP/s, so MFU is n/a
    for f in ("jaxft_config.json", "summary.json", "data_stats.json"):
        assert os.path.isfile(os.path.join(w, f))
    assert os.path.isfile(os.path.join(w, "eval", "gsm8k", "metrics.json"))


def test_nonfinite_steps_are_skipped_then_stop_the_run(tmp_path):
    from jaxft.train.config import load_config_file
    from jaxft.train.loop import NonFiniteError, TrainHooks, train

    c = load_config_file(TINY)
    c.total_steps, c.method = 4, "full"
    w = str(tmp_path / "skip")
    train(c, w, progress=False, hooks=TrainHooks(poison_steps=frozenset({2})))
    rows = metrics(w)
    assert [r["skipped_nonfinite"] for r in rows] == [0, 1, 0, 0]
    assert rows[1]["update_norm"] == 0.0 and np.isfinite(rows[3]["loss"])

    c = load_config_file(TINY)
    c.total_steps, c.checkpoint_every_steps, c.max_consecutive_nonfinite = 8, 2, 3
    w = str(tmp_path / "stop")
    with pytest.raises(NonFiniteError, match="3 consecutive steps with a non-finite loss"):
        train(c, w, progress=False, hooks=TrainHooks(poison_steps=frozenset(range(3, 9))))
    from jaxft.train.checkpoint import Checkpointer

    ck = Checkpointer(os.path.join(w, "checkpoints"), async_save=False)
    assert ck.latest_step() == 4  # stopped at step 5 (third non-finite step in a row), nothing saved after
    ck.close()
    from jaxft.train.restore import restore_model
    from jaxft.models import flat_params

    # Steps 3 and 4 were skipped, so the step-4 checkpoint holds exactly the step-2 parameters.
    at2, at4 = flat_params(restore_model(w, step=2)[0]), flat_params(restore_model(w, step=4)[0])
    for k in at2:
        assert np.isfinite(np.asarray(at4[k])).all()
        np.testing.assert_array_equal(np.asarray(at2[k]), np.asarray(at4[k]), err_msg=k)


def test_config_overrides_and_errors(tmp_path):
    from jaxft.train.config import parse_args

    c, w, _ = parse_args([f"--config={TINY}", "--workdir=x", "--config.method=dora", "--config.peft.r=4",
                          "--config.peft.targets=q_proj,v_proj", "--config.data.packing=false"])
    assert (c.method, c.peft.r, tuple(c.peft.targets), c.data.packing) == ("dora", 4, ("q_proj", "v_proj"), False)
    proc = run_train(str(tmp_path / "bad"), "--config.optim.learing_rate=1", check=False)
    assert proc.returncode == 2 and "did you mean --config.optim.learning_rate" in proc.stderr
    proc = run_train(str(tmp_path / "bad"), "--config.method=prefix", check=False)
    assert proc.returncode == 2 and "full, lora, dora" in proc.stderr
    proc = run_train(str(tmp_path / "bad"), "--config.attention=flash", check=False)
    assert proc.returncode == 2 and "config.attention='flash'; allowed: auto, xla, dpa, cudnn, chunked" in proc.stderr


@pytest.mark.parametrize("path", sorted(
    f for f in os.listdir(os.path.join(REPO, "configs")) if f.endswith(".py") and f not in ("__init__.py", "base.py") and not f.startswith("study")))
def test_every_config_loads_with_the_protocol(path):
    from jaxft.train.config import load_config_file, validate

    c = load_config_file(os.path.join(REPO, "configs", path))
    validate(c)
    for key in ("method", "total_steps", "checkpoint_every_steps"):
        assert key in c
    if path.split("_")[-1].replace(".py", "") in ("full", "lora", "dora") and not path.startswith("study"):
        assert c.global_batch_size == 64 and c.optim.weight_decay == 0.01 and c.optim.schedule == "cosine"
        assert c.compute_dtype == "bfloat16" and c.param_dtype == "float32"
        assert c.data.task == "orcamath" and c.data.limit == 10_000
        assert (c.peft.r, c.peft.alpha, c.peft.dropout) == (8, 32.0, 0.05)
        assert c.optim.learning_rate == (2e-5 if c.method == "full" else 2e-4)
