"""The study's published numbers, typed by hand, so a report can put them beside ours.

Source: R. Nair and C. Tao, "The Fine-Tuning Trap: Evaluating Negative Transfer and the Role of
PEFT in Sub-1B Mathematical Reasoning", arXiv:2606.06920v1 (5 Jun 2026),
https://arxiv.org/html/2606.06920. Table 2 there is exact match (%) for each model x
{zero-shot, Full FT, LoRA, DoRA} x {OrcaMath, GSM8K, MATH, SVAMP}; Table 3 is training runtime,
samples/s and the speedup of each method; section 6.3 prices runs at $4.00 per H100-hour and
argues that PEFT fits a 24 GB consumer GPU where Full FT does not.

What could be read when this was typed (2026-12-01, no network; stored copies only): the
abstract and the introduction's first paragraph, not the tables. Every cell that could not be
read is None and stays None until someone types it from the paper: a report shows such a cell
as "?", never a guess. The few values present were quoted elsewhere in this repository by
earlier sessions that did see them; `NOTES` says where each one comes from, so it can be checked
against the paper and corrected in one place.

Plain data: no file I/O, no imports beyond the standard library.
"""

from __future__ import annotations

import dataclasses
import re

from jaxft.peft.methods import METHODS

# ---------------------------------------------------------------------------------------------
# The models. Keys are the model names of configs/study.py (the run directories of a study).
# nominal_params comes from the model's name (what the paper's size axis uses), not from a count.
# The stored abstract names only SmolLM2-135M and Qwen2.5-0.5B and says "five sub-1B models
# (135M-1B)"; the other three are configs/study.py's reading of the paper.
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

# Dollars per H100-hour that Table 3 / section 6.3 price training at (as issue 20 quotes it).
PRICE_PER_HOUR = 4.00

# ---------------------------------------------------------------------------------------------
# Table 2: exact match (%). model -> method -> (orcamath, gsm8k, math, svamp).
# ---------------------------------------------------------------------------------------------

_T2 = {
    "smollm2-135m": {"zero-shot": (None, 1.44, None, None),
                     "full": (None, None, None, None),
                     "lora": (None, None, None, None),
                     "dora": (None, None, None, None)},
    "smollm2-360m": {"zero-shot": (None, None, None, None),
                     "full": (None, None, None, None),
                     "lora": (None, None, None, None),
                     "dora": (None, None, None, None)},
    "qwen25-05b": {"zero-shot": (None, None, None, None),
                   "full": (None, None, None, None),
                   "lora": (None, None, None, None),
                   "dora": (None, None, None, None)},
    "olmo-1b": {"zero-shot": (None, None, None, None),
                "full": (None, None, None, None),
                "lora": (None, None, None, None),
                "dora": (None, None, None, None)},
    "gemma-2b": {"zero-shot": (None, None, None, None),
                 "full": (None, None, None, None),
                 "lora": (None, None, None, None),
                 "dora": (None, None, None, None)},
}

# ---------------------------------------------------------------------------------------------
# Table 3: model -> method -> (runtime in seconds, samples/s, speedup = method's samples/s over
# Full FT's of the same model).
# ---------------------------------------------------------------------------------------------

_T3 = {
    "smollm2-135m": {"full": (None, None, None), "lora": (None, None, None), "dora": (None, None, None)},
    "smollm2-360m": {"full": (None, None, None), "lora": (None, None, None), "dora": (None, None, None)},
    "qwen25-05b": {"full": (None, None, None), "lora": (None, None, 0.53), "dora": (None, None, 0.39)},
    "olmo-1b": {"full": (None, None, None), "lora": (None, None, None), "dora": (None, None, None)},
    "gemma-2b": {"full": (None, None, None), "lora": (None, None, None), "dora": (None, None, None)},
}

# Where each typed (non-None) value comes from. Keys: ("table2", model, method, benchmark) or
# ("table3", model, method, field).
NOTES = {
    ("table2", "smollm2-135m", "zero-shot", "gsm8k"):
        "Table 2 value as quoted in BENCHMARKS.md (full zero-shot GSM8K test): 1.44% = 19 of "
        "1319; not re-read from the paper in this session.",
    ("table3", "qwen25-05b", "lora", "speedup"):
        "Quoted in BENCHMARKS.md next to the Qwen2.5-0.5B train-step comparison (torch+peft "
        "lora/full throughput): 'the study measured 0.53'; not re-read from the paper.",
    ("table3", "qwen25-05b", "dora", "speedup"):
        "Quoted in BENCHMARKS.md next to the Qwen2.5-0.5B train-step comparison (torch+peft "
        "dora/full throughput): 'the study measured ... 0.39'; not re-read from the paper.",
}
MISSING_NOTE = ("not found in the stored copies of the paper (only its abstract was readable when "
                "this was typed): None until typed from Table 2/3 of arXiv:2606.06920")
CITATION = ("Nair and Tao, \"The Fine-Tuning Trap: Evaluating Negative Transfer and the Role of "
            "PEFT in Sub-1B Mathematical Reasoning\", arXiv:2606.06920")


@dataclasses.dataclass(frozen=True)
class PaperTables:
    """The published tables in one value, so tests (and other studies) can pass their own."""

    models: dict  # key -> {"name", "nominal_params", "aliases"}
    benchmarks: tuple
    table2: dict  # (model, method, benchmark) -> exact match % or None
    table3: dict  # (model, method, field) -> number or None
    price_per_hour: float
    notes: dict
    citation: str = CITATION

    def exact_match(self, model: str, method: str, benchmark: str) -> float | None:
        return self.table2.get((model, method, benchmark))

    def throughput(self, model: str, method: str, field: str) -> float | None:
        return self.table3.get((model, method, field))

    def note(self, *key) -> str:
        return self.notes.get(key, MISSING_NOTE)

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


def _flatten3(t3: dict) -> dict:
    return {(m, meth, f): v for m, rows in t3.items() for meth, vals in rows.items()
            for f, v in zip(TABLE3_FIELDS, vals, strict=True)}


STUDY = PaperTables(models=MODELS, benchmarks=BENCHMARKS, table2=_flatten2(_T2),
                    table3=_flatten3(_T3), price_per_hour=PRICE_PER_HOUR, notes=NOTES)
