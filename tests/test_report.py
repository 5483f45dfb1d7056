"""`python -m jaxft.report`: every number checked against values computed by hand."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from jaxft.errors import DataError
from jaxft.report import build_report, main
from jaxft.report.collect import collect
from jaxft.report.repetition import repetition_score, summarize
from jaxft.report.tables import sample_ids
from report_fixtures import LOOP_TEXT, build_runs

Z = 1.959963984540054  # scipy.stats.norm.ppf(0.975)

# Every evaluated cell by hand: (model, method, benchmark) -> (correct, n, exact match %).
EXPECTED = {
    ("tiny-a", "zero-shot", "gsm8k"): (7, 20, 35.0),
    ("tiny-a", "zero-shot", "svamp"): (10, 20, 50.0),
    ("tiny-a", "zero-shot", "math"): (2, 20, 10.0),
    ("tiny-a", "5-shot", "gsm8k"): (9, 20, 45.0),
    ("tiny-a", "5-shot", "svamp"): (12, 20, 60.0),
    ("tiny-a", "full", "gsm8k"): (12, 20, 60.0),
    ("tiny-a", "full", "svamp"): (8, 20, 40.0),
    ("tiny-a", "full", "math"): (1, 20, 5.0),
    ("tiny-a", "lora", "gsm8k"): (7, 20, 35.0),
    ("tiny-a", "lora", "svamp"): (11, 20, 55.0),
    ("tiny-a", "lora", "math"): (3, 20, 15.0),
    ("tiny-a", "dora", "gsm8k"): (6, 20, 30.0),
    ("tiny-a", "dora", "svamp"): (10, 20, 50.0),
    ("tiny-a", "dora", "math"): (2, 20, 10.0),
    ("tiny-b", "zero-shot", "gsm8k"): (4, 25, 16.0),
    ("tiny-b", "zero-shot", "math"): (0, 25, 0.0),
    ("tiny-b", "5-shot", "gsm8k"): (5, 25, 20.0),
    ("tiny-b", "5-shot", "svamp"): (6, 25, 24.0),
    ("tiny-b", "5-shot", "math"): (1, 25, 4.0),
    ("tiny-b", "full", "gsm8k"): (3, 25, 12.0),
    ("tiny-b", "full", "svamp"): (9, 25, 36.0),
    ("tiny-b", "full", "math"): (0, 25, 0.0),
    ("tiny-b", "lora", "gsm8k"): (5, 25, 20.0),
    ("tiny-b", "lora", "svamp"): (7, 25, 28.0),
    ("tiny-c", "zero-shot", "gsm8k"): (5, 10, 50.0),
    ("tiny-c", "lora", "gsm8k"): (3, 10, 30.0),
}
# Fine-tuned cells strictly below zero-shot (equal is not below; no baseline is not marked).
EXPECTED_BELOW = {("tiny-a", "full", "svamp"), ("tiny-a", "full", "math"),
                  ("tiny-a", "dora", "gsm8k"), ("tiny-b", "full", "gsm8k"),
                  ("tiny-c", "lora", "gsm8k")}
# Fine-tuned cells with no zero-shot baseline: below_zero_shot is empty, not false.
NO_BASELINE = {("tiny-b", "full", "svamp"), ("tiny-b", "lora", "svamp")}
# samples/s ratios to full FT of the same model (tiny-c has no full run).
EXPECTED_SPEEDUP = {("tiny-a", "full"): 1.0, ("tiny-a", "lora"): 25.0 / 10.0,
                    ("tiny-a", "dora"): 20.0 / 10.0, ("tiny-b", "full"): 1.0,
                    ("tiny-b", "lora"): 6.0 / 4.0, ("tiny-b", "dora"): None,
                    ("tiny-c", "full"): None, ("tiny-c", "lora"): None, ("tiny-c", "dora"): None}
# LOOP_TEXT: 40 copies of a 5-word cycle = 200 words, 197 4-grams, 5 distinct -> 192 repeats.
LOOP_SCORE = 192 / 197
EXPECTED_REPETITION = {("tiny-a", "full", "gsm8k"): (5 * LOOP_SCORE / 20, 25.0),
                       ("tiny-b", "lora", "svamp"): (2 * LOOP_SCORE / 25, 8.0)}


def wilson_by_hand(k: int, n: int) -> tuple[float, float]:
    """The closed form (2k + z^2 -+ z sqrt(z^2 + 4k(n-k)/n)) / (2(n + z^2)), in percent."""
    root = Z * math.sqrt(Z * Z + 4 * k * (n - k) / n)
    return (100 * (2 * k + Z * Z - root) / (2 * (n + Z * Z)),
            100 * (2 * k + Z * Z + root) / (2 * (n + Z * Z)))


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    runs = build_runs(str(root / "runs"))
    return build_report(runs, str(root / "out"))


def _read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


# ---------------------------------------------------------------------------------------------
# Results table
# ---------------------------------------------------------------------------------------------

def test_wilson_by_hand_matches_known_values():
    lo, hi = wilson_by_hand(7, 20)
    assert (round(lo, 1), round(hi, 1)) == (18.1, 56.7)  # textbook value for 7/20
    assert wilson_by_hand(0, 25)[0] == pytest.approx(0.0, abs=1e-12)


def test_results_rows_equal_hand_table(report):
    rows = {(r["model"], r["method"], r["benchmark"]): r for r in report["results"]}
    assert set(rows) == set(EXPECTED)
    for key, (correct, n, em) in EXPECTED.items():
        r = rows[key]
        assert (r["correct"], r["n"]) == (correct, n), key
        assert r["exact_match"] == pytest.approx(em, abs=1e-12), key
        lo, hi = wilson_by_hand(correct, n)
        assert r["ci_low"] == pytest.approx(lo, abs=1e-9), key
        assert r["ci_high"] == pytest.approx(hi, abs=1e-9), key
    # The files' ci95 is deliberately [0, 100]: it must not have been used.
    assert rows[("tiny-a", "zero-shot", "gsm8k")]["ci_high"] < 60


def test_results_csv_long_format(report):
    rows = _read_csv(report["paths"]["results.csv"])
    assert list(rows[0]) == ["model", "method", "benchmark", "n", "correct", "exact_match",
                             "ci_low", "ci_high", "below_zero_shot", "repetition_rate",
                             "loop_rate", "empty_generations"]
    assert len(rows) == len(EXPECTED)
    for r in rows:
        key = (r["model"], r["method"], r["benchmark"])
        correct, n, em = EXPECTED[key]
        assert (int(r["correct"]), int(r["n"])) == (correct, n)
        assert float(r["exact_match"]) == pytest.approx(em, abs=1e-4)
        lo, hi = wilson_by_hand(correct, n)
        assert float(r["ci_low"]) == pytest.approx(lo, abs=1e-4)
        assert float(r["ci_high"]) == pytest.approx(hi, abs=1e-4)
        if key in EXPECTED_BELOW:
            assert r["below_zero_shot"] == "true", key
        elif key[1] in ("full", "lora", "dora") and key not in NO_BASELINE:
            assert r["below_zero_shot"] == "false", key
        else:
            assert r["below_zero_shot"] == "", key
        rep, loops = EXPECTED_REPETITION.get(key, (0.0, 0.0))
        if key == ("tiny-b", "5-shot", "math"):  # metrics.json without predictions.jsonl
            assert r["repetition_rate"] == r["loop_rate"] == ""
        else:
            assert float(r["repetition_rate"]) == pytest.approx(rep, abs=1e-4), key
            assert float(r["loop_rate"]) == pytest.approx(loops, abs=1e-4), key


def _md_grid(path):
    """{(model, method): {benchmark: cell text}} from a Markdown table."""
    lines = [l for l in open(path, encoding="utf-8").read().splitlines() if l.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    grid = {}
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        grid[(cells[0], cells[1])] = dict(zip(header[2:], cells[2:]))
    return header, grid


def test_results_md_cells_and_marks(report):
    header, grid = _md_grid(report["paths"]["results.md"])
    assert header == ["model", "method", "gsm8k", "svamp", "math"]  # study.json order
    assert len(grid) == 3 * 5
    marked = set()
    for (model, method), cells in grid.items():
        for bench, text in cells.items():
            key = (model, method, bench)
            if key not in EXPECTED:
                assert text == "—", key
                continue
            correct, n, em = EXPECTED[key]
            lo, hi = wilson_by_hand(correct, n)
            assert text.startswith(f"{em:.1f} [{lo:.1f}, {hi:.1f}] (n={n})"), (key, text)
            if text.endswith("▼"):
                marked.add(key)
    assert marked == EXPECTED_BELOW
    text = open(report["paths"]["results.md"], encoding="utf-8").read()
    assert "▼ marks a fine-tuned run" in text and "Wilson" in text
    assert grid[("tiny-a", "zero-shot")]["gsm8k"] == "35.0 [18.1, 56.7] (n=20)"


def test_results_tex(report):
    tex = open(report["paths"]["results.tex"], encoding="utf-8").read()
    assert tex.startswith("\\begin{tabular}{llrrr}") and "\\end{tabular}" in tex
    rows = [l for l in tex.splitlines() if l.endswith("\\\\")][1:]  # skip the header row
    assert len(rows) == 15
    marked = set()
    for line in rows:
        cells = [c.strip() for c in line[:-2].split(" & ")]
        for bench, cell in zip(["gsm8k", "svamp", "math"], cells[2:]):
            key = (cells[0], cells[1], bench)
            assert (cell == "---") == (key not in EXPECTED), (key, cell)
            if cell.endswith("$\\downarrow$"):
                marked.add(key)
    assert marked == EXPECTED_BELOW
    assert "$\\downarrow$ marks" in tex and "95\\%" in tex


def test_tex_escaping():
    from jaxft.report.tables import tex_escape
    assert tex_escape("a_b & 50% #1 $x {y} ~^\\") == (
        "a\\_b \\& 50\\% \\#1 \\$x \\{y\\} \\textasciitilde{}\\textasciicircum{}\\textbackslash{}")


# ---------------------------------------------------------------------------------------------
# Throughput
# ---------------------------------------------------------------------------------------------

def test_throughput_speedups(report):
    rows = {(r["model"], r["method"]): r for r in report["throughput"]}
    assert set(rows) == set(EXPECTED_SPEEDUP)
    for key, speed in EXPECTED_SPEEDUP.items():
        if speed is None:
            assert rows[key]["speedup_vs_full"] is None, key
        else:
            assert rows[key]["speedup_vs_full"] == pytest.approx(speed, rel=1e-12), key
    assert rows[("tiny-a", "lora")]["runtime_seconds"] == 60.0
    assert rows[("tiny-a", "lora")]["trainable_params"] == 20_000
    csv_rows = {(r["model"], r["method"]): r for r in _read_csv(report["paths"]["throughput.csv"])}
    assert float(csv_rows[("tiny-b", "lora")]["speedup_vs_full"]) == pytest.approx(1.5)
    assert csv_rows[("tiny-c", "lora")]["speedup_vs_full"] == ""
    _, grid = _md_grid(report["paths"]["throughput.md"])
    assert grid[("tiny-a", "lora")]["speedup vs Full FT"] == "2.50×"
    assert grid[("tiny-a", "full")]["samples/s"] == "10.00"
    assert grid[("tiny-c", "lora")]["speedup vs Full FT"] == "—"
    assert grid[("tiny-b", "dora")]["runtime (s)"] == "—"
    tex = open(report["paths"]["throughput.tex"], encoding="utf-8").read()
    assert "2.00$\\times$" in tex and "\\begin{tabular}" in tex


# ---------------------------------------------------------------------------------------------
# Figures and index
# ---------------------------------------------------------------------------------------------

EXPECTED_FIGURES = ["loss_tiny-a.png", "grad_norm_tiny-a.png", "loss_tiny-b.png",
                    "grad_norm_tiny-b.png", "loss_tiny-c.png", "grad_norm_tiny-c.png",
                    "exact_match_gsm8k.png", "exact_match_svamp.png", "exact_match_math.png",
                    "cliff_gsm8k.png", "cost_gsm8k.png", "cliff_svamp.png", "cost_svamp.png",
                    "cliff_math.png", "cost_math.png"]


def test_figures_are_valid_pngs(report):
    import matplotlib.image as mpimg

    assert sorted(report["figures"]) == sorted(EXPECTED_FIGURES)
    for name in EXPECTED_FIGURES:
        path = os.path.join(report["out_dir"], name)
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n", name
        img = mpimg.imread(path)
        assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 300, name
        rgb = (img[..., :3] * 255).round().astype(np.uint32)
        packed = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
        assert len(np.unique(packed)) > 10, name  # lines, bars and text, not a blank canvas


def test_index_links_every_file(report):
    out = report["out_dir"]
    index = open(os.path.join(out, "index.md"), encoding="utf-8").read()
    links = set(re.findall(r"\]\(([^)]+)\)", index))
    produced = set(os.listdir(out)) - {"index.md"}
    assert produced == links, produced ^ links
    for name in EXPECTED_FIGURES:
        assert re.search(r"!\[[^\]]*\]\(" + re.escape(name) + r"\)", index), name
    for link in links:
        assert not os.path.isabs(link) and os.path.isfile(os.path.join(out, link)), link
    assert "Runs directory:" in index and "Generated:" in index
    assert not [f for f in os.listdir(out) if ".tmp-" in f]  # no temporaries left behind


# ---------------------------------------------------------------------------------------------
# Samples and repetition
# ---------------------------------------------------------------------------------------------

def test_samples(report):
    text = open(report["paths"]["samples.md"], encoding="utf-8").read()
    # study.json picks gsm8k ids; svamp and math fall back to the first 3 shared ids.
    for model in ("tiny-a", "tiny-b"):
        for pid in ("gsm8k-4", "gsm8k-19", "svamp-0", "svamp-1", "svamp-2", "math-0"):
            if model == "tiny-b" and pid.startswith("math"):
                continue
            assert f"### {model} · problem `{pid}`" in text, (model, pid)
    assert "svamp-3" not in text
    assert "### tiny-c · problem `gsm8k-19`" in text
    assert "_No method has a prediction for this id._" in text  # tiny-c has 10 problems
    assert "[... truncated: 720 characters in all]" in text  # LOOP_TEXT in tiny-a/full
    assert f"**full** — ✗ incorrect, loop (repetition {LOOP_SCORE:.2f})" in text
    assert "**lora** — ✓ correct (prediction: `5`)" in text
    assert "> [gsm8k] What is 4 + 1?" in text and "**Reference:** `5`" in text


def test_sample_ids_without_study_json(tmp_path):
    runs = collect(build_runs(str(tmp_path / "runs"), with_study=False))
    assert runs.models == ["tiny-a", "tiny-b", "tiny-c"]
    assert runs.methods == ["zero-shot", "5-shot", "full", "lora", "dora"]
    assert runs.benchmarks == ["gsm8k", "math", "svamp"]  # canonical order
    # tiny-c has only 10 gsm8k problems, still a superset of the first 3.
    assert sample_ids(runs, "gsm8k") == {m: ["gsm8k-0", "gsm8k-1", "gsm8k-2"]
                                         for m in ("tiny-a", "tiny-b", "tiny-c")}


def test_repetition_score_hand_values():
    assert repetition_score("") == 0.0
    assert repetition_score("one two three") == 0.0  # fewer than n words
    assert repetition_score("the cat sat on the mat and then it slept") == 0.0
    assert repetition_score(LOOP_TEXT) == pytest.approx(192 / 197)
    assert repetition_score("go " * 1000) == pytest.approx(996 / 997)
    # Half loop: ten distinct words said twice. 17 4-grams; those starting in the second copy
    # (positions 10..16) repeat the first copy's -> 7/17.
    words = " ".join(f"w{i}" for i in range(10))
    assert repetition_score(words + " " + words) == pytest.approx(7 / 17)
    # Case and spacing do not matter; n is a parameter.
    assert repetition_score("a b a b", n=2) == pytest.approx(1 / 3)
    assert repetition_score("A B\na   b", n=2) == pytest.approx(1 / 3)
    assert summarize([LOOP_TEXT, "plain text here", ""]) == pytest.approx((192 / 197 / 3, 100 / 3))
    assert summarize([]) is None


def test_repetition_md(report):
    _, grid = _md_grid(report["paths"]["repetition.md"])
    assert grid[("tiny-a", "full")]["gsm8k"] == f"{5 * LOOP_SCORE / 20:.3f} (loops 25.0%)"
    assert grid[("tiny-b", "lora")]["svamp"] == f"{2 * LOOP_SCORE / 25:.3f} (loops 8.0%)"
    assert grid[("tiny-a", "lora")]["gsm8k"] == "0.000 (loops 0.0%)"
    assert grid[("tiny-b", "5-shot")]["math"] == "—"
    assert grid[("tiny-b", "dora")]["gsm8k"] == "—"


# ---------------------------------------------------------------------------------------------
# Bad input and the CLI
# ---------------------------------------------------------------------------------------------

def _one_cell(root, metrics=None, predictions=None):
    folder = os.path.join(root, "m", "zero-shot", "eval", "gsm8k")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "metrics.json"), "w") as f:
        f.write(metrics if metrics is not None else
                json.dumps({"task": "gsm8k", "n": 2, "correct": 1, "exact_match": 50.0}))
    if predictions is not None:
        with open(os.path.join(folder, "predictions.jsonl"), "w") as f:
            f.write(predictions)
    return folder


def test_malformed_metrics_json_names_the_file(tmp_path):
    folder = _one_cell(str(tmp_path), metrics='{"n": 2, "correct": ')
    with pytest.raises(DataError, match=re.escape(os.path.join(folder, "metrics.json"))):
        build_report(str(tmp_path), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_malformed_predictions_line_names_file_and_line(tmp_path):
    good = json.dumps({"id": "a", "generation": "x", "correct": True})
    folder = _one_cell(str(tmp_path), predictions=good + "\n{oops\n")
    path = os.path.join(folder, "predictions.jsonl")
    with pytest.raises(DataError, match=re.escape(path) + ":2:"):
        collect(str(tmp_path))


@pytest.mark.parametrize("metrics, message", [
    ({"n": 20, "correct": 7, "exact_match": 0.35}, "exact_match=0.35"),  # a fraction, not %
    ({"n": 20, "correct": 7, "exact_match": 40.0}, "100\\*correct/n"),
    ({"n": 20, "exact_match": 35.0}, "missing field 'correct'"),
    ({"n": 0, "correct": 0, "exact_match": 0.0}, "n > 0"),
])
def test_inconsistent_metrics_name_the_file(tmp_path, metrics, message):
    folder = _one_cell(str(tmp_path), metrics=json.dumps(metrics))
    with pytest.raises(DataError, match=message) as err:
        collect(str(tmp_path))
    assert os.path.join(folder, "metrics.json") in str(err.value)


def test_predictions_must_agree_with_counts(tmp_path):
    rows = [{"id": "a", "generation": "x", "correct": True},
            {"id": "b", "generation": "y", "correct": True}]  # 2 correct, metrics says 1
    _one_cell(str(tmp_path), predictions="".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match="2 predictions marked correct"):
        collect(str(tmp_path))


def test_cli_exit_codes(tmp_path, capsys):
    assert main(["--runs", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "runs directory not found" in capsys.readouterr().err
    assert main(["--out", str(tmp_path / "o")]) == 2  # --runs missing: argparse's error, one line
    assert capsys.readouterr().err.startswith("error: the following arguments are required: --runs (usage: ")
    _one_cell(str(tmp_path / "bad"), metrics="not json")
    assert main(["--runs", str(tmp_path / "bad"), "--out", str(tmp_path / "o")]) == 1
    assert "metrics.json" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_python_dash_m_writes_a_report(tmp_path):
    """The real entry point, on a one-cell study (no training runs: no curves, no crash)."""
    rows = [{"id": "a", "generation": "The answer is 3.", "correct": True},
            {"id": "b", "generation": "The answer is 4.", "correct": False}]
    _one_cell(str(tmp_path / "runs"), predictions="".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "jaxft.report", f"--runs={tmp_path / 'runs'}",
                           f"--out={out}"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert sorted(os.listdir(out)) == sorted(
        ["index.md", "results.md", "results.csv", "results.tex", "throughput.md",
         "throughput.csv", "throughput.tex", "repetition.md", "samples.md",
         "exact_match_gsm8k.png"])
    assert "50.0 [" in (out / "results.md").read_text()


def test_throughput_rows_mark_runs_that_shared_the_machine():
    from jaxft.report.tables import SHARED_LOAD_PER_CPU, machine_state, throughput_md

    assert machine_state({"host_load": 2.4, "host_cpus": 2}) == "quiet"
    assert machine_state({"host_load": 3.5, "host_cpus": 2}).startswith("shared (load 3.5")
    assert machine_state({"host_load": SHARED_LOAD_PER_CPU * 2 + 0.01, "host_cpus": 2}).startswith("shared")
    assert machine_state({}) == "unknown"  # runs from before the load was recorded
    row = {"model": "m", "method": "lora", "runtime_seconds": 10.0, "samples_per_second": 1.0,
           "tokens_per_second": 200.0, "trainable_params": 10, "total_params": 100, "speedup_vs_full": None,
           "machine": "shared (load 4.1 on 2 CPUs)"}
    assert "| shared (load 4.1 on 2 CPUs) |" in throughput_md([row])
