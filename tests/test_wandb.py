"""Weights & Biases as an optional logger (`logging.wandb`), offline: the run files W&B writes hold the
scalars TensorBoard gets, the run's name and config, and a run resumed in its workdir logs into the
same W&B run. Without the package installed the key is refused at config resolution with the install hint.

The run files are read back with W&B's own record format: `<workdir>/wandb/offline-run-*/run-<id>.wandb`
is a LevelDB-style log (a 7-byte header, 32 KiB blocks of chunks: CRC-32C, length, type) of
`wandb.proto.wandb_internal_pb2.Record` messages. wandb 0.31 ships no Python reader for it (its Go
core writes and syncs these files), so `wandb_records` below decodes the framing and leaves every
message to W&B's protobuf classes.
"""

import glob
import json
import os
import struct
import sys

import pytest

from tests.test_train import TINY, metrics, run_train

BLOCK = 32 * 1024
HEADER = 7  # ":W&B", a 2-byte magic, a version byte
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def wandb_records(path):
    """Every Record of one .wandb file, in order."""
    from wandb.proto import wandb_internal_pb2

    with open(path, "rb") as f:
        data = f.read()
    assert data[:4] == b":W&B", f"{path}: not a W&B run file"
    pos, parts = HEADER, []
    while pos + 7 <= len(data):
        if BLOCK - pos % BLOCK < 7:  # a block's tail too short for a chunk header is padding
            pos += BLOCK - pos % BLOCK
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0 or pos + 7 + length > len(data):  # the zero-filled or cut tail of a killed run's file
            break
        parts.append(data[pos + 7:pos + 7 + length])
        pos += 7 + length
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(b"".join(parts))
            parts = []
            yield record


def read_runs(workdir):
    """{run dir: {"run": [Run records], "config": {key: value}, "history": [{key: value}]}} per segment."""
    out = {}
    for path in sorted(glob.glob(os.path.join(workdir, "wandb", "offline-run-*", "run-*.wandb"))):
        seg = {"run": [], "config": {}, "history": []}
        for r in wandb_records(path):
            kind = r.WhichOneof("record_type")
            if kind == "run":
                seg["run"].append(r.run)
            elif kind == "config":
                seg["config"].update({i.key: json.loads(i.value_json) for i in r.config.update})
            elif kind == "history":
                seg["history"].append({i.key or "/".join(i.nested_key): json.loads(i.value_json)
                                       for i in r.history.item})
        out[os.path.dirname(path)] = seg
    return out


def test_wandb_without_the_package_is_refused_with_the_install_hint(monkeypatch, capsys, tmp_path):
    """No wandb importable (sys.modules[name] = None is how Python spells "not installed" to find_spec and
    import): the CLI exits 2 with one line naming the key and the extra, before anything is built."""
    from jaxft.train.__main__ import main

    monkeypatch.setitem(sys.modules, "wandb", None)
    code = main([f"--config={TINY}", f"--workdir={tmp_path / 'w'}", "--config.logging.wandb=true"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: config.logging.wandb") and "pip install 'jaxft[wandb]'" in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not os.path.exists(tmp_path / "w")
    # off (the default), nothing asks for it
    from jaxft.train.config import load_config_file, validate

    validate(load_config_file(TINY))


def test_jaxft_does_not_import_wandb_when_the_key_is_off(tmp_path):
    """The import stays lazy: the loop's modules and a metrics log with logging.wandb off leave it out."""
    import subprocess

    from conftest import REPO

    code = ("import sys; from jaxft.train.config import load_config_file; import jaxft.train.loop; "
            "from jaxft.train.telemetry import MetricsLog; "
            f"MetricsLog({str(tmp_path)!r}, resume_step=0, config=load_config_file({TINY!r})).close(); "
            "print('wandb' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.stdout.strip() == "False", out.stderr[-2000:]


@pytest.fixture(scope="module")
def resumed_run(tmp_path_factory):
    """W&B offline: 2 steps, then the same workdir trained on to 4 steps with a final evaluation of 2
    problems. (A run that finishes or stops on SIGTERM closes its W&B run, which writes out everything
    logged; after a SIGKILL, W&B's last seconds may be missing: its core writes the file in the
    background, about every 15 s.)"""
    pytest.importorskip("wandb")
    w = str(tmp_path_factory.mktemp("wandb") / "tiny_wandb")
    env = {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DISABLE_GIT": "true"}
    common = ["--config.checkpoint_every_steps=2", "--config.logging.wandb=true"]
    run_train(w, *common, "--config.total_steps=2", env=env)
    with open(os.path.join(w, "wandb_run_id")) as f:
        first_id = f.read().strip()
    run_train(w, *common, "--config.total_steps=4", "--config.eval.final=true", "--config.eval.final_limit=2",
              "--config.eval.max_new_tokens=8", env=env)
    return w, first_id


@pytest.mark.slow
def test_a_resumed_run_continues_the_same_wandb_run(resumed_run):
    w, first_id = resumed_run
    with open(os.path.join(w, "wandb_run_id")) as f:
        assert f.read().strip() == first_id
    runs = read_runs(w)
    assert len(runs) == 2, list(runs)  # one offline segment per process, both of the one run
    for seg in runs.values():
        assert [(r.run_id, r.display_name, r.project) for r in seg["run"]] == [(first_id, "tiny_wandb", "jaxft")]
    steps = sorted(row["step"] for seg in runs.values() for row in seg["history"] if "train/loss" in row)
    assert steps == [1, 2, 3, 4]


@pytest.mark.slow
def test_wandb_holds_the_tensorboard_scalars_and_the_config(resumed_run):
    """Every TensorBoard scalar (train: loss, grad_norm, learning_rate, tokens_per_second, examples, epoch,
    ...; eval_final: exact_match, n, tokens_per_second) is on W&B under the same tag at the same step, with
    the value metrics.jsonl has (TensorBoard stores float32: rtol 1e-6), and the run carries the resolved
    config the workdir records."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    w, _ = resumed_run
    runs = read_runs(w)
    logged = {}
    for seg in runs.values():
        for row in seg["history"]:
            for tag, v in row.items():
                if "/" in tag:
                    logged[(tag, row["step"])] = v
    acc = EventAccumulator(os.path.join(w, "tensorboard"))
    acc.Reload()
    tb = {(tag, e.step): e.value for tag in acc.Tags()["scalars"] for e in acc.Scalars(tag)}
    assert set(logged) == set(tb)
    for key, v in tb.items():
        assert logged[key] == pytest.approx(v, rel=1e-6), key
    for name in ("loss", "grad_norm", "learning_rate", "tokens_per_second", "examples", "epoch"):
        assert [logged[(f"train/{name}", r["step"])] for r in metrics(w)] == [r[name] for r in metrics(w)], name
    assert ("eval_final/exact_match", 4) in logged

    with open(os.path.join(w, "jaxft_config.json")) as f:
        written = json.load(f)
    first, last = ({k: v for k, v in seg["config"].items() if not k.startswith("_")} for seg in runs.values())
    assert last == written, sorted(set(last) ^ set(written))  # the resolved config of the run that resumed
    assert (first["total_steps"], last["total_steps"]) == (2, 4)  # each process's own
