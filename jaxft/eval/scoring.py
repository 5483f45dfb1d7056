"""Exact-match scorers: pull the final answer out of a generation and compare it to the reference.

Scorers are named by kind, not by task: "numeric" (word problems: GSM8K, SVAMP, OrcaMath) and
"math" (MATH, MATH-500). This module knows nothing of tasks; the task registry
(`jaxft.data.tasks.Task.scorer`) names the scorer each task uses, and the evaluator joins the two.
Neither imports the other: what both need to read numbers and answer statements lives in
`jaxft.eval.numeric`.

Which answer counts when a generation states several: the FIRST "The answer is ..." / "#### ..."
statement. Small models that miss the stop string keep going with an invented next question and
its own "The answer is ...", so the first statement is the one that answers the prompt; as a
second guard everything from the first line starting with "Question:" on is dropped before
extraction. Self-corrections ("The answer is 5. Wait, ... The answer is 6.") are therefore
scored on 5; that is the standard GSM8K few-shot convention and errs towards strictness.
A statement's justification is not its answer: in "The answer is 5 since 5 x 3 = 15" the value
before "since/because/which/;" counts.

MATH is scored on the last complete ``\\boxed{}`` before any "Question:" (Hendrycks' convention:
reference solutions that give a second method end with the same box again).
"""

from __future__ import annotations

import re

from jaxft.errors import ConfigError
from jaxft.eval.math_normalize import last_boxed, math_equiv
from jaxft.eval.numeric import (canonical, canonical_numbers, first_number, numbers_equal, prepare_numeric,
                                stated_answer, statement_segments)

SCORERS = ("numeric", "math")

_NEXT_QUESTION = re.compile(r"(?:^|\n)[ \t]*Question:")


def _check_scorer(scorer: str) -> None:
    if scorer not in SCORERS:
        raise ConfigError(f"unknown scorer {scorer!r}; expected one of: {', '.join(SCORERS)}")


def _truncate(generation: str) -> str:
    """Drop an invented follow-up question and everything after it."""
    m = _NEXT_QUESTION.search(generation)
    return generation[:m.start()] if m else generation


def _extract_numeric(generation: str) -> str | None:
    text = _truncate(generation)
    answer = stated_answer(text)
    if answer is not None:
        return answer
    boxed = last_boxed(text)
    if boxed is not None:
        answer = first_number(prepare_numeric(boxed))
        if answer is not None:
            return answer
    numbers = canonical_numbers(prepare_numeric(text))
    return numbers[-1][2] if numbers else None


def _extract_math(generation: str) -> str | None:
    text = _truncate(generation)
    boxed = last_boxed(text)
    if boxed:
        return boxed
    for rest in statement_segments(text):  # Minerva style: "The final answer is $\frac{1}{2}$."
        line = rest.split("\n", 1)[0].strip()
        if line.startswith("$"):
            line = line.lstrip("$").split("$", 1)[0]
        else:  # up to the sentence end or the first English word ("7 and so on", "5, since ...")
            line = re.split(r"\.(?=\s|$)", line, maxsplit=1)[0]
            line = re.split(r"\s+(?=[A-Za-z]{2,}(?:[\s,;]|$))", line, maxsplit=1)[0]
        line = line.strip().rstrip(".,;:").strip()
        if line:
            return line
    return None


def extract_answer(scorer: str, generation: str) -> str | None:
    """The final answer a generation gives (canonical number for word problems), or None."""
    _check_scorer(scorer)
    if scorer == "math":
        return _extract_math(generation)
    return _extract_numeric(generation)


def is_correct(scorer: str, generation: str, reference_answer: str) -> bool:
    """Whether the generation's final answer matches the reference; no extractable answer is wrong."""
    _check_scorer(scorer)
    pred = extract_answer(scorer, generation)
    if pred is None:
        return False
    if scorer == "math":
        return math_equiv(pred, reference_answer)
    ref = canonical(prepare_numeric(reference_answer).strip().rstrip("."))
    if ref is None:  # a non-numeric reference (rare in OrcaMath): compare text
        return bool(reference_answer.strip()) and pred.strip().lower() == reference_answer.strip().lower()
    return numbers_equal(pred, ref)
