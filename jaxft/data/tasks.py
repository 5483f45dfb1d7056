"""The task registry: one `Task` per benchmark, and `load_task`, which turns any of them into `Example`s.

A `Task` says where its rows come from (local JSON Lines, else the Hugging Face hub), how a row
becomes an `Example`, how a reference solution states its answer, which scorer grades generations,
the stop strings that end a generation, and how many worked examples a few-shot prompt shows.
Everything that lists or branches on tasks (the eval CLI's choices, the report's column order,
the study configs' per-task limits) reads `TASKS`/`REGISTRY` here.

Dependencies point one way: a `Task` names its scorer ("numeric" or "math", the kinds of
`jaxft.eval.scoring.SCORERS`) without importing the scorer, and the scorer knows nothing of tasks;
both read numbers and answer statements through `jaxft.eval.numeric`. The evaluator
(`jaxft.eval.runner`) joins a task to its scorer.

Source order: `<data_dir>/<task>/<split>.jsonl` when it exists (data_dir: the argument, else
$JAXFT_DATA_DIR, else `<repo>/../shared/data`), otherwise the Hugging Face hub via `datasets`:

    orcamath microsoft/orca-math-word-problems-200k (one 200035-row "train" split)
    gsm8k    openai/gsm8k (config "main")
    math     EleutherAI/hendrycks_math: its seven subject configs concatenated in alphabetical
             order (hendrycks/competition_math is no longer downloadable)
    math500  HuggingFaceH4/MATH-500 (test only)
    svamp    ChilleD/SVAMP (capitalised field names are accepted)

OrcaMath has no held-out split, so both splits are derived from its rows by
`orcamath_split_indices`: the test split is a fixed 500-row slice (its seed is a constant, so
training with any `seed` never touches it) and the train split is a `seed`-shuffled draw from the
remaining rows. A local `orcamath/train.jsonl` is treated as the full release and split the same
way, unless `orcamath/test.jsonl` sits next to it: then the folder is taken as already split and
both files are used as they are.

`limit` keeps the first rows of a split, except for derived OrcaMath train, where it is the size
of the draw (default ORCAMATH_TRAIN_SIZE); smaller draws are prefixes of larger ones.
"""

from __future__ import annotations

import dataclasses
import os
import random
import re
from collections.abc import Callable, Mapping
from types import MappingProxyType

from jaxft.data.orcamath_labels import orcamath_answer
from jaxft.errors import DataError
from jaxft.eval.math_normalize import last_boxed
from jaxft.eval.numeric import numbers_equal, stated_answer
from jaxft.jsonl import iter_jsonl

DEFAULT_DATA_DIR_ENV = "JAXFT_DATA_DIR"

ORCAMATH_TEST_SIZE = 500
ORCAMATH_TRAIN_SIZE = 10_000
ORCAMATH_TEST_SEED = 0

_MATH_SUBJECTS = ("algebra", "counting_and_probability", "geometry", "intermediate_algebra",
                  "number_theory", "prealgebra", "precalculus")

# What ends a generation, per prompt template (jaxft.data.prompts.TEMPLATES); a task may set its own.
STOP_STRINGS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    # "plain" generations that do not stop go on with an invented "Question: ..." block.
    "plain": ("\nQuestion:", "\n\n\n"),
    # Chat models end their turn with an EOS/end-of-turn token instead.
    "chat": (),
})


@dataclasses.dataclass(frozen=True)
class Example:
    """One problem, whatever the source: prompts and scorers read only these fields."""

    task: str
    split: str
    index: int
    id: str
    question: str
    solution: str
    answer: str

    @property
    def ambiguous(self) -> bool:
        """No reference answer could be read from the solution (OrcaMath): not scored."""
        return not self.answer


# ---------------------------------------------------------------------------------------------
# Locating and reading sources
# ---------------------------------------------------------------------------------------------

def default_data_dir() -> str | None:
    """$JAXFT_DATA_DIR, else the checkout's sibling `shared/data` folder when it exists."""
    env = os.environ.get(DEFAULT_DATA_DIR_ENV)
    if env:
        return env
    package_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # <repo>/jaxft
    repo_root = os.path.dirname(package_dir)
    candidate = os.path.join(os.path.dirname(repo_root), "shared", "data")
    return candidate if os.path.isdir(candidate) else None


def _hub_rows(task: Task, split: str) -> list[tuple[str, dict]]:
    """Rows of the hub copy; any failure (no network, no `datasets`) becomes a DataError."""
    repo = task.hub_id
    try:
        import datasets

        parts = [datasets.load_dataset(repo, name, split=split) for name in task.hub_configs or (None,)]
        rows = [row for part in parts for row in part]
    except Exception as e:  # noqa: BLE001 - network, auth and format errors all mean "no data"
        raise DataError(
            f"{task.name}/{split}: no local file and loading {repo!r} from the Hugging Face hub failed "
            f"({type(e).__name__}: {e}); pass --data_dir or set {DEFAULT_DATA_DIR_ENV} to a folder "
            f"holding {task.name}/{split}.jsonl") from e
    return [(f"{repo}[{split}] row {i}", row) for i, row in enumerate(rows)]


# ---------------------------------------------------------------------------------------------
# Per-task row parsing
# ---------------------------------------------------------------------------------------------

def _field(row: dict, name: str, where: str, types: tuple[type, ...] = (str,)):
    if name not in row:
        raise DataError(f"{where}: missing field {name!r}")
    value = row[name]
    if not isinstance(value, types) or isinstance(value, bool):
        expected = " or ".join(t.__name__ for t in types)
        raise DataError(f"{where}: field {name!r} must be {expected}, got {type(value).__name__}")
    return value


_CALCULATOR = re.compile(r"<<[^>]*>>")


def gsm8k_final_answer(answer_text: str) -> str | None:
    """The number after the last '####', commas removed; None when there is no such line."""
    if "####" not in answer_text:
        return None
    final = answer_text.rsplit("####", 1)[1].strip().replace(",", "")
    return final or None


def _gsm8k_reference(solution: str) -> str | None:
    """The release's "#### N" line, else the "The answer is N." that `_parse_gsm8k` puts in its place."""
    return gsm8k_final_answer(solution) or stated_answer(solution)


def _canonical_number(value) -> str | None:
    """145.0 / "145.0" / "145" -> "145"; 2.50 -> "2.5"; None when not a number."""
    try:
        x = float(str(value).replace(",", "").strip())
    except ValueError:
        return None
    if x != x or x in (float("inf"), float("-inf")):
        return None
    return str(int(x)) if x.is_integer() else repr(x)


def _parse_gsm8k(row: dict, where: str) -> tuple[str | None, str, str, str]:
    question = _field(row, "question", where)
    text = _field(row, "answer", where)
    final = gsm8k_final_answer(text)
    if final is None:
        raise DataError(f"{where}: field 'answer' has no '#### <number>' final line")
    body = _CALCULATOR.sub("", text.rsplit("####", 1)[0]).rstrip()
    solution = f"{body}\nThe answer is {final}." if body else f"The answer is {final}."
    return None, question, solution, final


def _tidy_equation(equation: str) -> str:
    """'( ( 7.0 + 12.0 ) - 15.0 )' -> '((7 + 12) - 15)'."""
    eq = re.sub(r"(\d+)\.0\b", r"\1", equation.strip())
    return eq.replace("( ", "(").replace(" )", ")")


def _parse_svamp(row: dict, where: str) -> tuple[str | None, str, str, str]:
    row = {k.lower(): v for k, v in row.items()}  # ChilleD / original release capitalise names
    body = _field(row, "body", where)
    question = _field(row, "question", where)
    equation = _field(row, "equation", where)
    answer = _canonical_number(_field(row, "answer", where, (str, int, float)))
    if answer is None:
        raise DataError(f"{where}: field 'answer' is not a number: {row['answer']!r}")
    source_id = row.get("id")
    solution = f"{_tidy_equation(equation)} = {answer}. The answer is {answer}."
    return (str(source_id) if source_id is not None else None), body + " " + question, solution, answer


def _parse_math(row: dict, where: str) -> tuple[str | None, str, str, str]:
    problem = _field(row, "problem", where)
    solution = _field(row, "solution", where)
    if "answer" in row:
        answer = _field(row, "answer", where)
    else:
        answer = last_boxed(solution)
        if answer is None:
            raise DataError(f"{where}: field 'solution' has no \\boxed{{...}} answer")
    source_id = row.get("unique_id")
    return (str(source_id) if source_id is not None else None), problem, solution, answer


def _parse_orcamath(row: dict, where: str) -> tuple[str | None, str, str, str]:
    """The answer is read from the solution's closing statement (`orcamath_labels`); "" when it
    cannot be determined, and then no "The answer is" sentence is appended to the target.

    A solution that already states an answer ("the answer is 5") keeps it unless it contradicts
    the closing statement: such a row is ambiguous too, since the scorer reads the first one.
    """
    question = _field(row, "question", where)
    text = _field(row, "answer", where).strip()
    answer = orcamath_answer(text) or ""
    solution = text
    if answer:
        stated = stated_answer(text)
        if stated is None:
            solution = f"{text}\nThe answer is {answer}."
        elif not numbers_equal(stated, answer):
            answer = ""
    return None, question, solution, answer


# ---------------------------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------------------------

Parser = Callable[[dict, str], tuple[str | None, str, str, str]]


@dataclasses.dataclass(frozen=True)
class Task:
    """One benchmark: its data, how its references state answers, and how generations are graded."""

    name: str
    splits: tuple[str, ...]
    parse: Parser  # one source row (and "file:line" for errors) -> (source id, question, solution, answer)
    reference: Callable[[str], str | None]  # the answer a solution (the release's or Example.solution) states
    scorer: str  # "numeric" | "math": which jaxft.eval.scoring scorer grades generations
    hub_id: str
    hub_configs: tuple[str, ...] = ()  # hub dataset configs, concatenated in this order (none: the default)
    derived_splits: bool = False  # one released split; train/test drawn from it by orcamath_split_indices
    shots: int = 5  # worked examples in a few-shot prompt when the caller names no number
    # per prompt template; a task that ends its answers differently sets its own
    stop_strings: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=lambda: STOP_STRINGS)


# In the order reports show them: the study's tables, with MATH-500 after MATH.
REGISTRY: Mapping[str, Task] = MappingProxyType({t.name: t for t in (
    Task("orcamath", ("train", "test"), _parse_orcamath, orcamath_answer, "numeric",
         "microsoft/orca-math-word-problems-200k", derived_splits=True),
    Task("gsm8k", ("train", "test"), _parse_gsm8k, _gsm8k_reference, "numeric", "openai/gsm8k",
         hub_configs=("main",)),
    Task("math", ("train", "test"), _parse_math, last_boxed, "math", "EleutherAI/hendrycks_math",
         hub_configs=_MATH_SUBJECTS),
    Task("math500", ("test",), _parse_math, last_boxed, "math", "HuggingFaceH4/MATH-500"),
    Task("svamp", ("train", "test"), _parse_svamp, stated_answer, "numeric", "ChilleD/SVAMP"),
)})
TASKS: tuple[str, ...] = tuple(REGISTRY)


def get_task(name: str) -> Task:
    if name not in REGISTRY:
        raise DataError(f"unknown task {name!r}; expected one of: {', '.join(TASKS)}")
    return REGISTRY[name]


def available_splits(task: str) -> tuple[str, ...]:
    return get_task(task).splits


def answer_from_solution(task: str, solution: str) -> str | None:
    """Final answer a reference solution states, or None when it states none."""
    return get_task(task).reference(solution)


# ---------------------------------------------------------------------------------------------
# OrcaMath split derivation
# ---------------------------------------------------------------------------------------------

def orcamath_split_indices(n_rows: int, split: str, *, seed: int = 0,
                           train_size: int | None = ORCAMATH_TRAIN_SIZE,
                           test_size: int = ORCAMATH_TEST_SIZE,
                           test_seed: int = ORCAMATH_TEST_SEED) -> list[int]:
    """Source-row indices of a derived OrcaMath split; a pure function of its arguments.

    test: the first `test_size` rows of a `test_seed` permutation (independent of `seed`).
    train: the other rows, shuffled with `seed`, first `train_size` (None: all of them); so the
    two never overlap and a smaller train draw is a prefix of a larger one.
    """
    if split not in ("train", "test"):
        raise DataError(f"unknown orcamath split {split!r}; expected one of: train, test")
    if n_rows <= test_size:
        raise DataError(f"orcamath: {n_rows} rows cannot hold a {test_size}-row test slice "
                        "and a training set")
    order = list(range(n_rows))
    random.Random(test_seed).shuffle(order)
    if split == "test":
        return order[:test_size]
    rest = sorted(order[test_size:])
    random.Random(seed).shuffle(rest)
    return rest if train_size is None else rest[:train_size]


# ---------------------------------------------------------------------------------------------
# Public loader
# ---------------------------------------------------------------------------------------------

def _resolve_dir(data_dir: str | None) -> str | None:
    base = data_dir if data_dir is not None else default_data_dir()
    if base is not None and not os.path.isdir(base):
        raise DataError(f"data dir {base!r} does not exist (from --data_dir or "
                        f"{DEFAULT_DATA_DIR_ENV})")
    return base


def _rows(task: Task, split: str, base: str | None, limit: int | None) -> list[tuple[str, dict]]:
    path = os.path.join(base, task.name, f"{split}.jsonl") if base else None
    if path and os.path.isfile(path):
        return list(iter_jsonl(path, limit=limit))
    rows = _hub_rows(task, split)
    return rows if limit is None else rows[:limit]


def _derived_rows(task: Task, split: str, base: str | None, limit: int | None,
                  seed: int) -> list[tuple[str, dict]]:
    folder = os.path.join(base, task.name) if base else None
    if folder and os.path.isfile(os.path.join(folder, "test.jsonl")):  # pre-split by the user
        return _rows(task, split, base, limit)
    local_full = os.path.join(folder, "train.jsonl") if folder else None
    if local_full and os.path.isfile(local_full):
        source = list(iter_jsonl(local_full))
    else:
        source = _hub_rows(task, "train")
    if split == "train":
        size = ORCAMATH_TRAIN_SIZE if limit is None else limit
        return [source[i] for i in orcamath_split_indices(len(source), "train", seed=seed,
                                                          train_size=size)]
    picked = [source[i] for i in orcamath_split_indices(len(source), "test")]
    return picked if limit is None else picked[:limit]


def load_task(task: str, split: str = "test", *, data_dir: str | None = None,
              limit: int | None = None, seed: int = 0) -> list[Example]:
    """Examples of one task split; see the module docstring for sources and `limit`.

    `seed` only picks the OrcaMath training draw; every other split is a fixed file.
    """
    spec = get_task(task)
    if split not in spec.splits:
        raise DataError(f"task {task!r} has no split {split!r}; expected one of: "
                        f"{', '.join(spec.splits)}")
    if limit is not None and (not isinstance(limit, int) or limit < 0):
        raise DataError(f"limit must be a non-negative int or None, got {limit!r}")
    base = _resolve_dir(data_dir)
    if spec.derived_splits:
        rows = _derived_rows(spec, split, base, limit, seed)
    else:
        rows = _rows(spec, split, base, limit)
    examples = []
    for index, (where, row) in enumerate(rows):
        source_id, question, solution, answer = spec.parse(row, where)
        examples.append(Example(task=task, split=split, index=index,
                                id=source_id or f"{task}-{split}-{index}",
                                question=question, solution=solution, answer=answer))
    return examples
