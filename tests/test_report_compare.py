"""The study beside us: paper tables, cliff and cost figures, `plan --fits`, checked by hand.

The comparison is fed a made-up `PaperTables` (PAPER below) so every cell's placement can be
checked; the typed study values themselves are checked for shape and provenance here, and cell
by cell against the paper's CSV files in tests/test_paper_tables.py.
"""

from __future__ import annotations

import csv
import math
import os
import re

import numpy as np
import pytest

from conftest import REPO
from jaxft.report import build_report, main
from jaxft.report.paper import (BENCHMARKS, STUDY, TABLE2_METHODS, TABLE3_FIELDS,
                                TABLE3_METHODS, PaperTables)
from report_fixtures import SIZE_COUNTS, SIZE_SUMMARIES, build_size_runs
from test_report import wilson_by_hand

PRICE = 2.5  # --price_per_hour of the report under test; the paper prices at 4.00
PAPER = PaperTables(
    models={"p-small": {"name": "Paper Small", "nominal_params": 1.5e6, "aliases": ("small",)},
            "p-large": {"name": "Paper Large", "nominal_params": 5e6, "aliases": ("large",)},
            "p-huge": {"name": "Paper Huge", "nominal_params": 1e8, "aliases": ()}},
    benchmarks=("gsm8k", "svamp"),
    table2={("p-small", "full", "gsm8k"): 12.5, ("p-large", "full", "gsm8k"): 30.0,
            ("p-small", "lora", "gsm8k"): 25.0, ("p-large", "dora", "gsm8k"): 48.5,
            ("p-large", "zero-shot", "svamp"): 50.0, ("p-small", "full", "svamp"): 60.0,
            ("p-huge", "dora", "gsm8k"): 40.0},
    table3={("p-large", "full", "runtime_seconds"): 5400.0,
            ("p-large", "full", "samples_per_second"): 3.0, ("p-small", "lora", "speedup"): 1.8,
            ("p-huge", "full", "runtime_seconds"): 36000.0},
    price_per_hour=4.0,
    notes={("table2", "p-small", "full", "gsm8k"): "made up for the test"})
RUN_OF = {"p-small": "small", "p-large": "large", "p-huge": None}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    runs = build_size_runs(str(root / "runs"))
    return build_report(runs, str(root / "out"), "paper", PRICE, paper=PAPER)


def _csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _num(text):
    return None if text == "" else float(text)


# ---------------------------------------------------------------------------------------------
# The typed study values
# ---------------------------------------------------------------------------------------------

def test_study_tables_cover_the_grid_and_name_their_sources():
    models = list(STUDY.models)
    assert models == ["smollm2-135m", "smollm2-360m", "qwen25-05b", "olmo-1b", "gemma-2b"]
    assert STUDY.benchmarks == BENCHMARKS == ("orcamath", "gsm8k", "math", "svamp")
    # Every Table 2 cell typed; Table 3 covers one model, attributed where it is named.
    assert set(STUDY.table2) == {(m, meth, b) for m in models for meth in TABLE2_METHODS
                                 for b in BENCHMARKS}
    assert set(STUDY.table3) == {("qwen25-05b", meth, f) for meth in TABLE3_METHODS
                                 for f in TABLE3_FIELDS}
    for key, v in STUDY.table2.items():
        assert isinstance(v, float) and 0.0 <= v <= 100.0, key
    for key, v in STUDY.table3.items():
        assert isinstance(v, float) and v > 0, key
    assert STUDY.table3_models == ["qwen25-05b"] and STUDY.table3_devices == 8
    assert STUDY.table3_attribution == (
        "Qwen2.5-0.5B (likely; the table does not name its model, section 6.3 speaks of the "
        "0.5B model on 8x H100)")
    assert STUDY.model_name("qwen25-05b", "table3") == "Qwen2.5-0.5B (likely)"
    assert STUDY.model_name("qwen25-05b") == "Qwen2.5-0.5B"
    for table, where in (("table2", "Table 2 (section 5"), ("table3", "Table 3 (section 6.2"),
                         ("price", "section 6.3")):
        assert "arXiv:2606.06920v1" in STUDY.sources[table] and where in STUDY.sources[table]
    assert STUDY.sample_sizes == {"orcamath": 500, "gsm8k": 1319, "math": 5000, "svamp": 300}
    assert STUDY.training == {"task": "orcamath", "examples": 10_000, "examples_per_step": 64}
    assert STUDY.price_per_hour == 4.00
    # Run directories of the study, the registry and the CPU grid all find their paper model.
    assert STUDY.match("qwen25-05b") == STUDY.match("Qwen2.5-0.5B") == "qwen25-05b"
    assert STUDY.match("smollm2-135m-instruct") == "smollm2-135m"
    assert STUDY.match("smollm2-135m-instruct-q4") == "smollm2-135m"
    assert STUDY.match("tiny") is None and STUDY.match("smollm2-1.7b") is None


# ---------------------------------------------------------------------------------------------
# Table 2 beside ours
# ---------------------------------------------------------------------------------------------

def test_table2_csv_puts_each_paper_value_in_its_cell(report):
    rows = _csv(report["paths"]["paper_table2.csv"])
    five = [r for r in rows if r["method"] == "5-shot"]
    rows = [r for r in rows if r["method"] != "5-shot"]
    # 3 paper models x 4 methods x 2 benchmarks, each once; and a 5-shot row per benchmark for
    # each paper model with a run (the paper has no 5-shot column: nothing to compare with).
    assert len(rows) == 3 * 4 * 2
    assert sorted((r["paper_model"], r["benchmark"]) for r in five) == sorted(
        (m, b) for m in ("p-small", "p-large") for b in ("gsm8k", "svamp"))
    for r in five:
        correct, n = SIZE_COUNTS[(RUN_OF[r["paper_model"]], "5-shot", r["benchmark"])]
        assert (int(r["correct"]), int(r["n"])) == (correct, n) and r["status"] == "computed"
        assert r["paper_exact_match"] == r["difference"] == r["paper_in_ci"] == ""
    seen = set()
    for r in rows:
        key = (r["paper_model"], r["method"], r["benchmark"])
        seen.add(key)
        paper = PAPER.table2.get(key)
        assert _num(r["paper_exact_match"]) == paper, key
        run = RUN_OF[r["paper_model"]]
        assert r["model"] == (run or ""), key
        counts = SIZE_COUNTS.get((run, r["method"], r["benchmark"]))
        assert r["paper_ci_low"] == r["paper_n"] == "", key  # PAPER gives no sample sizes
        if counts is None:  # no run: every jaxft column empty, and the reason given
            assert r["exact_match"] == r["difference"] == r["paper_in_ci"] == "", key
            assert r["status"] == "not run" and r["note"], key
            continue
        assert r["status"] == "computed" and int(r["correct"]) == counts[0], key
        correct, n = counts
        em = 100.0 * correct / n
        lo, hi = wilson_by_hand(correct, n)
        assert float(r["exact_match"]) == pytest.approx(em, abs=1e-4), key
        assert (float(r["ci_low"]), float(r["ci_high"])) == pytest.approx((lo, hi), abs=1e-4)
        if paper is None:
            assert r["difference"] == r["paper_in_ci"] == "", key
        else:
            assert float(r["difference"]) == pytest.approx(em - paper, abs=1e-4), key
            assert r["paper_in_ci"] == ("true" if lo <= paper <= hi else "false"), key
    assert len(seen) == len(rows)
    # The hand-checked verdicts: 12.5 lies in [2.8, 30.1] around 2/20; 30 is below 12/20's
    # [38.7, 78.1]; 60 is above 1/10's [1.8, 40.4].
    by = {(r["paper_model"], r["method"], r["benchmark"]): r for r in rows}
    assert by[("p-small", "full", "gsm8k")]["paper_in_ci"] == "true"
    assert by[("p-large", "full", "gsm8k")]["paper_in_ci"] == "false"
    assert by[("p-small", "full", "svamp")]["paper_in_ci"] == "false"
    assert float(by[("p-large", "full", "gsm8k")]["difference"]) == pytest.approx(30.0)


def _md_sections(path):
    """{section: {(model, jaxft run, method): {column: text}}} of a Markdown file's tables."""
    out, section, header = {}, None, None
    for line in open(path, encoding="utf-8").read().splitlines():
        if line.startswith("## "):
            section, header = line[3:], None
        elif line.startswith("| ") and not line.startswith("| ---"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if header is None:
                header = cells
            else:
                out.setdefault(section, {})[tuple(cells[:3])] = dict(zip(header, cells))
    return out


def test_table2_md_marks_unknown_and_missing(report):
    md = _md_sections(report["paths"]["paper_table2.md"])
    assert list(md) == ["GSM8K", "SVAMP"]
    g = md["GSM8K"]
    row = g[("Paper Small", "small", "full")]
    lo, hi = wilson_by_hand(2, 20)
    assert row["paper"] == "12.50" and row["paper 95% CI (k/n)"] == "—"  # no sample size given
    assert row["jaxft [95% CI] (k/n)"] == f"10.00 [{lo:.2f}, {hi:.2f}] (2/20)"
    assert row["jaxft − paper"] == "-2.50" and row["paper inside jaxft CI"] == "yes"
    assert g[("Paper Large", "large", "full")]["paper inside jaxft CI"] == "no"
    assert g[("Paper Small", "small", "dora")]["paper"] == "?"  # not in the paper table
    assert g[("Paper Small", "small", "5-shot")]["paper"] == "no column"
    huge = g[("Paper Huge", "—", "dora")]  # in the paper, never run here: said, with the reason
    assert (huge["paper"], huge["jaxft [95% CI] (k/n)"], huge["jaxft − paper"]) == (
        "40.00", "not run", "—")
    assert huge["scale / why not run"] == "model not offline; needs training at the study's scale (10k OrcaMath, GPU)"
    assert md["SVAMP"][("Paper Large", "large", "zero-shot")]["paper"] == "50.00"
    text = open(report["paths"]["paper_table2.md"], encoding="utf-8").read()
    assert "made up for the test" in text  # a note on one paper value is printed
    assert "no 5-shot column" in text
    tex = open(report["paths"]["paper_table2.tex"], encoding="utf-8").read()
    assert tex.startswith("\\begin{tabular}{llllrrrrrrl}")
    assert "GSM8K & Paper Small & small & full & 12.50 & --- & 10.00 [" in tex
    assert "GSM8K & Paper Huge & --- & dora & 40.00 & --- & not run & --- & --- & --- & model not" in tex


# ---------------------------------------------------------------------------------------------
# Table 3 beside ours: throughput and cost
# ---------------------------------------------------------------------------------------------

def test_table3_cost_is_runtime_times_price(report):
    rows = {(r["paper_model"], r["method"]): r for r in _csv(report["paths"]["paper_table3.csv"])}
    assert len(rows) == 3 * 3
    for (key, method), r in rows.items():
        run = RUN_OF[key]
        if (run, method) not in SIZE_SUMMARIES:
            assert r["runtime_seconds"] == r["cost"] == "", (key, method)
            continue
        runtime, sps, devices = SIZE_SUMMARIES[(run, method)]
        devices = devices or 1
        assert float(r["runtime_seconds"]) == runtime
        assert int(r["device_count"]) == devices
        assert float(r["device_hours"]) == pytest.approx(runtime * devices / 3600, abs=1e-4)
        assert float(r["cost"]) == pytest.approx(runtime * devices / 3600 * PRICE, abs=1e-4)
        full_sps = SIZE_SUMMARIES[(run, "full")][1]
        assert float(r["speedup_vs_full"]) == pytest.approx(sps / full_sps, abs=1e-4)
        assert float(r["price_per_hour"]) == PRICE and float(r["paper_price_per_hour"]) == 4.0
    large = rows[("p-large", "full")]
    assert float(large["cost"]) == pytest.approx(10.0)  # 7200 s x 2 devices = 4 h at $2.50
    assert float(large["paper_runtime_seconds"]) == 5400.0
    assert float(large["paper_cost"]) == pytest.approx(6.0)  # 1.5 H100-hours at $4.00
    assert float(large["samples_per_second_ratio"]) == pytest.approx(2.5 / 3.0, abs=1e-4)
    assert float(rows[("p-small", "lora")]["paper_speedup"]) == 1.8
    assert float(rows[("p-huge", "full")]["paper_cost"]) == pytest.approx(40.0)
    assert rows[("p-huge", "full")]["model"] == "" and rows[("p-huge", "full")]["cost"] == ""
    md = _md_sections(report["paths"]["paper_table3.md"])[None]
    row = md[("Paper Large", "large", "full")]
    assert row["jaxft cost ($2.50/h)"] == "10.00" and row["paper cost ($4.00/H100-h)"] == "6.00"
    assert md[("Paper Small", "small", "full")]["jaxft cost ($2.50/h)"] == "1.25"
    assert md[("Paper Small", "small", "lora")]["paper speedup"] == "1.80×"
    assert md[("Paper Huge", "—", "lora")]["jaxft runtime (s)"] == "—"


# ---------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------

def _lines(ax):
    return {line.get_gid(): line for line in ax.get_lines() if line.get_gid()}


def test_cliff_has_two_points_per_method_and_the_paper_hollow(tmp_path):
    from jaxft.report import tables
    from jaxft.report.cliff_cost import PAPER_LABEL, cliff_figure, dodge, model_params
    from jaxft.report.collect import collect

    runs = collect(build_size_runs(str(tmp_path / "runs")))
    rows = tables.result_rows(runs)
    params = model_params(runs, PAPER)
    assert params == {"small": 1e6, "large": 4e6}  # Full FT's total_params, not the adapters'
    fig = cliff_figure(runs, "gsm8k", rows, params, PAPER)
    ax = fig.axes[0]
    lines = _lines(ax)
    methods = ["zero-shot", "5-shot", "full", "lora", "dora"]
    for method in methods:
        line = lines[f"jaxft:{method}"]
        xs = np.asarray(line.get_xdata()) / dodge(method, methods)
        assert xs == pytest.approx([1e6, 4e6], rel=1e-9), method  # one point per model size
        want = [100 * SIZE_COUNTS[(m, method, "gsm8k")][0] / 20 for m in ("small", "large")]
        assert list(line.get_ydata()) == pytest.approx(want), method
    assert lines["jaxft:zero-shot"].get_linestyle() == "--"
    assert lines["jaxft:5-shot"].get_linestyle() == ":"
    assert lines["jaxft:full"].get_linestyle() == "-"
    # The paper: hollow markers at our matching run's size (p-huge at its nominal 1e8).
    full = lines["paper:full"]
    assert full.get_markerfacecolor() == "none" and full.get_linestyle() == "None"
    assert np.asarray(full.get_xdata()) / dodge("full", methods) == pytest.approx([1e6, 4e6])
    assert list(full.get_ydata()) == [12.5, 30.0]
    dora = lines["paper:dora"]
    assert np.asarray(dora.get_xdata()) / dodge("dora", methods) == pytest.approx([4e6, 1e8])
    assert list(dora.get_ydata()) == [48.5, 40.0]
    assert full.get_markeredgecolor() == lines["jaxft:full"].get_color()
    assert ax.get_xscale() == "log"
    assert ax.get_xlabel() == "parameters (log scale)" and ax.get_ylabel() == "exact match (%)"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["zero-shot (reference)", "5-shot (reference)", "full", "lora", "dora",
                      PAPER_LABEL]
    assert "gsm8k" in ax.get_title()
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert {"1M", "4M", "100M"} <= set(ticks)
    # Without the paper: no hollow markers, no paper legend entry.
    plain = _lines(cliff_figure(runs, "gsm8k", rows, params).axes[0])
    assert not [g for g in plain if g.startswith("paper:")] and "jaxft:dora" in plain


def test_cost_figure_places_runs_at_hours_and_dollars(tmp_path):
    from jaxft.report import tables
    from jaxft.report.cliff_cost import cost_figure
    from jaxft.report.collect import collect

    runs = collect(build_size_runs(str(tmp_path / "runs")))
    fig = cost_figure(runs, "gsm8k", tables.result_rows(runs), PRICE, PAPER)
    hours_ax, dollars_ax = fig.axes[:2]
    for ax, scale in ((hours_ax, 1.0), (dollars_ax, PRICE)):
        lines = _lines(ax)
        for (model, method), (runtime, _, devices) in SIZE_SUMMARIES.items():
            line = lines[f"jaxft:{model}:{method}"]
            hours = runtime * (devices or 1) / 3600
            assert line.get_xdata()[0] == pytest.approx(hours * scale), (model, method)
            correct, n = SIZE_COUNTS[(model, method, "gsm8k")]
            assert line.get_ydata()[0] == pytest.approx(100 * correct / n)
        paper = lines["paper:Paper Large:full"]  # the only paper cell with runtime and accuracy
        assert paper.get_xdata()[0] == pytest.approx(1.5 * (1.0 if ax is hours_ax else 4.0))
        assert paper.get_ydata()[0] == 30.0 and paper.get_markerfacecolor() == "none"
        assert ax.get_xscale() == "log"
    assert "device-hours" in hours_ax.get_xlabel()
    assert "$2.50/device-hour" in dollars_ax.get_xlabel()
    assert "$4.00/H100-hour" in dollars_ax.get_xlabel()


def test_report_files_figures_and_index(report):
    import matplotlib.image as mpimg

    out = report["out_dir"]
    for name in ("cliff_gsm8k.png", "cliff_svamp.png", "cost_gsm8k.png", "cost_svamp.png"):
        assert name in report["figures"]
        img = mpimg.imread(os.path.join(out, name))
        assert img.shape[0] > 400 and img.shape[1] > 800, name
        rgb = (img[..., :3] * 255).round().astype(np.uint32)
        assert len(np.unique((rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2])) > 50, name
    index = open(os.path.join(out, "index.md"), encoding="utf-8").read()
    links = set(re.findall(r"\]\(([^)]+)\)", index))
    assert set(os.listdir(out)) - {"index.md"} == links
    assert "Exact match beside the study's Table 2" in index


def test_cli_refuses_bad_compare_price_and_device(tmp_path, capsys):
    runs = build_size_runs(str(tmp_path / "runs"))
    out = tmp_path / "out"
    assert main([f"--runs={runs}", f"--out={out}", "--compare=arxiv"]) == 2
    assert "argument --compare: invalid choice: 'arxiv'" in capsys.readouterr().err
    assert main([f"--runs={runs}", f"--out={out}", "--price_per_hour=-1"]) == 2
    assert "--price_per_hour" in capsys.readouterr().err
    assert main([f"--runs={runs}", f"--out={out}", "--price_per_hour=nan"]) == 2
    assert main([f"--runs={runs}", f"--out={out}", "--fits_devices=rtx9999x1"]) == 2
    assert "rtx4090xN" in capsys.readouterr().err  # the message lists the devices it knows
    assert not out.exists()
    # The real study values land in their rows, with the paper's own interval at its n.
    assert main([f"--runs={runs}", f"--out={out}", "--compare=paper"]) == 0
    md = _md_sections(str(out / "paper_table2.md"))
    gsm8k = md["GSM8K (the paper's n = 1,319)"]
    assert gsm8k[("SmolLM2-135M", "—", "zero-shot")]["paper"] == "1.44"
    assert gsm8k[("SmolLM2-135M", "—", "full")]["paper"] == "1.44"
    assert list(md)[:4] == ["OrcaMath (the paper's n = 500)", "GSM8K (the paper's n = 1,319)",
                            "MATH (the paper's n = 5,000)", "SVAMP (the paper's n = 300)"]


# ---------------------------------------------------------------------------------------------
# plan --fits
# ---------------------------------------------------------------------------------------------

def test_consumer_gpus_in_the_device_table():
    from jaxft.train.auto import platform_of_devices
    from jaxft.train.memory import GiB, parse_devices

    got = {d: (h.count, h.bytes_per_device // GiB) for d in
           ("rtx4090x1", "rtx3090", "l4x2", "a10gx1", "t4x4")
           for h in [parse_devices(d)]}
    assert got == {"rtx4090x1": (1, 24), "rtx3090": (1, 24), "l4x2": (2, 24), "a10gx1": (1, 24),
                   "t4x4": (4, 16)}
    assert platform_of_devices("rtx4090x1") == platform_of_devices("t4x1") == "gpu"


@pytest.fixture(scope="module")
def olmo_on_4090():
    """plan() of olmo-1b's three study configs on one RTX 4090, straight from the planner."""
    from jaxft.plan import plan
    from jaxft.train.config import load_config_file
    from jaxft.train.memory import parse_devices

    hw = parse_devices("rtx4090x1")
    return {m: plan(load_config_file(os.path.join(REPO, "configs", f"olmo1b_{m}.py")), hw)
            for m in ("full", "lora", "dora")}


def test_fits_agrees_with_plan_and_answers_the_claim(olmo_on_4090, capsys):
    import json

    from jaxft.plan import main as plan_main
    from jaxft.plan import render_fits
    from jaxft.train.memory import parse_devices

    assert plan_main(["--fits", "--devices=rtx4090x1", "--models=olmo-1b", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["model"], r["method"]) for r in rows] == [("olmo-1b", m) for m in ("full", "lora", "dora")]
    for r in rows:
        p = olmo_on_4090[r["method"]]
        assert r["config"] == f"configs/olmo1b_{r['method']}.py"
        assert r["peak"] == p["terms"]["peak"] and r["fits"] == p["fits"]
        assert r["largest_batch"] == p["largest_batch"] and r["remat"] == p["remat"]
        assert r["micro_batch"] == p["micro_batch"] and r["usable_bytes"] == p["usable_bytes"]
        assert r["largest_batch_best_remat"] == max(v["largest_batch"] for v in p["by_remat"].values())
    # Section 6.3 on a 24 GB card: OLMo-1B Full FT does not fit, LoRA and DoRA do.
    assert [r["fits"] for r in rows] == [False, True, True]
    text = render_fits(rows, parse_devices("rtx4090x1"))  # what --fits prints without --json
    assert "- LoRA/DoRA fit, Full FT does not: olmo-1b" in text
    gib = olmo_on_4090["full"]["terms"]["peak"] / 2 ** 30
    assert re.search(rf"\| olmo-1b \| full \|.*\| {gib:.2f} \| NO \| 0 \|", text)
    assert plan_main(["--fits", "--devices=rtx4090x1", "--models=olmo-7b"]) == 2
    assert "allowed: smollm2-135m" in capsys.readouterr().err
    assert plan_main(["--fits"]) == 2 and "missing --devices" in capsys.readouterr().err


def test_report_writes_the_fits_table(olmo_on_4090, tmp_path):
    # Not tmp/configs/study.py: loading it would put a second `configs` package on sys.path and shadow
    # the repository's configs.study for later tests in the same process.
    study = tmp_path / "grid" / "fits_study.py"
    study.parent.mkdir()
    study.write_text(  # the study's grid cut to one config (2 s of planning instead of 70)
        "import ml_collections\n\n"
        "def get_config():\n"
        "    c = ml_collections.ConfigDict()\n"
        "    c.models = ('olmo-1b',)\n"
        "    c.model_configs = ml_collections.ConfigDict({'olmo-1b': 'configs/olmo1b_{method}.py'})\n"
        "    c.methods = ('zero-shot', 'full')\n"
        "    c.train_overrides = ml_collections.ConfigDict()\n"
        f"    c.config_root = {REPO!r}\n"
        "    return c\n")
    runs = build_size_runs(str(tmp_path / "runs"))
    report = build_report(runs, str(tmp_path / "out"), fits_devices=["rtx4090x1"],
                          study_config=str(study))
    rows = _csv(report["paths"]["fits.csv"])
    assert [(r["devices"], r["model"], r["method"]) for r in rows] == [("rtx4090x1", "olmo-1b", "full")]
    assert int(rows[0]["peak"]) == olmo_on_4090["full"]["terms"]["peak"]
    assert rows[0]["fits"] == "false" and math.isclose(float(rows[0]["usable_bytes"]), 0.9 * 24 * 2 ** 30,
                                                          rel_tol=1e-9)
    md = open(report["paths"]["fits.md"], encoding="utf-8").read()
    assert "## rtx4090x1: 1 x 24 GiB" in md and "| olmo-1b | full |" in md
    assert "[md](fits.md)" in open(report["paths"]["index.md"], encoding="utf-8").read()
