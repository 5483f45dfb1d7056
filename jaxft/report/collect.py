"""Read a study's runs directory into plain records, checking every file before anything is drawn.

Layout (written by `python -m jaxft.study`):

    RUNS/study.json                                   optional: order of models/methods/benchmarks,
                                                      `sample_ids` {benchmark: [ids]}, `protocol`
    RUNS/<model>/<method>/train/metrics.jsonl         one object per optimizer step
    RUNS/<model>/<method>/train/summary.json          throughput of the whole run
    RUNS/<model>/<method>/train/jaxft_config.json     optional: the training set's task
    RUNS/<model>/<method>/eval/<bench>/metrics.json   n, correct, exact_match (percent), ...
    RUNS/<model>/<method>/eval/<bench>/predictions.jsonl

A cell (model, method, benchmark) whose metrics.json is absent is "missing" (not run yet), never
an error; a file that exists but cannot be trusted (bad JSON, a missing field, exact_match that is
not 100*correct/n, predictions that disagree with the counts) is a `DataError` naming the file and,
for JSON Lines, the line. Only directories holding `train/` or `eval/` count as runs, so an
output folder or stray files inside RUNS are ignored. `Runs.inputs` lists every file read, so a
report's inputs can be kept beside it (`jaxft.report.keep`).
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
from jaxft.rundir import CONFIG as CONFIG_FILE
from jaxft.rundir import DATA_STATS as DATA_STATS_FILE
from jaxft.rundir import METRICS as METRICS_FILE
from jaxft.rundir import SUMMARY as SUMMARY_FILE
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
    # metrics.json's count, else the blank generations of predictions.jsonl; None: neither
    empty_generations: int | None = None
    template: str | None = None  # prompt template of the evaluation (metrics.json)
    checkpoint: str | None = None  # the weights it evaluated (metrics.json "model")


@dataclasses.dataclass
class TrainRun:
    """Per-step curves and the end-of-run summary of one fine-tuning run."""

    model: str
    method: str
    steps: list[dict[str, Any]]
    summary: dict[str, Any] | None
    summary_path: str | None
    train_task: str | None = None  # the training set's task (jaxft_config.json data.task)


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
    protocol: str = ""  # study.json's description of the grid's protocol, shown with the tables
    inputs: list[str] = dataclasses.field(default_factory=list)  # files read, relative to root

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
    empty = None
    if "empty_generations" in meta:
        empty = _require(meta, "empty_generations", int, path)
        if not 0 <= empty <= n:
            raise DataError(f"{path}: empty_generations={empty} must lie in [0, n={n}]")
    predictions = None
    pred_path = os.path.join(folder, PREDICTIONS)
    if os.path.isfile(pred_path):
        predictions = _read_predictions(pred_path, n, correct)
        if empty is None:
            empty = sum(is_empty(p["generation"]) for p in predictions)
    template, checkpoint = (meta.get(k) if isinstance(meta.get(k), str) else None
                            for k in ("template", "model"))
    return EvalCell(model, method, benchmark, n, correct, float(em), path, predictions, empty,
                    template, checkpoint)


def is_empty(generation: str) -> bool:
    """A generation with nothing but whitespace: the model ended its turn at once."""
    return not generation.strip()


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
    paths = RunDir(folder)
    have_metrics, have_summary = os.path.isfile(paths.metrics), os.path.isfile(paths.summary)
    if not (have_metrics or have_summary):
        return None
    steps = []
    if have_metrics:
        for lineno, row in enumerate(read_jsonl(paths.metrics), 1):
            step = row.get("step")
            if isinstance(step, bool) or not isinstance(step, (int, float)):
                raise DataError(f"{paths.metrics}: record {lineno}: field 'step' must be a number, "
                                f"got {step!r}")
            steps.append(row)
    summary = None
    if have_summary:
        summary = read_json(paths.summary)
        for key in _SUMMARY_KEYS:
            _require(summary, key, (int, float), paths.summary)
    task = None
    if os.path.isfile(paths.config):
        data = read_json(paths.config)
        data = data.get("data") if isinstance(data, dict) else None
        task = data.get("task") if isinstance(data, dict) else None
        if task is not None and not isinstance(task, str):
            raise DataError(f"{paths.config}: field 'data.task' must be a task name, got {task!r}")
    return TrainRun(model, method, steps, summary, paths.summary if have_summary else None, task)


# Files of a training workdir that a report reads, or keeps for the record (data_stats.json).
TRAIN_INPUTS = (METRICS_FILE, SUMMARY_FILE, CONFIG_FILE, DATA_STATS_FILE)


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
    if not isinstance(study.get("protocol", ""), str):
        raise DataError(f"{path}: field 'protocol' must be a string")
    return study


def collect(root: str) -> Runs:
    """Read RUNS; raises DataError for a missing directory or any malformed file."""
    if not os.path.isdir(root):
        raise DataError(f"runs directory not found: {root}")
    study = _read_study(root)
    inputs = [os.path.relpath(study_file(root), root)] if os.path.isfile(study_file(root)) else []
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
                    inputs += _present(root, train_dir, TRAIN_INPUTS)
            if os.path.isdir(eval_dir):
                for bench in _subdirs(eval_dir):
                    folder = os.path.join(eval_dir, bench)
                    cell = _read_eval(model, method, bench, folder)
                    if cell is not None:
                        evals[(model, method, bench)] = cell
                        benchmarks.add(bench)
                        inputs += _present(root, folder, (EVAL_METRICS, PREDICTIONS))
    return Runs(
        root=os.path.abspath(root),
        models=_ordered(models, study.get("models", []), ()),
        methods=_ordered(methods, study.get("methods", []), METHODS),
        benchmarks=_ordered(benchmarks, study.get("benchmarks", []), BENCHMARKS),
        evals=evals,
        train=train,
        sample_ids={b: [str(i) for i in ids] for b, ids in study.get("sample_ids", {}).items()},
        protocol=study.get("protocol", ""),
        inputs=inputs,
    )


def _present(root: str, folder: str, names: tuple[str, ...]) -> list[str]:
    return [os.path.relpath(os.path.join(folder, n), root) for n in names
            if os.path.isfile(os.path.join(folder, n))]
