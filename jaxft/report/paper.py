"""The study's published Tables 2 and 3, typed by hand, so a report can put them beside ours.

Source: R. Nair and C. Tao, "The Fine-Tuning Trap: Evaluating Negative Transfer and the Role of
PEFT in Sub-1B Mathematical Reasoning", arXiv:2606.06920v1 (5 June 2026). Typed from the copy
in ../shared/paper/ (the text extracted from the paper's HTML, and table2.csv / table3.csv typed
from it); tests/test_paper_tables.py compares every cell here with those CSV files.

- Table 2 (section 5, "Empirical Results"): exact match (%) for each model x {zero-shot, Full FT,
  LoRA, DoRA} x {OrcaMath, GSM8K, MATH, SVAMP}. Every one of its 80 cells is typed.
- Table 3 (section 6.2, "Throughput and Optimization Paradox", "Our 8x H100 experiments"):
  runtime, samples/s and speedup of Full FT, LoRA and DoRA. The table does not name its model;
  section 6.3 speaks of fine-tuning "the 0.5B model" on the 8x H100 node, so it is attributed to
  Qwen2.5-0.5B as the likely one, and every place that shows it says so (`TABLE3_ATTRIBUTION`).
- The sample sizes are not stated; Table 2's percentages imply them (`SAMPLE_SIZES`). They let a
  report draw the paper's own 95% interval beside ours.

Plain data: no file I/O; beyond the standard library only jaxft's method names and its Wilson
interval (jaxft.eval.stats), so the paper's intervals are drawn exactly as ours.
"""

from __future__ import annotations

import dataclasses
import re

from jaxft.eval.stats import wilson_interval
from jaxft.peft.methods import METHODS

ARXIV_ID = "arXiv:2606.06920v1"
CITATION = ("Nair and Tao, \"The Fine-Tuning Trap: Evaluating Negative Transfer and the Role of "
            "PEFT in Sub-1B Mathematical Reasoning\", arXiv:2606.06920v1 (5 June 2026)")

# ---------------------------------------------------------------------------------------------
# The models. Keys are the model names of configs/study.py (the run directories of a study).
# nominal_params comes from the model's name (what the paper's size axis uses), not from a count.
# ---------------------------------------------------------------------------------------------

MODELS = {
    "smollm2-135m": {"name": "SmolLM2-135M", "nominal_params": 135e6,
                     "aliases": ("smollm2-135m-instruct", "smollm2-135m-instruct-q4")},
    "smollm2-360m": {"name": "SmolLM2-360M", "nominal_params": 360e6,
                     "aliases": ("smollm2-360m-instruct",)},
    "qwen25-05b": {"name": "Qwen2.5-0.5B", "nominal_params": 0.5e9,
                   "aliases": ("qwen2.5-0.5b", "qwen2.5-0.5b-instruct")},
    "olmo-1b": {"name": "OLMo-1B", "nominal_params": 1e9, "aliases": ()},
    "gemma-2b": {"name": "Gemma-2B", "nominal_params": 2e9, "aliases": ()},
}

BENCHMARKS = ("orcamath", "gsm8k", "math", "svamp")
TABLE2_METHODS = ("zero-shot", *METHODS)
TABLE3_METHODS = METHODS
TABLE3_FIELDS = ("runtime_seconds", "samples_per_second", "speedup")

# Section 6.3: "assuming a cloud rental cost of $4.00 per H100-hour".
PRICE_PER_HOUR = 4.00

# Problems per benchmark, implied by Table 2's percentages (the text states none): each of the
# SmolLM2-135M, Qwen2.5-0.5B and OLMo-1B cells is a whole number of problems at these sizes.
SAMPLE_SIZES = {"orcamath": 500, "gsm8k": 1319, "math": 5000, "svamp": 300}
SAMPLE_SIZE_NOTE = ("not stated in the paper; implied by Table 2's percentages: 6.00 = 30/500 "
                    "(OrcaMath), 1.44 = 19/1319 (GSM8K), 5.56 = 278/5000 (MATH), 1.33 = 4/300 "
                    "(SVAMP); GSM8K 1,319, MATH 5,000 and SVAMP 300 are the whole test splits")

# ---------------------------------------------------------------------------------------------
# Table 2: exact match (%). model -> method -> (orcamath, gsm8k, math, svamp).
# ---------------------------------------------------------------------------------------------

_T2 = {
    "smollm2-135m": {"zero-shot": (6.00, 1.44, 5.56, 1.33),
                     "full": (4.80, 1.44, 5.84, 1.00),
                     "lora": (6.00, 1.67, 5.34, 1.33),
                     "dora": (6.40, 1.36, 5.54, 1.67)},
    "smollm2-360m": {"zero-shot": (11.50, 4.20, 6.10, 3.50),
                     "full": (9.20, 3.80, 6.00, 2.10),
                     "lora": (14.80, 6.50, 6.80, 5.20),
                     "dora": (15.20, 7.10, 6.90, 5.80)},
    "qwen25-05b": {"zero-shot": (25.00, 35.63, 24.26, 2.33),
                   "full": (35.60, 38.59, 22.52, 0.00),
                   "lora": (36.00, 39.27, 26.00, 1.00),
                   "dora": (35.80, 39.35, 25.42, 1.33)},
    "olmo-1b": {"zero-shot": (7.00, 1.21, 5.84, 1.33),
                "full": (10.40, 4.02, 5.12, 3.00),
                "lora": (6.80, 3.49, 5.64, 2.67),
                "dora": (6.60, 2.50, 5.46, 2.33)},
    "gemma-2b": {"zero-shot": (18.50, 15.20, 10.10, 12.40),
                 "full": (24.20, 19.80, 11.50, 18.20),
                 "lora": (22.10, 18.50, 11.20, 16.50),
                 "dora": (22.80, 18.90, 11.40, 16.80)},
}

# ---------------------------------------------------------------------------------------------
# Table 3: method -> (runtime in seconds, samples/s, speedup = samples/s over Full FT's), for the
# one model the table covers (attributed below).
# ---------------------------------------------------------------------------------------------

TABLE3_MODEL = "qwen25-05b"
TABLE3_ATTRIBUTION = ("Qwen2.5-0.5B (likely; the table does not name its model, section 6.3 "
                      "speaks of the 0.5B model on 8x H100)")
TABLE3_LABEL = "Qwen2.5-0.5B (likely)"
TABLE3_DEVICES = 8  # section 6.2: "Our 8x H100 experiments"
_T3 = {"full": (10289.0, 0.92, 1.00), "lora": (19336.0, 0.49, 0.53), "dora": (25960.0, 0.36, 0.39)}

# What the paper trained on (sections 4.3 and 4.4), to tell a run at its scale from a smaller one.
TRAINING = {"task": "orcamath", "examples": 10_000, "examples_per_step": 64}

SOURCES = {
    "table2": (f"{CITATION}, Table 2 (section 5, Empirical Results): exact match (%); typed from "
               "../shared/paper/table2.csv, checked cell by cell by tests/test_paper_tables.py"),
    "table3": (f"{CITATION}, Table 3 (section 6.2, Throughput and Optimization Paradox: \"Our 8x "
               "H100 experiments\"); typed from ../shared/paper/table3.csv; its model is not named "
               "(TABLE3_ATTRIBUTION)"),
    "price": f"{CITATION}, section 6.3: \"$4.00 per H100-hour\"",
    "sample_sizes": SAMPLE_SIZE_NOTE,
    "training": (f"{CITATION}, section 4.3: \"a stratified subset of 10,000 examples from "
                 "OrcaMath\"; section 4.4: batch size 64"),
}


@dataclasses.dataclass(frozen=True)
class PaperTables:
    """The published tables in one value, so tests (and other studies) can pass their own."""

    models: dict  # key -> {"name", "nominal_params", "aliases"}
    benchmarks: tuple
    table2: dict  # (model, method, benchmark) -> exact match %
    table3: dict  # (model, method, field) -> number
    price_per_hour: float
    notes: dict  # (table, model, method, benchmark|field) -> a note on that one value
    citation: str = CITATION
    sample_sizes: dict = dataclasses.field(default_factory=dict)  # benchmark -> problems
    sources: dict = dataclasses.field(default_factory=dict)  # "table2", "table3", ... -> text
    table3_attribution: str = ""  # how Table 3's model was identified, shown wherever it is
    table3_label: str = ""  # the short form of it in a table row ("Qwen2.5-0.5B (likely)")
    table3_devices: int = 1  # GPUs of Table 3's runtime (device-hours = runtime x devices)
    training: dict = dataclasses.field(default_factory=dict)  # {"task", "examples", ...}

    def exact_match(self, model: str, method: str, benchmark: str) -> float | None:
        return self.table2.get((model, method, benchmark))

    def throughput(self, model: str, method: str, field: str) -> float | None:
        return self.table3.get((model, method, field))

    def note(self, *key) -> str | None:
        return self.notes.get(key)

    @property
    def table3_models(self) -> list[str]:
        return [m for m in self.models if any(k[0] == m for k in self.table3)]

    def model_name(self, key: str, table: str = "table2") -> str:
        """The model's name; in Table 3, its short attribution when the table names no model."""
        if table == "table3" and self.table3_label and key in self.table3_models:
            return self.table3_label
        return self.models[key]["name"]

    def sample_size(self, benchmark: str) -> int | None:
        return self.sample_sizes.get(benchmark)

    def implied_count(self, model: str, method: str, benchmark: str) -> int | None:
        """The k of k/n problems the printed percentage stands for (two decimals), if one does."""
        value, n = self.exact_match(model, method, benchmark), self.sample_size(benchmark)
        if value is None or n is None:
            return None
        k = round(value * n / 100.0)
        return k if round(100.0 * k / n, 2) == round(value, 2) else None

    def interval(self, model: str, method: str, benchmark: str) -> tuple[float, float] | None:
        """The paper's own 95% Wilson interval at its sample size; None without value or size.

        A value that is no whole number of problems (see `implied_count`) is drawn at its own
        share, value x n / 100 problems: the interval is then approximate, and reports say so.
        """
        value, n = self.exact_match(model, method, benchmark), self.sample_size(benchmark)
        if value is None or n is None:
            return None
        k = self.implied_count(model, method, benchmark)
        return wilson_interval(k if k is not None else value * n / 100.0, n)

    def match(self, run_model: str) -> str | None:
        """The paper model a run directory's model name stands for (case and punctuation aside)."""
        want = _normal(run_model)
        for key, info in self.models.items():
            if want in {_normal(key), *(_normal(a) for a in info.get("aliases", ()))}:
                return key
        return None


def _normal(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _flatten2(t2: dict) -> dict:
    return {(m, meth, b): v for m, rows in t2.items() for meth, vals in rows.items()
            for b, v in zip(BENCHMARKS, vals, strict=True)}


def _flatten3(model: str, t3: dict) -> dict:
    return {(model, meth, f): v for meth, vals in t3.items()
            for f, v in zip(TABLE3_FIELDS, vals, strict=True)}


STUDY = PaperTables(models=MODELS, benchmarks=BENCHMARKS, table2=_flatten2(_T2),
                    table3=_flatten3(TABLE3_MODEL, _T3), price_per_hour=PRICE_PER_HOUR, notes={},
                    sample_sizes=SAMPLE_SIZES, sources=SOURCES,
                    table3_attribution=TABLE3_ATTRIBUTION, table3_label=TABLE3_LABEL,
                    table3_devices=TABLE3_DEVICES, training=TRAINING)
