"""The study grid on a tiny model: every cell written, a killed study resumes and skips finished cells,
and the report builds from what it wrote."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO
from jaxft.peft.methods import METHODS

STUDY_TINY = os.path.join(REPO, "configs", "study_tiny.py")


def _cells(workdir):
    found = set()
    for model in os.listdir(workdir):
        mdir = os.path.join(workdir, model)
        if not os.path.isdir(mdir):
            continue
        for method in os.listdir(mdir):
            edir = os.path.join(mdir, method, "eval")
            for bench in os.listdir(edir) if os.path.isdir(edir) else ():
                if os.path.isfile(os.path.join(edir, bench, "metrics.json")):
                    found.add((model, method, bench))
    return found


@pytest.mark.slow
def test_tiny_study_runs_resumes_and_reports(tmp_path):
    from jaxft.study import main as study_main

    w = str(tmp_path / "study")
    # First run: only the baselines and LoRA (as if the study was killed after them).
    assert study_main([f"--config={STUDY_TINY}", f"--workdir={w}",
                       "--config.methods=zero-shot,5-shot,lora"]) == 0
    first = _cells(w)
    assert first == {("tiny", m, b) for m in ("zero-shot", "5-shot", "lora") for b in ("gsm8k", "svamp", "math500")}
    mtimes = {c: os.path.getmtime(os.path.join(w, *c[:2], "eval", c[2], "metrics.json")) for c in first}
    # Delete one finished cell: only it and the missing methods must run again.
    os.remove(os.path.join(w, "tiny", "lora", "eval", "svamp", "metrics.json"))
    proc = subprocess.run([sys.executable, "-m", "jaxft.study", f"--config={STUDY_TINY}", f"--workdir={w}"],
                          cwd=REPO, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "tiny/zero-shot: all cells done, skipped" in proc.stdout
    assert "tiny/lora/svamp" in proc.stdout and "tiny/lora/gsm8k" not in proc.stdout
    assert "training in" not in proc.stdout.split("tiny/full")[0]  # LoRA was not trained again
    everything = _cells(w)
    assert everything == {("tiny", m, b) for m in ("zero-shot", "5-shot", *METHODS)
                          for b in ("gsm8k", "svamp", "math500")}
    for c in first - {("tiny", "lora", "svamp")}:  # finished cells were skipped, not recomputed
        assert os.path.getmtime(os.path.join(w, *c[:2], "eval", c[2], "metrics.json")) == mtimes[c]
    m = json.load(open(os.path.join(w, "tiny", "5-shot", "eval", "gsm8k", "metrics.json")))
    assert m["shots"] == 5 and m["n"] == 4 and len(m["shot_ids"]) == 5
    for method in METHODS:
        assert os.path.isfile(os.path.join(w, "tiny", method, "train", "summary.json"))
        assert os.path.isfile(os.path.join(w, "tiny", method, "train", "metrics.jsonl"))

    from jaxft.report import build_report

    out = str(tmp_path / "report")
    result = build_report(w, out)
    assert os.path.isfile(os.path.join(out, "results.md")) and os.path.isfile(os.path.join(out, "index.md"))
    assert not result["missing"] if "missing" in result else True


def test_per_method_learning_rates_and_bad_keys(tmp_path):
    import ml_collections

    from configs.study_tiny import get_config
    from jaxft.errors import ConfigError
    from jaxft.study import _train_config, run_study

    study = get_config()
    study.config_root = REPO
    study.learning_rates = ml_collections.ConfigDict({"full": 1e-5, "lora": 3e-3})
    assert _train_config(study, "tiny", "full").optim.learning_rate == 1e-5
    assert _train_config(study, "tiny", "lora").optim.learning_rate == 3e-3
    study.learning_rates = ml_collections.ConfigDict({"loar": 1e-3})
    with pytest.raises(ConfigError, match="learning_rates: unknown method 'loar'; allowed: full, lora, dora"):
        run_study(study, str(tmp_path / "w"))
    assert not os.path.exists(tmp_path / "w")  # rejected before anything is written


def test_a_baseline_cell_is_keyed_by_the_untrained_model_only():
    """A zero-/5-shot cell evaluates the untrained weights: a change to the training settings (a new
    config key, another learning rate) must not throw away a half-finished 1,319-problem evaluation,
    while another model or tokenizer must."""
    from configs.study_tiny import get_config
    from jaxft.study import _train_config
    from jaxft.train.config import untrained_fingerprint, weights_fingerprint

    study = get_config()
    study.config_root = REPO
    base = _train_config(study, "tiny", "full")
    other = _train_config(study, "tiny", "full")
    other.optim.learning_rate = 0.5
    other.data.seq_len = 64
    assert untrained_fingerprint(other) == untrained_fingerprint(base)
    assert weights_fingerprint(other) != weights_fingerprint(base)  # a trained cell is redone
    for key, value in (("tokenizer", "gemma-3-270m-q4"), ("seed", 7), ("model", "smollm2-135m")):
        changed = _train_config(study, "tiny", "full")
        changed[key] = value
        assert untrained_fingerprint(changed) != untrained_fingerprint(base), key
    changed = _train_config(study, "tiny", "full")
    changed.random_model.hidden_size = 32
    assert untrained_fingerprint(changed) != untrained_fingerprint(base)
