"""The run directory (jaxft.rundir): one test telling a training workdir from an HF model or PEFT adapter
directory, older workdirs (config.json) still restoring, and the one JSON Lines reader."""

import json
import os
import shutil

import numpy as np
import pytest

from conftest import REPO

from jaxft.errors import DataError, UnknownModelError


def _touch(path, text="{}"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def test_dir_kind_tells_workdirs_from_hf_and_adapter_directories(tmp_path):
    from jaxft.models import load_model
    from jaxft.models.hf_loader import is_hf_dir
    from jaxft.rundir import dir_kind, is_training_workdir

    new, old, hf, adapter, empty = (str(tmp_path / n) for n in ("new", "old", "hf", "adapter", "empty"))
    _touch(os.path.join(new, "jaxft_config.json"))  # no checkpoint yet: still a workdir, by its file name
    _touch(os.path.join(old, "config.json"))
    os.makedirs(os.path.join(old, "checkpoints"))
    _touch(os.path.join(hf, "config.json"))
    _touch(os.path.join(adapter, "adapter_config.json"))
    os.makedirs(empty)
    kinds = {d: dir_kind(d) for d in (new, old, hf, adapter, empty, str(tmp_path / "missing"))}
    assert list(kinds.values()) == ["workdir", "workdir", "hf", "adapter", None, None]
    assert [is_training_workdir(d) for d in (new, old, hf)] == [True, True, False]
    assert [is_hf_dir(d) for d in (new, old, hf)] == [False, False, True]
    with pytest.raises(UnknownModelError, match="is a jaxft training workdir, not a model"):
        load_model(old)  # an older workdir's config.json is no HF config


def test_an_older_workdir_with_config_json_still_restores_and_exports(tmp_path):
    """The same run read through jaxft_config.json and, renamed as older runs wrote it, config.json:
    the same config, the same restored parameters, and export and analysis take it as a workdir."""
    from jaxft.analyze import load_source
    from jaxft.export import main as export_main
    from jaxft.models import flat_params
    from jaxft.rundir import read_config
    from jaxft.train.config import load_config_file
    from jaxft.train.loop import train
    from jaxft.train.restore import restore_model

    c = load_config_file(os.path.join(REPO, "configs", "tiny.py"))
    c.total_steps, c.checkpoint_every_steps, c.data.limit = 2, 2, 8
    w = str(tmp_path / "w")
    train(c, w, progress=False)
    assert not os.path.exists(os.path.join(w, "config.json"))
    now = flat_params(restore_model(w)[0])
    config = read_config(w).to_dict()

    old = str(tmp_path / "old")
    shutil.copytree(w, old)
    os.rename(os.path.join(old, "jaxft_config.json"), os.path.join(old, "config.json"))
    assert read_config(old).to_dict() == config
    before = flat_params(restore_model(old)[0])
    assert before.keys() == now.keys()
    for k in now:
        np.testing.assert_array_equal(np.asarray(before[k]), np.asarray(now[k]), err_msg=k)
    analysed = flat_params(load_source(old)[0])
    np.testing.assert_array_equal(np.asarray(analysed[k]), np.asarray(now[k]))
    assert export_main(["--checkpoint", old, "--out", str(tmp_path / "p"), "--format", "peft"]) == 0
    assert os.path.isfile(tmp_path / "p" / "adapter_config.json")


def test_jsonl_reader_names_file_and_line_and_stops_at_a_torn_tail(tmp_path):
    from jaxft.jsonl import iter_jsonl, read_jsonl

    path = str(tmp_path / "rows.jsonl")
    _touch(path, '{"a": 1}\n\n{"a": 2}\n{"a": 3, "b": "cut by a ki')
    with pytest.raises(DataError, match=r"rows\.jsonl:4: malformed JSON"):
        read_jsonl(path)
    assert read_jsonl(path, torn_tail=True) == [{"a": 1}, {"a": 2}]
    assert [where for where, _ in iter_jsonl(path, limit=2)] == [f"{path}:1", f"{path}:3"]
    _touch(path, '[1, 2]\n')
    with pytest.raises(DataError, match=r"rows\.jsonl:1: expected a JSON object, got list"):
        read_jsonl(path)


def test_metrics_log_drops_lines_past_the_resumed_step_and_a_torn_one(tmp_path):
    from jaxft.train.telemetry import MetricsLog

    w = str(tmp_path)
    rows = [{"step": s, "loss": float(s)} for s in (1, 2, 3)]
    _touch(os.path.join(w, "metrics.jsonl"), "".join(json.dumps(r) + "\n" for r in rows) + '{"step": 4, "lo')
    log = MetricsLog(w, resume_step=2)
    log.close()
    with open(os.path.join(w, "metrics.jsonl")) as f:
        assert [json.loads(line) for line in f] == rows[:2]
