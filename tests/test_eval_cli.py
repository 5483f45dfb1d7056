"""`python -m jaxft.eval` with the real model on 8 GSM8K problems: both output files, consistent."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

pytestmark = pytest.mark.real


def test_eval_cli_writes_predictions_and_metrics(tmp_path):
    out = str(tmp_path / "out")
    proc = subprocess.run([sys.executable, "-m", "jaxft.eval", "--model=smollm2-135m-instruct-q4", "--task=gsm8k",
                           "--shots=0", "--template=plain", "--limit=8", "--batch_size=8", "--refill=4",
                           "--max_new_tokens=48",
                           f"--output_dir={out}"], cwd=REPO, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    preds = [json.loads(line) for line in open(os.path.join(out, "predictions.jsonl"))]
    m = json.load(open(os.path.join(out, "metrics.json")))
    assert len(preds) == m["n"] == 8
    for p in preds:
        assert set(p) >= {"question", "prompt", "generation", "prediction", "reference", "correct"}
        assert p["prompt"].startswith("Question: ") and p["prompt"].endswith("Answer:")
        assert "\nQuestion:" not in p["generation"]  # cut at the stop string
    from jaxft.data.tasks import get_task
    from jaxft.eval.scoring import is_correct

    assert m["correct"] == sum(is_correct(get_task("gsm8k").scorer, p["generation"], p["reference"]) for p in preds)
    assert abs(m["exact_match"] - 100.0 * m["correct"] / 8) < 1e-9
    assert m["ci95"][0] <= m["exact_match"] <= m["ci95"][1]
    assert m["task"] == "gsm8k" and m["shots"] == 0 and m["template"] == m["template_requested"] == "plain"
    assert m["empty_generations"] == sum(not p["generation"].strip() for p in preds)
    assert m["decoding"]["max_new_tokens"] == 48 and m["tokens_per_second"] > 0
    assert m["decoding"]["refill_group"] == 4  # --refill reached the decoder (its default is batch_size // 4)


def test_the_instruct_checkpoint_gets_its_chat_template_by_default():
    """`--template=auto` (the default) on SmolLM2-135M-Instruct: its GGUF carries a chat template, so its
    prompts are chat turns, not the plain "Question: ... Answer:" that it answers with empty turns."""
    from jaxft.data.prompts import build_prompt, resolve_template
    from jaxft.data.tasks import Example
    from jaxft.eval.settings import EvalSettings
    from jaxft.models import load_tokenizer

    tok = load_tokenizer("smollm2-135m-instruct-q4")
    assert resolve_template(EvalSettings().template, tok) == "chat"
    ex = Example("gsm8k", "test", 0, "t", "Ten minus four?", "6", "6")
    prompt = build_prompt(ex, template=EvalSettings().template, tokenizer=tok)
    assert prompt == tok.apply_chat_template([{"role": "user", "content": "Ten minus four?"}], tokenize=False,
                                             add_generation_prompt=True)
    assert "<|im_start|>assistant" in prompt and not prompt.startswith("Question:")


def test_eval_cli_rejects_bad_input(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "jaxft.eval", "--model=nope-1b", "--task=gsm8k",
                           f"--output_dir={tmp_path}"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "nope-1b" in proc.stderr and "smollm2-135m" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "jaxft.eval", "--model=smollm2-135m-instruct-q4", "--task=gsm8k",
                           "--batch_size=16", "--refill=17", f"--output_dir={tmp_path}"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "--refill=17" in proc.stderr and "refill <= batch_size" in proc.stderr
    assert not os.listdir(tmp_path)
