"""README's main job end to end: LoRA on the real SmolLM2-135M-Instruct, then GSM8K exact match."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

pytestmark = [pytest.mark.real, pytest.mark.slow]


def test_quickstart_trains_checkpoints_and_evaluates(tmp_path):
    w = str(tmp_path / "qs")
    proc = subprocess.run([sys.executable, "-m", "jaxft.train", "--config=configs/quickstart.py", f"--workdir={w}"],
                          cwd=REPO, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in open(os.path.join(w, "metrics.jsonl"))]
    assert [r["step"] for r in rows] == list(range(1, 13))
    assert all(r["skipped_nonfinite"] == 0 for r in rows)
    summary = json.load(open(os.path.join(w, "summary.json")))
    assert summary["method"] == "lora" and summary["trainable_params"] < summary["total_params"] / 50
    m = json.load(open(os.path.join(w, "eval", "gsm8k", "metrics.json")))
    preds = [json.loads(line) for line in open(os.path.join(w, "eval", "gsm8k", "predictions.jsonl"))]
    assert m["n"] == 16 == len(preds) and m["correct"] == sum(p["correct"] for p in preds)
    assert "final eval:" in proc.stdout
