"""The one builder (jaxft.run_setup): the planner and the train loop derive the same model, mesh and
micro-batching from one config; attention, scan and remat reach the model as constructor arguments;
abstract and real builds have the same parameters."""

import json
import os
import subprocess
import sys

import jax
import numpy as np

from conftest import REPO

TINY = os.path.join(REPO, "configs", "tiny.py")

# Runs the loop on 4 simulated devices with the step wrapped, so the batches it is fed are recorded.
RECORD_STEP_INPUTS = """
import json, sys
from jaxft.train import step as step_lib
from jaxft.train.config import load_config_file
from jaxft.train.loop import train

make, seen = step_lib.make_train_step, []

def recording(*args, **kwargs):
    fn = make(*args, **kwargs)
    def step(trainable, frozen, opt_state, batch, rng):
        seen.append({"accum_steps": kwargs.get("accum_steps", 1), "batch_shards": kwargs.get("batch_shards", 1),
                     "fields": sorted(batch),
                     "shapes": {k: list(v.shape) for k, v in batch.items()},
                     "per_device": sorted({tuple(s.data.shape) for s in batch["input_ids"].addressable_shards})})
        return fn(trainable, frozen, opt_state, batch, rng)
    return step

step_lib.make_train_step = recording
c = load_config_file(sys.argv[1])
c.method, c.total_steps, c.checkpoint_every_steps = "lora", 2, 100
c.global_batch_size, c.micro_batch_size, c.data.rows_per_step = 8, 1, 8
c.mesh_shape.data, c.mesh_shape.fsdp = 2, 2
summary = train(c, sys.argv[2], progress=False)
print("RECORDED " + json.dumps({"seen": seen, "summary": summary}))
"""


def test_planner_and_loop_derive_the_same_shapes_and_micro_batching(tmp_path):
    """8 rows per step over data=2 x fsdp=2 devices, 1 row per device per micro-step: the loop feeds the
    step [2, 4, 128] batches (2 micro-steps, one [1, 128] block per device each), and the planner's Setup,
    built from the config the loop wrote, says the same accumulation, micro-batch, mesh and parameters."""
    from jaxft.rundir import read_config
    from jaxft.train import memory as mem
    from jaxft.train.batch_layout import STEP_FIELDS, layout, step_shape

    w = str(tmp_path / "w")
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    proc = subprocess.run([sys.executable, "-c", RECORD_STEP_INPUTS, TINY, w], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    recorded = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("RECORDED ")][-1][9:])
    seen, summary = recorded["seen"], recorded["summary"]

    s = mem.setup_from_config(read_config(w), 4)  # the resolved config the run recorded
    assert (s.data, s.fsdp, s.accum, s.micro_batch, s.seq) == (2, 2, 2, 1, 128)
    want = step_shape(layout(s.accum * s.micro_batch * s.data * s.fsdp, 1, s.data * s.fsdp), s.seq)
    assert want == (2, 4, 128)
    assert len(seen) == 2
    for call in seen:
        assert call["accum_steps"] == s.accum and call["batch_shards"] == s.data * s.fsdp
        assert call["fields"] == sorted(STEP_FIELDS)
        assert all(tuple(shape) == want for shape in call["shapes"].values()), call["shapes"]
        assert call["per_device"] == [[s.accum, s.micro_batch, s.seq]]
    assert (summary["trainable_params"], summary["total_params"]) == (s.n_trainable, s.n_params)
    assert summary["rows_per_step"] == s.accum * s.micro_batch * s.data * s.fsdp
    with open(os.path.join(w, "metrics.jsonl")) as f:
        assert [json.loads(line)["accum_steps"] for line in f] == [s.accum] * 2


def _small_config(**kw):
    from jaxft.train.config import load_config_file

    c = load_config_file(TINY)
    c.random_model.update(num_hidden_layers=2)
    for k, v in kw.items():
        setattr(c, k, v)
    return c


def test_options_are_constructor_arguments_and_abstract_matches_real():
    """scan_layers, remat and attention come from the config into the Transformer (and through its
    adapters); the abstract build (no weights) has exactly the real build's parameter shapes and dtypes."""
    from jaxft.models import flat_params
    from jaxft.run_setup import build, build_model

    c = _small_config(method="dora", scan_layers=True, remat="dots", attention="chunked")
    model, tok = build_model(c, abstract=True)
    assert tok is None
    assert (model.scan_layers, model.remat, model.attention) == (True, "dots", "chunked")
    real = build(c)
    assert real.tokenizer is not None and (real.data, real.fsdp) == (jax.device_count(), 1)
    assert (real.model.scan_layers, real.model.remat, real.model.attention) == (True, "dots", "chunked")
    a, r = flat_params(model), flat_params(real.model)
    assert a.keys() == r.keys() and any(".lora_A" in k for k in a)
    for k in a:
        assert (tuple(a[k].shape), np.dtype(a[k].dtype)) == (tuple(r[k].shape), np.dtype(r[k].dtype)), k


def test_unresolved_auto_is_refused_for_shapes_only():
    import pytest

    from jaxft.errors import ConfigError
    from jaxft.run_setup import build_model

    with pytest.raises(ConfigError, match=r"config.attention='auto' must be resolved first"):
        build_model(_small_config(attention="auto", remat="none"), abstract=True)
