"""Why a cell of the paper's Table 2 has no jaxft value, and how a computed one differs in scale.

The reasons are this repository's offline facts, fixed in code rather than probed on the machine,
so a report rebuilt from kept inputs says the same thing wherever it is rebuilt:
- data: ../shared/data holds GSM8K, SVAMP, MATH and MATH-500; OrcaMath is on the Hugging Face hub
  only (../shared/data/README.md), so no OrcaMath cell can be evaluated offline;
- models: the only offline weights are the packaged GGUFs of `jaxft.models.registry`
  (SmolLM2-135M-Instruct, Q4_1; Gemma 3 270M, Q4_K_M, in none of the paper's tables; `OFFLINE_WEIGHTS`
  names them here, because importing the registry pulls in JAX, and a test keeps the two equal); the
  paper's other four models are hub downloads;
- training at the study's scale (10k OrcaMath examples, batch 64; `paper.TRAINING`) needs the
  OrcaMath data and a GPU: a 2-core CPU takes about 35 minutes per 1,000 examples at 135M.
"""

from __future__ import annotations

from jaxft.peft.methods import METHODS as FINE_TUNED
from jaxft.report.paper import PaperTables

OFFLINE_BENCHMARKS = ("gsm8k", "svamp", "math", "math500")
OFFLINE_WEIGHTS = ("smollm2-135m-instruct-q4", "gemma-3-270m-q4")  # == jaxft.models.registry.GGUF_PACKAGES
# A paper benchmark and the run benchmarks that stand for it, best first (MATH-500 is a
# 500-problem subset of the MATH test set).
STANDS_FOR = {"math": ("math", "math500")}
NAMES = {"orcamath": "OrcaMath", "gsm8k": "GSM8K", "math": "MATH", "math500": "MATH-500",
         "svamp": "SVAMP"}

DATA_NOT_OFFLINE = "{name} data not offline (Hugging Face hub only)"
MODEL_NOT_OFFLINE = "model not offline"
NEEDS_TRAINING = "needs training at the study's scale (10k OrcaMath, GPU)"
NOT_IN_GRID = "not in this study's grid"
NOT_FINISHED = "in this study's grid, not finished (no metrics.json yet)"


def name(benchmark: str) -> str:
    return NAMES.get(benchmark, benchmark)


def offline_models(paper: PaperTables) -> set[str]:
    """Paper models whose weights ship offline (a packaged GGUF of the same model)."""
    return {key for key in map(paper.match, OFFLINE_WEIGHTS) if key is not None}


def run_benchmark(paper_benchmark: str, available) -> str | None:
    """The run benchmark standing for a paper benchmark among `available`, best first."""
    return next((b for b in STANDS_FOR.get(paper_benchmark, (paper_benchmark,)) if b in available),
                None)


def not_run_reasons(paper: PaperTables, key: str, trained: bool, method: str, benchmark: str,
                    in_grid: bool) -> list[str]:
    """Every reason that applies, most fundamental first; `trained`: a training run of this
    model and method exists; `in_grid`: the study's grid holds this cell."""
    reasons = []
    if benchmark not in OFFLINE_BENCHMARKS:
        reasons.append(DATA_NOT_OFFLINE.format(name=name(benchmark)))
    if key not in offline_models(paper):
        reasons.append(MODEL_NOT_OFFLINE)
    if method in FINE_TUNED and not trained:
        reasons.append(NEEDS_TRAINING)
    if not reasons:
        reasons.append(NOT_FINISHED if in_grid else NOT_IN_GRID)
    return reasons


def scale_notes(paper: PaperTables, paper_benchmark: str, benchmark: str, n: int,
                method: str, examples: int | None, task: str | None) -> list[str]:
    """How a computed cell differs from the paper's in size; empty at the paper's own scale."""
    notes = []
    want = paper.sample_size(paper_benchmark)
    if benchmark != paper_benchmark:
        notes.append(f"{name(benchmark)}, n={n:,} of {name(paper_benchmark)}'s "
                     f"{want:,}" if want else f"{name(benchmark)}, n={n:,}")
    elif want is not None and n != want:
        notes.append(f"n={n:,} of the paper's {want:,}")
    train = paper.training
    if method in FINE_TUNED and train:
        same = examples == train.get("examples") and task == train.get("task")
        if not same:
            seen = "an unrecorded number of" if examples is None else f"{examples:,}"
            what = f"{name(task)} " if task else ""
            notes.append(f"trained on {seen} {what}examples, not the paper's "
                         f"{train['examples']:,} {name(train['task'])}")
    return notes
