"""Read a study's runs directory into plain records, checking every file before anything is drawn.

Layout (written by `python -m jaxft.study`):

    RUNS/study.json                                   optional: order of models/methods/benchmarks,
                                                      and `sample_ids` {benchmark: [ids]}
    RUNS/<model>/<method>/train/metrics.jsonl         one object per optimizer step
    RUNS/<model>/<method>/train/summary.json          throughput of the whole run
    RUNS/<model>/<method>/eval/<bench>/metrics.json   n, correct, exact_match (percent), ...
    RUNS/<model>/<method>/eval/<bench>/predictions.jsonl

A cell (model, method, benchmark) whose metrics.json is absent is "missing" (not run yet), never
an error; a file that exists but cannot be trusted (bad JSON, a missing field, exact_match that is
not 100*correct/n, predictions that disagree with the counts) is a `DataError` naming the file and,
for JSON Lines, the line. Only directories holding `train/` or `eval/` count as runs, so an
output folder or stray files inside RUNS are ignored.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any

from jaxft.errors import DataError
from jaxft.eval.resume import METRICS as EVAL_METRICS
from jaxft.eval.resume import PREDICTIONS
from jaxft.jsonl import read_jsonl
from jaxft.peft.methods import METHODS as FINE_TUNED
from jaxft.rundir import RunDir, StudyCell, study_file

METHODS = ("zero-shot", "5-shot", *FINE_TUNED)
BASELINE = "zero-shot"
BENCHMARKS = ("orcamath", "gsm8k", "math", "math500", "svamp")

# metrics.json may round exact_match to two decimals; anything further off is a real mismatch.
EXACT_MATCH_TOL = 0.005 + 1e-9

_SUMMARY_KEYS = ("runtime_seconds", "samples_per_second", "tokens_per_second", "trainable_params")  # required
_PREDICTION_KEYS = ("id", "generation", "correct")


@dataclasses.dataclass
class EvalCell:
    """One evaluated (model, method, benchmark): counts plus the predictions needed for reports."""

    model: str
    method: str
    benchmark: str
    n: int
    correct: int
    exact_match: float
    path: str
    predictions: list[dict[str, Any]] | None  # None when predictions.jsonl is absent


@dataclasses.dataclass
class TrainRun:
    """Per-step curves and the end-of-run summary of one fine-tuning run."""

    model: str
    method: str
    steps: list[dict[str, Any]]
    summary: dict[str, Any] | None
    summary_path: str | None


@dataclasses.dataclass
class Runs:
    """Everything a report needs; models/methods/benchmarks are in display order."""

    root: str
    models: list[str]
    methods: list[str]
    benchmarks: list[str]
    evals: dict[tuple[str, str, str], EvalCell]
    train: dict[tuple[str, str], TrainRun]
    sample_ids: dict[str, list[str]]

    def cell(self, model: str, method: str, benchmark: str) -> EvalCell | None:
        return self.evals.get((model, method, benchmark))


def read_json(path: str) -> Any:
    """Parse one JSON file; the error names the file and where the parse failed."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: malformed JSON at line {e.lineno} column {e.colno}: "
                        f"{e.msg}") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e})") from None


def _require(obj: dict, key: str, kind: type | tuple, where: str) -> Any:
    """Numeric fields only: every caller needs a count or a rate."""
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object")
    if key not in obj:
        raise DataError(f"{where}: missing field {key!r}")
    value = obj[key]
    # bool is an int in Python, but a count of `true` is still a malformed file.
    if isinstance(value, bool) or not isinstance(value, kind):
        raise DataError(f"{where}: field {key!r} must be a number, got {value!r}")
    return value


def _read_eval(model: str, method: str, benchmark: str, folder: str) -> EvalCell | None:
    path = os.path.join(folder, EVAL_METRICS)
    if not os.path.isfile(path):
        return None
    meta = read_json(path)
    n = _require(meta, "n", int, path)
    correct = _require(meta, "correct", int, path)
    em = _require(meta, "exact_match", (int, float), path)
    if n <= 0 or not 0 <= correct <= n:
        raise DataError(f"{path}: need 0 <= correct <= n and n > 0, got correct={correct}, n={n}")
    if not math.isfinite(em) or abs(em - 100.0 * correct / n) > EXACT_MATCH_TOL:
        raise DataError(f"{path}: exact_match={em} but 100*correct/n = 100*{correct}/{n} = "
                        f"{100.0 * correct / n:.4f} (exact_match must be a percent of n)")
    predictions = None
    pred_path = os.path.join(folder, PREDICTIONS)
    if os.path.isfile(pred_path):
        predictions = _read_predictions(pred_path, n, correct)
    return EvalCell(model, method, benchmark, n, correct, float(em), path, predictions)


def _read_predictions(path: str, n: int, correct: int) -> list[dict[str, Any]]:
    rows = read_jsonl(path)
    kept = []
    for i, row in enumerate(rows, 1):
        where = f"{path}: record {i}"
        for key in _PREDICTION_KEYS:
            if key not in row:
                raise DataError(f"{where}: missing field {key!r}")
        if not isinstance(row["correct"], bool):
            raise DataError(f"{where}: field 'correct' must be true/false, got {row['correct']!r}")
        if not isinstance(row["generation"], str):
            raise DataError(f"{where}: field 'generation' must be a string")
        # The prompt (long for few-shot) is dropped: nothing in the report shows it.
        kept.append({"id": str(row["id"]), "question": row.get("question"),
                     "reference": row.get("reference"), "prediction": row.get("prediction"),
                     "generation": row["generation"], "correct": row["correct"]})
    if len(kept) != n:
        raise DataError(f"{path}: {len(kept)} predictions but metrics.json says n={n}")
    n_correct = sum(r["correct"] for r in kept)
    if n_correct != correct:
        raise DataError(f"{path}: {n_correct} predictions marked correct but metrics.json says "
                        f"correct={correct}")
    return kept


def _read_train(model: str, method: str, folder: str) -> TrainRun | None:
    metrics_path, summary_path = RunDir(folder).metrics, RunDir(folder).summary
    have_metrics, have_summary = os.path.isfile(metrics_path), os.path.isfile(summary_path)
    if not (have_metrics or have_summary):
        return None
    steps = []
    if have_metrics:
        for lineno, row in enumerate(read_jsonl(metrics_path), 1):
            step = row.get("step")
            if isinstance(step, bool) or not isinstance(step, (int, float)):
                raise DataError(f"{metrics_path}: record {lineno}: field 'step' must be a number, "
                                f"got {step!r}")
            steps.append(row)
    summary = None
    if have_summary:
        summary = read_json(summary_path)
        for key in _SUMMARY_KEYS:
            _require(summary, key, (int, float), summary_path)
    return TrainRun(model, method, steps, summary, summary_path if have_summary else None)


def _ordered(found: set[str], preferred: list[str], canonical: tuple[str, ...]) -> list[str]:
    """study.json's order first, then canonical names, then anything else alphabetically."""
    out = list(dict.fromkeys(preferred))
    out += [x for x in canonical if x in found and x not in out]
    out += sorted(x for x in found if x not in out)
    return out


def _subdirs(path: str) -> list[str]:
    return sorted(e.name for e in os.scandir(path) if e.is_dir() and not e.name.startswith("."))


def _read_study(root: str) -> dict[str, Any]:
    path = study_file(root)
    if not os.path.isfile(path):
        return {}
    study = read_json(path)
    if not isinstance(study, dict):
        raise DataError(f"{path}: expected a JSON object")
    for key in ("models", "methods", "benchmarks"):
        if key in study and not (isinstance(study[key], list)
                                 and all(isinstance(x, str) for x in study[key])):
            raise DataError(f"{path}: field {key!r} must be a list of strings")
    ids = study.get("sample_ids", {})
    if not isinstance(ids, dict) or not all(isinstance(v, list) for v in ids.values()):
        raise DataError(f"{path}: field 'sample_ids' must map benchmark -> list of ids")
    return study


def collect(root: str) -> Runs:
    """Read RUNS; raises DataError for a missing directory or any malformed file."""
    if not os.path.isdir(root):
        raise DataError(f"runs directory not found: {root}")
    study = _read_study(root)
    evals: dict[tuple[str, str, str], EvalCell] = {}
    train: dict[tuple[str, str], TrainRun] = {}
    models, methods, benchmarks = set(), set(), set()
    for model in _subdirs(root):
        for method in _subdirs(os.path.join(root, model)):
            cell_dirs = StudyCell(root, model, method)
            train_dir, eval_dir = cell_dirs.train.root, cell_dirs.evals
            if not (os.path.isdir(train_dir) or os.path.isdir(eval_dir)):
                continue
            models.add(model)
            methods.add(method)
            if os.path.isdir(train_dir):
                run = _read_train(model, method, train_dir)
                if run is not None:
                    train[(model, method)] = run
            if os.path.isdir(eval_dir):
                for bench in _subdirs(eval_dir):
                    cell = _read_eval(model, method, bench, os.path.join(eval_dir, bench))
                    if cell is not None:
                        evals[(model, method, bench)] = cell
                        benchmarks.add(bench)
    return Runs(
        root=os.path.abspath(root),
        models=_ordered(models, study.get("models", []), ()),
        methods=_ordered(methods, study.get("methods", []), METHODS),
        benchmarks=_ordered(benchmarks, study.get("benchmarks", []), BENCHMARKS),
        evals=evals,
        train=train,
        sample_ids={b: [str(i) for i in ids] for b, ids in study.get("sample_ids", {}).items()},
    )
