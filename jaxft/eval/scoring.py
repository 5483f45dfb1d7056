"""Exact-match scorers: pull the final answer out of a generation and compare it to the reference.

Which answer counts when a generation states several: the FIRST "The answer is ..." / "#### ..."
statement. Small models that miss the stop string keep going with an invented next question and
its own "The answer is ...", so the first statement is the one that answers the prompt; as a
second guard everything from the first line starting with "Question:" on is dropped before
extraction. Self-corrections ("The answer is 5. Wait, ... The answer is 6.") are therefore
scored on 5; that is the standard GSM8K few-shot convention and errs towards strictness.

MATH is scored on the last complete ``\\boxed{}`` before any "Question:" (Hendrycks' convention:
reference solutions that give a second method end with the same box again).
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from fractions import Fraction

from jaxft.data.tasks import TASKS
from jaxft.eval.math_normalize import last_boxed, math_equiv

NUMERIC_TASKS = ("gsm8k", "svamp", "orcamath")
MATH_TASKS = ("math", "math500")

# Non-integers compare equal within this tolerance (float noise, "0.30000000000000004").
ABS_TOL = 1e-4
REL_TOL = 1e-6

_NEXT_QUESTION = re.compile(r"(?:^|\n)[ \t]*Question:")
# "####", "The answer is", "the final answer is", and "Answer:"/"**Final Answer:**" only at the
# start of a line ("To find the answer: 16 - 3 = 13 ..." is reasoning, not a statement).
_STATEMENT = re.compile(r"####|\banswer\s+is\b|^[ \t*#_]*(?:final\s+)?answer[ \t*]*:",
                        re.IGNORECASE | re.MULTILINE)
# A sign only when it cannot be a binary minus ("10-3" holds 10 and 3); thousands commas only in
# groups of three ("3,4,5" is a list); an optional "/d" makes a fraction.
_NUMBER = re.compile(
    r"(?<![\w.$])\$?-?\$?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?(?:/\d+(?:\.\d+)?)?"
    r"|(?<![\w.])-?\.\d+"
)
_LATEX_FRAC = re.compile(r"\\[dt]?frac\{\s*(-?[\d.,]+)\s*\}\{\s*(-?[\d.,]+)\s*\}")


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")


def _truncate(generation: str) -> str:
    """Drop an invented follow-up question and everything after it."""
    m = _NEXT_QUESTION.search(generation)
    return generation[:m.start()] if m else generation


def _prepare_numeric(text: str) -> str:
    text = text.replace("\u2212", "-").replace("{,}", ",").replace("\\,", "").replace("\\$", "$")
    return _LATEX_FRAC.sub(r"\1/\2", text)


def _to_fraction(token: str) -> Fraction | None:
    s = token.replace("$", "").replace(",", "").strip()
    try:
        if "/" in s:
            num, den = s.split("/")
            return Fraction(num) / Fraction(den)
        return Fraction(s)
    except (ValueError, ZeroDivisionError):
        return None


def _canonical(token: str) -> str | None:
    """'$1,080.00' -> '1080', '-2.50' -> '-2.5', '6/8' -> '3/4'; None if not a number."""
    value = _to_fraction(token)
    if value is None:
        return None
    if value.denominator == 1:
        return str(value.numerator)
    if "/" in token:
        return f"{value.numerator}/{value.denominator}"
    return format(Decimal(token.replace("$", "").replace(",", "").strip()).normalize(), "f")


def _first_number(segment: str) -> str | None:
    for m in _NUMBER.finditer(segment):
        canonical = _canonical(m.group())
        if canonical is not None:
            return canonical
    return None


def _statement_segments(text: str):
    """The sentence after each answer statement, in order ("Answer: The answer is 5" once)."""
    for m in _STATEMENT.finditer(text):
        rest = text[m.end():].lstrip(" \t\n:*")
        if _STATEMENT.match(rest) or re.match(r"(?:the\s+)?(?:final\s+)?answer\b", rest, re.I):
            continue  # "Final Answer: The final answer is ...": the inner statement follows
        yield rest


def stated_answer(text: str) -> str | None:
    """The number given by the first "The answer is"/"####" statement that gives one."""
    text = _prepare_numeric(text)
    for rest in _statement_segments(text):
        sentence = rest.split("\n", 1)[0]
        sentence = re.split(r"\.(?=\s|$)", sentence, maxsplit=1)[0]
        if "=" in sentence:  # "The answer is 3 + 4 = 7"
            sentence = sentence.rsplit("=", 1)[1]
        number = _first_number(sentence)
        if number is not None:
            return number
    return None


def _extract_numeric(generation: str) -> str | None:
    text = _truncate(generation)
    answer = stated_answer(text)
    if answer is not None:
        return answer
    boxed = last_boxed(text)
    if boxed is not None:
        answer = _first_number(_prepare_numeric(boxed))
        if answer is not None:
            return answer
    numbers = [c for c in (_canonical(m.group()) for m in _NUMBER.finditer(_prepare_numeric(text)))
               if c is not None]
    return numbers[-1] if numbers else None


def _extract_math(generation: str) -> str | None:
    text = _truncate(generation)
    boxed = last_boxed(text)
    if boxed:
        return boxed
    for rest in _statement_segments(text):  # Minerva style: "The final answer is $\frac{1}{2}$."
        line = rest.split("\n", 1)[0].strip()
        if line.startswith("$"):
            line = line.lstrip("$").split("$", 1)[0]
        else:  # up to the sentence end or the first English word ("7 and so on")
            line = re.split(r"\.(?=\s|$)", line, maxsplit=1)[0]
            line = re.split(r"\s+(?=[A-Za-z]{2,}(?:[\s,;]|$))", line, maxsplit=1)[0]
        line = line.strip().rstrip(".")
        if line:
            return line
    return None


def extract_answer(task: str, generation: str) -> str | None:
    """The final answer a generation gives (canonical number for word problems), or None."""
    _check_task(task)
    if task in MATH_TASKS:
        return _extract_math(generation)
    return _extract_numeric(generation)


def numbers_equal(pred: str, ref: str) -> bool:
    """Numeric equality of two answer strings within ABS_TOL/REL_TOL; False if either is no number."""
    p, r = _to_fraction(pred), _to_fraction(ref)
    if p is None or r is None:
        return False
    if p.denominator == 1 and r.denominator == 1:  # integers: exact, or 1000001 would pass
        return p == r
    return p == r or math.isclose(float(p), float(r), rel_tol=REL_TOL, abs_tol=ABS_TOL)


def is_correct(task: str, generation: str, reference_answer: str) -> bool:
    """Whether the generation's final answer matches the reference; no extractable answer is wrong."""
    _check_task(task)
    pred = extract_answer(task, generation)
    if pred is None:
        return False
    if task in MATH_TASKS:
        return math_equiv(pred, reference_answer)
    ref = _canonical(_prepare_numeric(reference_answer).strip().rstrip("."))
    if ref is None:  # a non-numeric reference (rare in OrcaMath): compare text
        return bool(reference_answer.strip()) and pred.strip().lower() == reference_answer.strip().lower()
    return numbers_equal(pred, ref)
