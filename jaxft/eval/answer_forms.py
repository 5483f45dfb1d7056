"""Shapes a MATH answer takes besides one expression: text, and set-like forms.

Why: the expression parser reads letters as symbols, so the words "east" and "seat" would be the
same product e*a*s*t; words, names and choice letters are therefore compared as text. And
"x \\in [1,2]", "1 \\le x \\le 2" and "[1,2]" are one answer written three ways, as are
"\\{3\\}", "x = 3" and "3": inequalities and memberships are rewritten to interval notation here
so that `math_normalize` compares them structurally. Inputs are normalised answers (no spaces).
"""

from __future__ import annotations

import re

_COMMAND = re.compile(r"\\(?:begin|end)\{[a-zA-Z*]*\}|\\[a-zA-Z]+")
_WORD = re.compile(r"[A-Za-z]{3,}")
# \text{...} holding letters that are not just the "and"/"or" of a list.
_TEXT_WRAPPED = re.compile(
    r"\\(?:text|textbf|textit|textnormal|mbox)\s*\{\s*(?!(?:and|or)\s*\})[^{}]*[A-Za-z]")
_CHOICE = re.compile(r"\(?([A-E])\)?")

_RELATION = re.compile(r"(\\geqslant|\\leqslant|\\geq|\\leq|\\ge|\\le|\\gt|\\lt|>=|<=|≥|≤|>|<)")
_GREATER = {"\\geqslant", "\\geq", "\\ge", ">=", "≥", "\\gt", ">"}
_STRICT = {"\\gt", "\\lt", ">", "<"}
_VARIABLE = re.compile(r"[a-zA-Z](?:_\{?\w+\}?)?")
_MEMBERSHIP = re.compile(r"[a-zA-Z](?:_\{?\w+\}?)?\\in(?![a-zA-Z])(.+)")
_OR = re.compile(r"\\lor|\\vee|or")


def is_text_answer(raw: str, normalized: str) -> bool:
    """A word, a name or a choice letter, rather than an expression in one-letter variables."""
    bare = _COMMAND.sub(" ", normalized)
    if not re.search(r"[A-Za-z]", bare):
        return False  # e.g. "5\\text{ cm}": the unit is gone, a number is left
    return bool(_WORD.search(bare) or _TEXT_WRAPPED.search(raw)
                or re.fullmatch(r"\([A-E]\)", normalized))


def _text_key(s: str) -> str:
    s = re.sub(r"[\s{}]", "", s).rstrip(".").casefold()
    choice = _CHOICE.fullmatch(s.upper())
    return choice.group(1) if choice else s


def text_equal(a: str, b: str) -> bool:
    """Text answers: equal up to case, spacing and the parentheses of a choice letter."""
    return bool(a) and _text_key(a) == _text_key(b)


def _interval(inequality: str) -> str | None:
    """'x\\ge1' -> '[1,\\infty)', '1<x\\le2' -> '(1,2]'; None unless one variable is bounded."""
    parts = _RELATION.split(inequality)
    if any(not p for p in parts[::2]) or len(parts) not in (3, 5):
        return None
    if len(parts) == 3:
        left, op, right = parts
        if _VARIABLE.fullmatch(left) and not _VARIABLE.fullmatch(right):
            bound, upper = right, op not in _GREATER  # x < 3: 3 bounds from above
        elif _VARIABLE.fullmatch(right) and not _VARIABLE.fullmatch(left):
            bound, upper = left, op in _GREATER  # 3 > x
        else:
            return None
        if upper:
            return f"(-\\infty,{bound}{')' if op in _STRICT else ']'}"
        return f"{'(' if op in _STRICT else '['}{bound},\\infty)"
    low, op1, var, op2, high = parts
    if not _VARIABLE.fullmatch(var) or (op1 in _GREATER) != (op2 in _GREATER):
        return None
    if op1 in _GREATER:  # 2 > x > 1
        low, op1, high, op2 = high, op2, low, op1
    return (f"{'(' if op1 in _STRICT else '['}{low},{high}"
            f"{')' if op2 in _STRICT else ']'}")


def set_form(answer: str) -> str:
    """Interval/union notation for inequalities, the set itself for "x \\in S"; else unchanged."""
    m = _MEMBERSHIP.fullmatch(answer)
    if m:
        return m.group(1)
    if not _RELATION.search(answer):
        return answer
    intervals = [_interval(piece) for piece in _OR.split(answer)]
    if any(iv is None for iv in intervals):
        return answer
    return "\\cup".join(intervals)
