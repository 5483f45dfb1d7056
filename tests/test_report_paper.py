"""`--compare=paper` on the two CPU studies' layouts (made-up counts), and `--keep_inputs`.

The paper's cells at its own sizes (configs/study_paper_cpu.py: zero-/5-shot on GSM8K 1,319,
SVAMP 300, MATH-500, one cell unfinished) and the smaller CPU grid (configs/study_smollm2_cpu.py:
every method on 200 GSM8K problems, training on 1,000 GSM8K rows) against the real typed Table 2:
every number is checked against Wilson's closed form and the paper's values typed here by hand.
"""

from __future__ import annotations

import csv
import json
import os

import pytest

from jaxft.report import build_report, main
from jaxft.report.paper import STUDY
from report_fixtures import (CHECKPOINT, EMPTY_IN_METRICS, GRID_COUNTS, PAPER_CPU_COUNTS,
                             PAPER_MODEL, build_grid_runs, build_paper_cpu_runs)
from test_report_compare import _md_sections
from test_report import wilson_by_hand

GRID_PROTOCOL = "one epoch over the first 1,000 GSM8K-train examples, 200 GSM8K test problems"


@pytest.fixture(scope="module")
def paper_cpu(tmp_path_factory):
    root = tmp_path_factory.mktemp("paper_cpu")
    runs = build_paper_cpu_runs(str(root / "runs"))
    return build_report(runs, str(root / "out"), "paper", keep_inputs=True)


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    root = tmp_path_factory.mktemp("grid")
    runs = build_grid_runs(str(root / "runs"), GRID_PROTOCOL)
    return build_report(runs, str(root / "out"), "paper", keep_inputs=True)


def _rows(report):
    with open(report["paths"]["paper_table2.csv"], newline="", encoding="utf-8") as f:
        return {(r["paper_model"], r["method"], r["benchmark"]): r for r in csv.DictReader(f)}


def test_paper_cpu_cells_beside_the_paper(paper_cpu):
    rows = _rows(paper_cpu)
    assert len(rows) == 80 + 4  # every paper cell, and SmolLM2-135M's 5-shot row per benchmark
    # (paper cell, our method/benchmark, the paper's value and count of its n problems)
    for paper_cell, ours, (value, k, n) in (
            (("smollm2-135m", "zero-shot", "gsm8k"), ("zero-shot", "gsm8k"), (1.44, 19, 1319)),
            (("smollm2-135m", "zero-shot", "svamp"), ("zero-shot", "svamp"), (1.33, 4, 300)),
            (("smollm2-135m", "zero-shot", "math"), ("zero-shot", "math500"), (5.56, 278, 5000))):
        r = rows[paper_cell]
        correct, our_n, _ = PAPER_CPU_COUNTS[ours]
        lo, hi = wilson_by_hand(correct, our_n)
        plo, phi = wilson_by_hand(k, n)
        assert r["model"] == PAPER_MODEL and r["jaxft_benchmark"] == ours[1]
        assert (float(r["paper_exact_match"]), int(r["paper_correct"]), int(r["paper_n"])) == (
            value, k, n)
        assert (float(r["paper_ci_low"]), float(r["paper_ci_high"])) == pytest.approx((plo, phi),
                                                                                      abs=1e-4)
        assert (int(r["correct"]), int(r["n"])) == (correct, our_n)
        assert (float(r["ci_low"]), float(r["ci_high"])) == pytest.approx((lo, hi), abs=1e-4)
        assert float(r["difference"]) == pytest.approx(100 * correct / our_n - value, abs=1e-4)
        assert r["paper_in_ci"] == ("true" if lo <= value <= hi else "false")
        assert r["intervals_overlap"] == ("true" if lo <= phi and plo <= hi else "false")
        assert (r["checkpoint"], r["template"], r["status"]) == (CHECKPOINT, "chat", "computed")
    # By hand: 1.44 lies in 25/1319's [1.29, 2.78]; 1.33 lies below 12/300's [2.30, 6.86].
    assert rows[("smollm2-135m", "zero-shot", "gsm8k")]["paper_in_ci"] == "true"
    assert rows[("smollm2-135m", "zero-shot", "svamp")]["paper_in_ci"] == "false"
    # GSM8K and SVAMP at the paper's n; MATH-500 stands for MATH and says how much smaller.
    assert rows[("smollm2-135m", "zero-shot", "gsm8k")]["scale"] == "paper's"
    math = rows[("smollm2-135m", "zero-shot", "math")]
    assert (math["scale"], math["note"]) == ("smaller", "MATH-500, n=500 of MATH's 5,000")


def test_paper_cpu_not_run_cells_say_why(paper_cpu):
    rows = _rows(paper_cpu)
    why = {k: r["note"] for k, r in rows.items() if r["status"] == "not run"}
    assert len(why) == 80 - 3 + 2  # 3 paper cells and 2 of 4 5-shot rows computed
    training = "needs training at the study's scale (10k OrcaMath, GPU)"
    assert why[("smollm2-135m", "zero-shot", "orcamath")] == (
        "OrcaMath data not offline (Hugging Face hub only)")
    assert why[("smollm2-135m", "full", "gsm8k")] == training
    assert why[("qwen25-05b", "zero-shot", "gsm8k")] == "model not offline"
    assert why[("gemma-2b", "lora", "orcamath")] == (
        "OrcaMath data not offline (Hugging Face hub only); model not offline; needs training at "
        "the study's scale (10k OrcaMath, GPU)")
    assert why[("smollm2-135m", "5-shot", "math")] == (
        "in this study's grid, not finished (no metrics.json yet)")
    for k, r in rows.items():
        if r["status"] == "not run":
            assert r["exact_match"] == r["n"] == r["difference"] == "", k


def test_empty_generations_from_metrics_or_predictions(paper_cpu):
    rows = _rows(paper_cpu)
    for (method, bench), counts in PAPER_CPU_COUNTS.items():
        if counts is None:
            continue
        paper_bench = "math" if bench == "math500" else bench
        assert int(rows[("smollm2-135m", method, paper_bench)]["empty_generations"]) == counts[2]
    # One cell's count comes from metrics.json (its predictions have none empty), one from
    # predictions.jsonl (its metrics.json has no field): both must reach the tables.
    assert ("5-shot", "gsm8k") in EMPTY_IN_METRICS and PAPER_CPU_COUNTS[("5-shot", "gsm8k")][2] == 7
    results = {(r["model"], r["method"], r["benchmark"]): r for r in paper_cpu["results"]}
    assert results[(PAPER_MODEL, "zero-shot", "svamp")]["empty_generations"] == 3
    md = open(paper_cpu["paths"]["results.md"], encoding="utf-8").read()
    assert "(n=300, 3 empty)" in md and "(n=1319, 7 empty)" in md


def test_paper_cpu_markdown_headline_and_five_shot(paper_cpu):
    headline = ("3 of the paper's 80 Table 2 cells computed (2 at the paper's sample size, 1 at a "
                "smaller protocol); the paper's value lies inside our 95% interval in 2 of 3. 5-shot: "
                "2 cells of ours (Table 2 has no 5-shot column).")
    assert paper_cpu["headline"] == headline
    text = open(paper_cpu["paths"]["paper_table2.md"], encoding="utf-8").read()
    assert f"**{headline}**" in text
    assert headline in open(paper_cpu["paths"]["index.md"], encoding="utf-8").read()
    md = _md_sections(paper_cpu["paths"]["paper_table2.md"])
    g = md["GSM8K (the paper's n = 1,319)"]
    lo, hi = wilson_by_hand(25, 1319)
    row = g[("SmolLM2-135M", PAPER_MODEL, "zero-shot")]
    assert row["paper 95% CI (k/n)"] == "[0.92, 2.24] (19/1,319)"
    assert row["jaxft [95% CI] (k/n)"] == f"1.90 [{lo:.2f}, {hi:.2f}] (25/1,319)"
    assert row["jaxft − paper"] == "+0.46" and row["paper inside jaxft CI"] == "yes"
    five = g[("SmolLM2-135M", PAPER_MODEL, "5-shot")]
    assert five["paper"] == "no column" and five["empty generations"] == "7"
    assert g[("Qwen2.5-0.5B", "—", "zero-shot")]["jaxft [95% CI] (k/n)"] == "not run"
    # A paper value that is no whole number of problems is marked approximate.
    odd = md["SVAMP (the paper's n = 300)"][("SmolLM2-360M", "—", "zero-shot")]
    assert odd["paper 95% CI (k/n)"].startswith("≈[") and odd["paper 95% CI (k/n)"].endswith("(10.5/300)")
    assert "18 of the paper's 80 Table 2 values (SmolLM2-360M, Gemma-2B)" in text
    assert "Table 2 has no 5-shot column" in text and "appendix A.1" in text


def test_table3_attribution_wherever_it_is_shown(paper_cpu):
    attribution = STUDY.table3_attribution
    for name in ("paper_table3.md", "paper_table3.tex"):
        text = open(paper_cpu["paths"][name], encoding="utf-8").read()
        assert "likely; the table does not name its model, section 6.3" in text, name
        assert "Qwen2.5-0.5B (likely)" in text, name
    with open(paper_cpu["paths"]["paper_table3.csv"], newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [(r["paper_model"], r["method"]) for r in rows] == [("qwen25-05b", m)
                                                               for m in ("full", "lora", "dora")]
    full = rows[0]
    # 10,289 s on 8 H100s at $4.00 per H100-hour.
    assert float(full["paper_device_hours"]) == pytest.approx(10289 * 8 / 3600, abs=1e-4)
    assert float(full["paper_cost"]) == pytest.approx(10289 * 8 / 3600 * 4.0, abs=1e-4)
    assert attribution.startswith("Qwen2.5-0.5B (likely")


def test_cost_figure_names_table3s_model(grid):
    from jaxft.report import tables
    from jaxft.report.cliff_cost import cost_figure
    from jaxft.report.collect import collect

    runs = collect(grid["out_dir"] + "/inputs")
    fig = cost_figure(runs, "gsm8k", tables.result_rows(runs), 4.0, STUDY)
    labels = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    assert any("Table 3's model: Qwen2.5-0.5B (likely" in t for t in labels), labels
    paper = {line.get_gid(): line for line in fig.axes[0].get_lines()}["paper:Qwen2.5-0.5B:full"]
    assert paper.get_xdata()[0] == pytest.approx(10289 * 8 / 3600)  # H100-hours
    assert paper.get_ydata()[0] == 38.59  # Table 2's Qwen2.5-0.5B Full FT GSM8K


def test_cliff_zooms_on_the_sizes_we_ran(grid):
    from jaxft.report import tables
    from jaxft.report.cliff_cost import cliff_figure, dodge, model_params
    from jaxft.report.collect import collect

    runs = collect(grid["out_dir"] + "/inputs")
    params = model_params(runs, STUDY)
    assert params == {PAPER_MODEL: 134_515_008.0}  # Full FT's total_params
    fig = cliff_figure(runs, "gsm8k", tables.result_rows(runs), params, STUDY)
    main_ax, zoom = fig.axes[:2]
    lines = {ln.get_gid(): ln for ln in main_ax.get_lines() if ln.get_gid()}
    # The paper's five sizes on the main axes (135M at our run's size), all four Table 2 methods.
    full = lines["paper:full"]
    assert list(full.get_ydata()) == [1.44, 3.80, 38.59, 4.02, 19.80]
    xs = [x / dodge("full", list(GRID_COUNTS)) for x in full.get_xdata()]
    assert xs == pytest.approx([134_515_008.0, 360e6, 0.5e9, 1e9, 2e9])
    # The zoom holds only 135M: our five methods and the paper's four at that size.
    zoomed = {ln.get_gid(): ln for ln in zoom.get_lines() if ln.get_gid()}
    assert set(zoomed) == {f"zoom:jaxft:{m}" for m in GRID_COUNTS} | {
        f"zoom:paper:{m}" for m in ("zero-shot", "full", "lora", "dora")}
    assert list(zoomed["zoom:paper:lora"].get_ydata()) == [1.67]
    assert list(zoomed["zoom:jaxft:zero-shot"].get_ydata()) == [3.0]
    assert zoom.get_ylim()[1] < 10 < main_ax.get_ylim()[1]


def test_grid_is_labelled_the_smaller_protocol(grid):
    rows = _rows(grid)
    for method, correct in GRID_COUNTS.items():
        paper_method = method
        r = rows[("smollm2-135m", paper_method, "gsm8k")]
        assert (int(r["correct"]), int(r["n"]), r["scale"]) == (correct, 200, "smaller")
        note = "n=200 of the paper's 1,319"
        if method in ("full", "lora", "dora"):
            note += "; trained on 1,000 GSM8K examples, not the paper's 10,000 OrcaMath"
        assert r["note"] == note, method
    assert grid["headline"].startswith("4 of the paper's 80 Table 2 cells computed (0 at the "
                                       "paper's sample size, 4 at a smaller protocol)")
    text = open(grid["paths"]["paper_table2.md"], encoding="utf-8").read()
    assert f"This study's protocol: {GRID_PROTOCOL}" in text
    index = open(grid["paths"]["index.md"], encoding="utf-8").read()
    assert f"Protocol: {GRID_PROTOCOL}" in index
    # Our trained runs get Table 3 rows of their own; the paper's columns say it has none.
    md = _md_sections(grid["paths"]["paper_table3.md"])[None]
    assert md[("SmolLM2-135M", PAPER_MODEL, "lora")]["paper runtime (s)"] == "n/a"
    assert md[("Qwen2.5-0.5B (likely)", "—", "lora")]["paper speedup"] == "0.53×"


# ---------------------------------------------------------------------------------------------
# --keep_inputs: the report rebuilt from what it kept
# ---------------------------------------------------------------------------------------------

def _files(folder):
    return {os.path.relpath(os.path.join(d, f), folder) for d, _, fs in os.walk(folder) for f in fs}


def test_rebuild_from_kept_inputs_is_identical(grid, paper_cpu, tmp_path):
    report = grid  # training curves, summaries, configs and predictions: every kind of input
    assert _files(os.path.join(paper_cpu["out_dir"], "inputs")) == set(paper_cpu["inputs"])
    out = report["out_dir"]
    kept = os.path.join(out, "inputs")
    # Exactly the files the report read, nothing of the workdir else.
    assert _files(kept) == set(report["inputs"])
    assert not any("checkpoints" in p or "partial" in p for p in _files(kept))
    for rel in report["inputs"]:
        if rel.endswith("predictions.jsonl"):
            with open(os.path.join(kept, rel), encoding="utf-8") as f:
                assert all("prompt" not in json.loads(line) for line in f)
    rebuilt = tmp_path / "rebuilt"
    assert main([f"--runs={kept}", f"--out={rebuilt}", "--compare=paper"]) == 0
    names = sorted(n for n in os.listdir(out) if n not in ("index.md", "inputs"))
    assert names == sorted(n for n in os.listdir(rebuilt) if n != "index.md")
    for name in names:  # tables byte for byte; figures too (Agg writes no date into a PNG)
        with open(os.path.join(out, name), "rb") as a, open(rebuilt / name, "rb") as b:
            assert a.read() == b.read(), name


def test_keep_inputs_replaces_an_older_copy_whole(tmp_path):
    runs = build_grid_runs(str(tmp_path / "runs"))
    out = tmp_path / "out"
    stale = out / "inputs" / "old-model" / "zero-shot" / "eval" / "gsm8k" / "metrics.json"
    stale.parent.mkdir(parents=True)
    stale.write_text("{}")
    assert main([f"--runs={runs}", f"--out={out}", "--keep_inputs"]) == 0
    assert not stale.exists() and (out / "inputs" / "study.json").is_file()
    assert not [n for n in os.listdir(out) if n.startswith(".")]  # no temporary folders left
    # Rebuilding into the same folder from its own inputs keeps them as they are.
    before = _files(str(out / "inputs"))
    assert main([f"--runs={out / 'inputs'}", f"--out={out}", "--keep_inputs"]) == 0
    assert _files(str(out / "inputs")) == before


def test_offline_weights_are_the_registrys():
    from jaxft.models.registry import GGUF_PACKAGES
    from jaxft.report.coverage import OFFLINE_WEIGHTS, offline_models

    assert set(OFFLINE_WEIGHTS) == set(GGUF_PACKAGES)
    assert offline_models(STUDY) == {"smollm2-135m"}
