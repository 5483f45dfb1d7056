"""A synthetic runs directory with hand-chosen counts, so report tests can check every number.

Three models, all five methods, three benchmarks, and deliberate holes: a cell never run, a whole
method directory absent, a model with only some runs, a cell with metrics.json but no
predictions.jsonl. Generations are either plain one-liners (repetition 0) or a long loop of a
5-word cycle (LOOP_TEXT), whose repetition score is known in closed form.
"""

from __future__ import annotations

import json
import math
import os

BENCHMARKS = ["gsm8k", "svamp", "math"]
METHODS = ["zero-shot", "5-shot", "full", "lora", "dora"]
MODELS = ["tiny-a", "tiny-b", "tiny-c"]

# (model, method, benchmark) -> (correct, n); absent keys are cells that were never run.
COUNTS = {
    ("tiny-a", "zero-shot", "gsm8k"): (7, 20),
    ("tiny-a", "zero-shot", "svamp"): (10, 20),
    ("tiny-a", "zero-shot", "math"): (2, 20),
    ("tiny-a", "5-shot", "gsm8k"): (9, 20),
    ("tiny-a", "5-shot", "svamp"): (12, 20),
    ("tiny-a", "full", "gsm8k"): (12, 20),
    ("tiny-a", "full", "svamp"): (8, 20),
    ("tiny-a", "full", "math"): (1, 20),
    ("tiny-a", "lora", "gsm8k"): (7, 20),
    ("tiny-a", "lora", "svamp"): (11, 20),
    ("tiny-a", "lora", "math"): (3, 20),
    ("tiny-a", "dora", "gsm8k"): (6, 20),
    ("tiny-a", "dora", "svamp"): (10, 20),
    ("tiny-a", "dora", "math"): (2, 20),
    ("tiny-b", "zero-shot", "gsm8k"): (4, 25),
    ("tiny-b", "zero-shot", "math"): (0, 25),
    ("tiny-b", "5-shot", "gsm8k"): (5, 25),
    ("tiny-b", "5-shot", "svamp"): (6, 25),
    ("tiny-b", "5-shot", "math"): (1, 25),
    ("tiny-b", "full", "gsm8k"): (3, 25),
    ("tiny-b", "full", "svamp"): (9, 25),
    ("tiny-b", "full", "math"): (0, 25),
    ("tiny-b", "lora", "gsm8k"): (5, 25),
    ("tiny-b", "lora", "svamp"): (7, 25),
    ("tiny-c", "zero-shot", "gsm8k"): (5, 10),
    ("tiny-c", "lora", "gsm8k"): (3, 10),
}
NO_PREDICTIONS = {("tiny-b", "5-shot", "math")}
# Cells where the last k generations are LOOP_TEXT instead of a one-liner.
LOOPS = {("tiny-a", "full", "gsm8k"): 5, ("tiny-b", "lora", "svamp"): 2}
LOOP_TEXT = "and then we add 2 " * 40  # 200 words, 720 characters: also tests truncation

# Training summaries: (runtime_seconds, samples_per_second, tokens_per_second, trainable_params).
SUMMARIES = {
    ("tiny-a", "full"): (120.0, 10.0, 5120.0, 1_000_000),
    ("tiny-a", "lora"): (60.0, 25.0, 12800.0, 20_000),
    ("tiny-a", "dora"): (75.0, 20.0, 10240.0, 21_000),
    ("tiny-b", "full"): (200.0, 4.0, 2048.0, 3_000_000),
    ("tiny-b", "lora"): (150.0, 6.0, 3072.0, 40_000),
    ("tiny-c", "lora"): (30.0, 8.0, 4096.0, 5_000),
}
TOTAL_PARAMS = {"tiny-a": 1_000_000, "tiny-b": 3_000_000, "tiny-c": 500_000}
TRAIN_STEPS = {"tiny-a": 60, "tiny-b": 12, "tiny-c": 8}
# gsm8k-19 is a loop in tiny-a/full and absent for tiny-c (10 problems).
STUDY_SAMPLE_IDS = {"gsm8k": ["gsm8k-4", "gsm8k-19"]}


def _write_json(path: str, obj) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f)


def _write_jsonl(path: str, rows) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def _predictions(key, correct: int, n: int) -> list[dict]:
    model, method, bench = key
    loops = LOOPS.get(key, 0)
    rows = []
    for i in range(n):
        ok = i < correct
        answer = str(i + 1) if ok else str(i + 1000)
        text = f"Adding one gives {answer}. The answer is {answer}."
        if i >= n - loops:
            text = LOOP_TEXT
        rows.append({"id": f"{bench}-{i}", "question": f"[{bench}] What is {i} + 1?",
                     "prompt": f"Question: What is {i} + 1?\nAnswer:", "generation": text,
                     "prediction": answer, "reference": str(i + 1), "correct": ok})
    return rows


def _steps(model: str, method: str) -> list[dict]:
    """Deterministic curves: loss decays with a wiggle; adapters have far smaller grad norms."""
    scale = {"full": 1.0, "lora": 0.05, "dora": 0.08}[method]
    decay = {"full": 12.0, "lora": 25.0, "dora": 20.0}[method]
    rows = []
    for s in range(1, TRAIN_STEPS[model] + 1):
        loss = 0.6 + 1.8 * math.exp(-s / decay) + 0.08 * math.sin(1.7 * s + decay)
        grad = scale * (2.0 + 1.5 * math.exp(-s / 20) + 0.3 * math.cos(1.3 * s))
        rows.append({"step": s, "loss": loss, "grad_norm": None if s == 3 else grad,
                     "update_norm": 0.01 * grad, "learning_rate": 1e-4, "tokens_per_second": 1000.0,
                     "step_time": 0.5, "mfu": None, "examples_per_second": 8.0})
    return rows


def build_runs(root: str, with_study: bool = True) -> str:
    """Write the synthetic study under `root`; returns `root`."""
    for key, (correct, n) in COUNTS.items():
        model, method, bench = key
        folder = os.path.join(root, model, method, "eval", bench)
        lo_hi = [0.0, 100.0]  # deliberately wrong: the report must recompute the interval
        _write_json(os.path.join(folder, "metrics.json"), {
            "task": bench, "shots": 5 if method == "5-shot" else 0, "n": n, "correct": correct,
            "exact_match": 100.0 * correct / n, "ci95": lo_hi, "model": model,
            "template": "plain", "decoding": {"greedy": True, "max_new_tokens": 256},
            "tokens_per_second": 100.0, "seconds": 1.0})
        if key not in NO_PREDICTIONS:
            _write_jsonl(os.path.join(folder, "predictions.jsonl"), _predictions(key, correct, n))
    for (model, method), (runtime, sps, tps, trainable) in SUMMARIES.items():
        folder = os.path.join(root, model, method, "train")
        _write_jsonl(os.path.join(folder, "metrics.jsonl"), _steps(model, method))
        _write_json(os.path.join(folder, "summary.json"), {
            "runtime_seconds": runtime, "steps": TRAIN_STEPS[model], "examples": 1000,
            "samples_per_second": sps, "tokens_per_second": tps, "method": method,
            "trainable_params": trainable, "total_params": TOTAL_PARAMS[model]})
    if with_study:
        _write_json(os.path.join(root, "study.json"), {
            "models": MODELS, "methods": METHODS, "benchmarks": BENCHMARKS,
            "sample_ids": STUDY_SAMPLE_IDS})
    return root


# ---------------------------------------------------------------------------------------------
# Two model sizes, every method, two benchmarks, no holes: the grid of the cliff and cost
# figures and of the side-by-side tables (tests/test_report_compare.py).
# ---------------------------------------------------------------------------------------------

SIZES = {"small": 1_000_000, "large": 4_000_000}  # total_params of Full FT
# (model, method, benchmark) -> (correct, n)
SIZE_COUNTS = {
    ("small", "zero-shot", "gsm8k"): (4, 20), ("small", "5-shot", "gsm8k"): (6, 20),
    ("small", "full", "gsm8k"): (2, 20), ("small", "lora", "gsm8k"): (5, 20),
    ("small", "dora", "gsm8k"): (7, 20),
    ("large", "zero-shot", "gsm8k"): (8, 20), ("large", "5-shot", "gsm8k"): (9, 20),
    ("large", "full", "gsm8k"): (12, 20), ("large", "lora", "gsm8k"): (11, 20),
    ("large", "dora", "gsm8k"): (10, 20),
    ("small", "zero-shot", "svamp"): (3, 10), ("small", "5-shot", "svamp"): (3, 10),
    ("small", "full", "svamp"): (1, 10), ("small", "lora", "svamp"): (4, 10),
    ("small", "dora", "svamp"): (4, 10),
    ("large", "zero-shot", "svamp"): (5, 10), ("large", "5-shot", "svamp"): (6, 10),
    ("large", "full", "svamp"): (7, 10), ("large", "lora", "svamp"): (6, 10),
    ("large", "dora", "svamp"): (6, 10),
}
# (model, method) -> (runtime_seconds, samples_per_second, device_count or None)
SIZE_SUMMARIES = {
    ("small", "full"): (1800.0, 10.0, None), ("small", "lora"): (900.0, 20.0, None),
    ("small", "dora"): (1200.0, 15.0, None), ("large", "full"): (7200.0, 2.5, 2),
    ("large", "lora"): (3600.0, 5.0, 2), ("large", "dora"): (5400.0, 10.0 / 3, 2),
}
SIZE_ADAPTER_PARAMS = {"full": 0, "lora": 20_000, "dora": 21_000}


def build_size_runs(root: str) -> str:
    """Write the two-size grid under `root` (eval cells and train summaries); returns `root`."""
    for key, (correct, n) in SIZE_COUNTS.items():
        model, method, bench = key
        folder = os.path.join(root, model, method, "eval", bench)
        _write_json(os.path.join(folder, "metrics.json"), {
            "task": bench, "n": n, "correct": correct, "exact_match": 100.0 * correct / n})
        _write_jsonl(os.path.join(folder, "predictions.jsonl"), _predictions(key, correct, n))
    for (model, method), (runtime, sps, devices) in SIZE_SUMMARIES.items():
        summary = {"runtime_seconds": runtime, "samples_per_second": sps,
                   "tokens_per_second": sps * 512, "method": method,
                   "trainable_params": SIZES[model] if method == "full"
                   else SIZE_ADAPTER_PARAMS[method],
                   "total_params": SIZES[model] + SIZE_ADAPTER_PARAMS[method]}
        if devices is not None:
            summary["device_count"] = devices
        _write_json(os.path.join(root, model, method, "train", "summary.json"), summary)
    _write_json(os.path.join(root, "study.json"), {
        "models": list(SIZES), "methods": METHODS, "benchmarks": ["gsm8k", "svamp"]})
    return root


# ---------------------------------------------------------------------------------------------
# The paper's own cells at its sizes (configs/study_paper_cpu.py) and the smaller CPU grid
# (configs/study_smollm2_cpu.py), with made-up counts: the side-by-side tables of
# tests/test_report_paper.py and the kept-inputs rebuild.
# ---------------------------------------------------------------------------------------------

PAPER_MODEL = "smollm2-135m-instruct"  # the run name both CPU studies use
CHECKPOINT = "smollm2-135m-instruct-q4"
# (method, benchmark) -> (correct, n, empty generations); None = the study has not reached it.
PAPER_CPU_COUNTS = {
    ("zero-shot", "gsm8k"): (25, 1319, 0), ("zero-shot", "svamp"): (12, 300, 3),
    ("zero-shot", "math500"): (30, 500, 0), ("5-shot", "gsm8k"): (30, 1319, 7),
    ("5-shot", "svamp"): (5, 300, 0), ("5-shot", "math500"): None,
}
# Cells whose metrics.json records empty_generations (the others: counted from predictions).
EMPTY_IN_METRICS = {("5-shot", "gsm8k")}
GRID_COUNTS = {"zero-shot": 6, "5-shot": 2, "full": 2, "lora": 0, "dora": 0}  # of 200 GSM8K
GRID_TRAIN_EXAMPLES = 1000


def _cell_predictions(bench: str, correct: int, n: int, empty: int, reference=None) -> list[dict]:
    rows = []
    for i in range(n):
        ok = i < correct
        text = "" if i >= n - empty else f"The answer is {i + 1 if ok else i + 1000}."
        rows.append({"id": f"{bench}-test-{i}", "question": f"What is {i} + 1?",
                     "prompt": "<|im_start|>user\n" + "exemplar " * 50 + f"What is {i} + 1?",
                     "generation": text, "prediction": None if not text else str(i + 1),
                     "reference": str(i + 1), "correct": ok})
    return rows


def _paper_cell(root: str, method: str, bench: str, correct: int, n: int, empty: int,
                record_empty: bool) -> None:
    folder = os.path.join(root, PAPER_MODEL, method, "eval", bench)
    metrics = {"task": bench, "split": "test", "shots": 5 if method == "5-shot" else 0, "n": n,
               "correct": correct, "exact_match": 100.0 * correct / n, "model": CHECKPOINT,
               "template": "chat"}
    if record_empty:
        metrics["empty_generations"] = empty
    _write_json(os.path.join(folder, "metrics.json"), metrics)
    # An empty generation is never scored correct here, so the empties come after the correct ones.
    _write_jsonl(os.path.join(folder, "predictions.jsonl"),
                 _cell_predictions(bench, correct, n, 0 if record_empty else empty))


def build_paper_cpu_runs(root: str) -> str:
    """zero-shot and 5-shot on GSM8K 1,319 / SVAMP 300 / MATH-500, one cell unfinished."""
    for (method, bench), counts in PAPER_CPU_COUNTS.items():
        if counts is None:  # what an unfinished evaluation leaves: no metrics.json yet
            folder = os.path.join(root, PAPER_MODEL, method, "eval", bench)
            _write_jsonl(os.path.join(folder, "predictions.partial.jsonl"), [{"index": 0}])
            continue
        _paper_cell(root, method, bench, *counts, (method, bench) in EMPTY_IN_METRICS)
    _write_json(os.path.join(root, "study.json"), {
        "models": [PAPER_MODEL], "methods": ["zero-shot", "5-shot"],
        "benchmarks": ["gsm8k", "svamp", "math500"], "sample_ids": {}})
    return root


def build_grid_runs(root: str, protocol: str = "") -> str:
    """The smaller CPU grid: every method on 200 GSM8K problems, training on 1,000 GSM8K rows."""
    for method, correct in GRID_COUNTS.items():
        _paper_cell(root, method, "gsm8k", correct, 200, 0, False)
        if method in ("full", "lora", "dora"):
            folder = os.path.join(root, PAPER_MODEL, method, "train")
            _write_json(os.path.join(folder, "summary.json"), {
                "runtime_seconds": 1500.0, "samples_per_second": 0.7, "tokens_per_second": 120.0,
                "trainable_params": 134_515_008 if method == "full" else 2_442_240,
                "total_params": 134_515_008, "examples": GRID_TRAIN_EXAMPLES,
                "examples_per_step": 64, "method": method})
            _write_jsonl(os.path.join(folder, "metrics.jsonl"), _steps("tiny-c", method))
            _write_json(os.path.join(folder, "jaxft_config.json"),
                        {"method": method, "data": {"task": "gsm8k", "limit": GRID_TRAIN_EXAMPLES}})
            _write_json(os.path.join(folder, "data_stats.json"), {"examples": GRID_TRAIN_EXAMPLES})
            os.makedirs(os.path.join(folder, "checkpoints", "16"), exist_ok=True)  # never kept
    study = {"models": [PAPER_MODEL], "methods": list(GRID_COUNTS), "benchmarks": ["gsm8k"]}
    if protocol:
        study["protocol"] = protocol
    _write_json(os.path.join(root, "study.json"), study)
    return root
