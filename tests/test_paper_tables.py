"""The paper's Tables 2 and 3 in jaxft/report/paper.py, cell by cell against ../shared/paper/.

The CSV files were typed from the paper's text (../shared/paper/README.md); the package types
the same values as Python literals, so the report needs no file outside the repository. Each test
here that reads the paper's files is skipped where ../shared/paper is absent (CI without it).
"""

from __future__ import annotations

import csv
import os

import pytest

from conftest import REPO
from jaxft.report.paper import (BENCHMARKS, STUDY, TABLE2_METHODS, TABLE3_FIELDS, TABLE3_METHODS,
                                TABLE3_MODEL)
from test_report import wilson_by_hand

PAPER = os.path.join(os.path.dirname(REPO), "shared", "paper")
DATA = os.path.join(os.path.dirname(REPO), "shared", "data")
needs_paper = pytest.mark.skipif(not os.path.isdir(PAPER), reason="../shared/paper not present")
NAME_TO_KEY = {info["name"]: key for key, info in STUDY.models.items()}
# Rows printed to one decimal whose cells are, at several benchmarks, no k/n of the implied sizes
# (e.g. SVAMP 3.50% of 300 = 10.5 problems): found by test_implied_counts below.
NOT_WHOLE = {
    ("smollm2-360m", "zero-shot"): {"orcamath", "gsm8k", "svamp"},
    ("smollm2-360m", "full"): {"gsm8k", "svamp"}, ("smollm2-360m", "lora"): {"gsm8k", "svamp"},
    ("smollm2-360m", "dora"): {"gsm8k", "svamp"},
    ("gemma-2b", "zero-shot"): {"orcamath", "gsm8k", "svamp"},
    ("gemma-2b", "full"): {"gsm8k", "svamp"}, ("gemma-2b", "lora"): {"orcamath", "svamp"},
    ("gemma-2b", "dora"): {"gsm8k", "svamp"},
}


def _rows(name):
    with open(os.path.join(PAPER, name), newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@needs_paper
def test_every_table2_cell_equals_the_csv():
    rows = _rows("table2.csv")
    assert [c for c in rows[0]] == ["model", "method", *BENCHMARKS]
    seen = set()
    for row in rows:
        key = NAME_TO_KEY[row["model"]]
        assert row["method"] in TABLE2_METHODS
        for bench in BENCHMARKS:
            cell = (key, row["method"], bench)
            # Exact: both are the same two-decimal literal read as a float.
            assert STUDY.table2[cell] == float(row[bench]), cell
            seen.add(cell)
    assert seen == set(STUDY.table2) and len(seen) == 5 * 4 * 4


@needs_paper
def test_every_table3_cell_equals_the_csv():
    rows = _rows("table3.csv")
    assert [c for c in rows[0]] == ["method", *TABLE3_FIELDS]
    seen = set()
    for row in rows:
        for field in TABLE3_FIELDS:
            cell = (TABLE3_MODEL, row["method"], field)
            assert STUDY.table3[cell] == float(row[field]), cell
            seen.add(cell)
    assert seen == set(STUDY.table3) and {r["method"] for r in rows} == set(TABLE3_METHODS)
    # The attribution is the one ../shared/paper/README.md asks for.
    readme = open(os.path.join(PAPER, "README.md"), encoding="utf-8").read()
    assert "Qwen2.5-0.5B is the likely one" in readme
    assert STUDY.models[TABLE3_MODEL]["name"] == "Qwen2.5-0.5B"
    assert "likely" in STUDY.table3_attribution and "section 6.3" in STUDY.table3_attribution


@needs_paper
def test_table3_speedup_is_samples_per_second_over_full():
    rows = {r["method"]: r for r in _rows("table3.csv")}
    full = float(rows["full"]["samples_per_second"])
    for method, row in rows.items():  # the paper's own rounding: two decimals
        assert float(row["speedup"]) == pytest.approx(float(row["samples_per_second"]) / full,
                                                      abs=0.005), method


def test_implied_counts():
    """implied_count against a search over every k in 0..n: the k whose k/n prints as the value."""
    whole = 0
    for (model, method, bench), value in STUDY.table2.items():
        n = STUDY.sample_size(bench)
        ks = [k for k in range(n + 1) if f"{100 * k / n:.2f}" == f"{value:.2f}"]
        assert len(ks) <= 1, (model, method, bench)  # at these n two counts never print alike
        assert STUDY.implied_count(model, method, bench) == (ks[0] if ks else None)
        expected_odd = bench in NOT_WHOLE.get((model, method), set())
        assert (not ks) == expected_odd, (model, method, bench, value)
        whole += bool(ks)
    assert whole == 80 - 18
    # The README's examples, and the rows it names as whole numbers everywhere.
    assert STUDY.implied_count("smollm2-135m", "zero-shot", "gsm8k") == 19
    assert STUDY.implied_count("smollm2-135m", "zero-shot", "svamp") == 4
    assert STUDY.implied_count("smollm2-135m", "zero-shot", "math") == 278
    assert STUDY.implied_count("smollm2-135m", "zero-shot", "orcamath") == 30
    for model in ("smollm2-135m", "qwen25-05b", "olmo-1b"):
        for method in TABLE2_METHODS:
            for bench in BENCHMARKS:
                assert STUDY.implied_count(model, method, bench) is not None


def test_the_papers_interval_is_wilson_at_its_count():
    lo, hi = STUDY.interval("smollm2-135m", "zero-shot", "gsm8k")
    assert (lo, hi) == pytest.approx(wilson_by_hand(19, 1319), abs=1e-9)
    assert (round(lo, 2), round(hi, 2)) == (0.92, 2.24)
    assert STUDY.interval("qwen25-05b", "full", "svamp") == pytest.approx(wilson_by_hand(0, 300))
    # No whole count: drawn at the share itself (3.5% of 300 = 10.5 problems).
    assert STUDY.interval("smollm2-360m", "zero-shot", "svamp") == pytest.approx(
        wilson_by_hand(10.5, 300), abs=1e-9)


@pytest.mark.skipif(not os.path.isdir(DATA), reason="../shared/data not present")
def test_sample_sizes_are_the_offline_test_splits():
    for bench, name in (("gsm8k", "gsm8k/test.jsonl"), ("svamp", "svamp/test.jsonl"),
                        ("math", "math/test.jsonl")):
        with open(os.path.join(DATA, name), encoding="utf-8") as f:
            assert sum(1 for line in f if line.strip()) == STUDY.sample_size(bench), bench
    from jaxft.data.tasks import ORCAMATH_TEST_SIZE

    assert STUDY.sample_size("orcamath") == ORCAMATH_TEST_SIZE == 500  # jaxft's held-out slice
