"""Multi-process training on localhost: two processes x 4 CPU devices joined by jax.distributed train
like one process with 8 devices, and checkpoints written on an 8-device fsdp mesh restore on 1 device."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import portpicker
import pytest

from conftest import REPO

pytestmark = pytest.mark.slow  # README's second test command (tests/time_guard.py)

TINY = os.path.join(REPO, "configs", "tiny.py")
# A constant learning rate makes a 5-step run the prefix of a 10-step one; fsdp=8 spreads every
# matrix over both processes, so saving and restoring must gather shards across them.
COMMON = ["--config.method=full", "--config.global_batch_size=8", "--config.checkpoint_every_steps=5",
          "--config.optim.schedule=constant", "--config.optim.warmup_ratio=0.0", "--config.data.limit=48"]
FSDP8 = ["--config.mesh_shape.data=1", "--config.mesh_shape.fsdp=8"]


def start(workdir, devices, *args):
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    cmd = [sys.executable, "-m", "jaxft.train", f"--config={TINY}", f"--workdir={workdir}", *COMMON, *args]
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(*procs, timeout=600):
    """Wait for all; if one fails, stop the rest (a lone distributed peer would wait for ever)."""
    outs = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=timeout)
            outs.append(out)
            assert p.returncode == 0, f"exit {p.returncode}:\n{err[-3000:]}"
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return outs


def losses(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [(r["step"], r["loss"]) for r in map(json.loads, f)]


# Six training processes: about 3 minutes on 2 idle cores, more when they are shared.
def test_two_processes_match_one_and_checkpoints_reshard_to_one_device(tmp_path):
    straight, multi, resumed = (str(tmp_path / n) for n in ("straight", "multi", "resumed"))
    port = portpicker.pick_unused_port()
    peers = [start(multi, 4, "--config.total_steps=5", *FSDP8, f"--coordinator_address=127.0.0.1:{port}",
                   "--num_processes=2", f"--process_id={i}") for i in range(2)]
    one = start(straight, 8, "--config.total_steps=10", *FSDP8)
    out0, out1, _ = finish(*peers, one)

    ref = losses(straight)
    assert [s for s, _ in ref] == list(range(1, 11))
    got = losses(multi)  # written by process 0 alone
    assert [s for s, _ in got] == [1, 2, 3, 4, 5]
    np.testing.assert_allclose([v for _, v in got], [v for _, v in ref[:5]], atol=1e-5, rtol=0)
    # Each process feeds its own half of every step's rows; both report the run's global count (5 x 8).
    examples = [json.loads(o.strip().splitlines()[-1])["examples"] for o in (out0, out1)]
    assert examples == [40, 40]

    # Both processes resume from the checkpoint they wrote together, each with its own data-iterator
    # state, and continue exactly as the one process did.
    port = portpicker.pick_unused_port()
    finish(*[start(multi, 4, "--config.total_steps=10", *FSDP8, f"--coordinator_address=127.0.0.1:{port}",
                   "--num_processes=2", f"--process_id={i}") for i in range(2)])
    got = losses(multi)
    assert [s for s, _ in got] == list(range(1, 11))
    np.testing.assert_allclose([v for _, v in got], [v for _, v in ref], atol=1e-5, rtol=0)
    states = sorted(f for f in os.listdir(os.path.join(multi, "checkpoints", "5", "data")) if f.endswith(".json"))
    assert states == ["process_0-of-2.json", "process_1-of-2.json"]

    # The 8-device checkpoint of step 5 continues on a single device, losses unchanged.
    shutil.copytree(straight, resumed, ignore=shutil.ignore_patterns("10"))
    finish(start(resumed, 1, "--config.total_steps=10", "--config.mesh_shape.data=-1",
                 "--config.mesh_shape.fsdp=1"))
    after = losses(resumed)
    assert [s for s, _ in after] == list(range(1, 11))
    np.testing.assert_allclose([v for _, v in after[5:]], [v for _, v in ref[5:]], atol=1e-5, rtol=0)

    # The checkpoint the two processes wrote together restores here, on this process's one device.
    from jaxft.models import flat_params
    from jaxft.train.restore import restore_model

    a, b = flat_params(restore_model(multi, step=5)[0]), flat_params(restore_model(straight, step=5)[0])
    assert a.keys() == b.keys()
    # 3e-5: float32 reductions in another order across processes; after 5 Adam steps at lr 3e-3 a weight
    # whose gradient is near zero moves by up to ~lr per step either way, so tiny differences show there.
    for k in a:
        np.testing.assert_allclose(np.asarray(a[k]), np.asarray(b[k]), atol=3e-5, rtol=0, err_msg=k)


def test_each_process_saves_and_restores_its_own_data_state(tmp_path, monkeypatch):
    """Hosts read different shards, so host 1 must get host 1's iterator state back, never host 0's."""
    import jax
    from etils import epath

    from jaxft.errors import ConfigError
    from jaxft.train.checkpoint import ProcessStateHandler, ProcessStateRestore, ProcessStateSave

    handler, d = ProcessStateHandler(), epath.Path(tmp_path)
    for i, state in enumerate(({"next_index": 20}, {"next_index": 23})):
        monkeypatch.setattr(jax, "process_index", lambda i=i: i)
        monkeypatch.setattr(jax, "process_count", lambda: 2)
        handler.save(d, ProcessStateSave(state))
    assert sorted(os.listdir(tmp_path)) == ["process_0-of-2.json", "process_1-of-2.json"]
    assert handler.restore(d, ProcessStateRestore()) == {"next_index": 23}  # still process 1
    monkeypatch.setattr(jax, "process_index", lambda: 0)
    assert handler.restore(d, ProcessStateRestore()) == {"next_index": 20}
    monkeypatch.setattr(jax, "process_count", lambda: 1)
    with pytest.raises(ConfigError, match="process 0 of 1"):
        handler.restore(d, ProcessStateRestore())
