"""Numbers and answer statements in free text, read the same way in generations and reference solutions.

Shared by the scorer (`jaxft.eval.scoring`, generations) and the task loaders (`jaxft.data.tasks`,
`jaxft.data.orcamath_labels`, reference solutions), so that neither of those imports the other.

Which statement counts when a text makes several: the FIRST "The answer is ..." / "#### ..." that
gives a number (see `jaxft.eval.scoring` for why). A statement's justification is not its answer:
in "The answer is 5 since 5 x 3 = 15" the value before "since/because/which/;" counts.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from fractions import Fraction

# Non-integers compare equal within this tolerance (float noise, "0.30000000000000004").
ABS_TOL = 1e-4
REL_TOL = 1e-6

# "####", "The answer is", "the final answer is", and "Answer:"/"**Final Answer:**" only at the
# start of a line ("To find the answer: 16 - 3 = 13 ..." is reasoning, not a statement).
_STATEMENT = re.compile(r"####|\banswer\s+is\b|^[ \t*#_]*(?:final\s+)?answer[ \t*]*:",
                        re.IGNORECASE | re.MULTILINE)
# A sign only when it cannot be a binary minus ("10-3" holds 10 and 3); thousands commas only in
# groups of three ("3,4,5" is a list); an optional "/d" makes a fraction. Digits joined by colons
# are one ratio ("3:4", also a clock time), and "2 1/2" is one mixed number.
_NUMBER = re.compile(
    r"(?<![\w.$:])\d+(?::\d+)+(?![\d:]|\.\d)"
    r"|(?<![\w.$/])-?\d+[ \t]+\d+/\d+(?![\d/]|\.\d)"
    r"|(?<![\w.$])\$?-?\$?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?(?:/\d+(?:\.\d+)?)?"
    r"|(?<![\w.])-?\.\d+"
)
# What follows a stated answer to justify it ("The answer is 5 since 5 x 3 = 15"): not the answer.
_JUSTIFICATION = re.compile(
    r"\b(?:since|because|given\s+that|due\s+to|which|where|so\s+that|for\s+(?:example|instance)"
    r"|as(?=\s+(?:\d|we|it|there|he|she|they|this|that|each|expected|required)\b))\b"
    r"|;", re.IGNORECASE)
_LABEL_BEFORE = re.compile(r"\b(?:step|week|day|part|case|question|problem|stage|round|level|phase"
                           r"|month|year|item|line|method|option|example)\s*$", re.IGNORECASE)
_LATEX_FRAC = re.compile(r"\\[dt]?frac\{\s*(-?[\d.,]+)\s*\}\{\s*(-?[\d.,]+)\s*\}")


def prepare_numeric(text: str) -> str:
    """LaTeX fractions as a/b, unicode minus as "-", "\\$" as "$": the forms _NUMBER reads."""
    text = text.replace("\u2212", "-").replace("{,}", ",").replace("\\,", "").replace("\\$", "$")
    return _LATEX_FRAC.sub(r"\1/\2", text)


def _to_fraction(token: str) -> Fraction | None:
    s = token.replace("$", "").replace(",", "").strip()
    try:
        mixed = re.fullmatch(r"(-?)(\d+)\s+(\d+)/(\d+)", s)  # "2 1/2", "-2 1/2"
        if mixed:
            sign, whole, num, den = mixed.groups()
            value = Fraction(int(whole)) + Fraction(int(num), int(den))
            return -value if sign else value
        if "/" in s:
            num, den = s.split("/")
            return Fraction(num) / Fraction(den)
        return Fraction(s)
    except (ValueError, ZeroDivisionError):
        return None


def _ratio(token: str) -> tuple[int, ...] | None:
    """'6:8' -> (3, 4): a ratio in lowest terms; None if not a ratio."""
    if not re.fullmatch(r"\d+(?::\d+)+", token.strip()):
        return None
    parts = [int(p) for p in token.strip().split(":")]
    if 0 in parts:  # "7:00" is a clock time, not the ratio 1:0
        return tuple(parts)
    g = math.gcd(*parts)
    return tuple(p // g for p in parts)


def canonical(token: str) -> str | None:
    """'$1,080.00' -> '1080', '-2.50' -> '-2.5', '6/8' -> '3/4', '2 1/2' -> '5/2', '3:4' kept;
    None if not a number."""
    if _ratio(token) is not None:
        return token.strip()
    value = _to_fraction(token)
    if value is None:
        return None
    if value.denominator == 1:
        return str(value.numerator)
    if "/" in token:
        return f"{value.numerator}/{value.denominator}"
    return format(Decimal(token.replace("$", "").replace(",", "").strip()).normalize(), "f")


def canonical_numbers(text: str) -> list[tuple[int, int, str]]:
    """(start, end, canonical form) of each number in `text` (already through prepare_numeric).

    "Week 3:210" is a label and a number, not the ratio 3:210: after a label word only the part
    after the colon is kept.
    """
    spans = []
    for m in _NUMBER.finditer(text):
        start, token = m.start(), m.group()
        if ":" in token and _LABEL_BEFORE.search(text[max(0, start - 12):start]):
            offset = token.rindex(":") + 1
            start, token = start + offset, token[offset:]
        value = canonical(token)
        if value is not None:
            spans.append((start, m.end(), value))
    return spans


def first_number(segment: str) -> str | None:
    spans = canonical_numbers(segment)
    return spans[0][2] if spans else None


def statement_segments(text: str):
    """The sentence after each answer statement, in order ("Answer: The answer is 5" once)."""
    for m in _STATEMENT.finditer(text):
        rest = text[m.end():].lstrip(" \t\n:*")
        if _STATEMENT.match(rest) or re.match(r"(?:the\s+)?(?:final\s+)?answer\b", rest, re.I):
            continue  # "Final Answer: The final answer is ...": the inner statement follows
        yield rest


def without_justification(sentence: str) -> str:
    """The statement before "since/because/which ..." when a number precedes that word."""
    for m in _JUSTIFICATION.finditer(sentence):
        if first_number(sentence[:m.start()]) is not None:
            return sentence[:m.start()]
    return sentence


def stated_answer(text: str) -> str | None:
    """The number given by the first "The answer is"/"####" statement that gives one."""
    text = prepare_numeric(text)
    for rest in statement_segments(text):
        sentence = rest.split("\n", 1)[0]
        sentence = re.split(r"\.(?=\s|$)", sentence, maxsplit=1)[0]
        sentence = without_justification(sentence)
        if "=" in sentence:  # "The answer is 3 + 4 = 7"
            sentence = sentence.rsplit("=", 1)[1]
        number = first_number(sentence)
        if number is not None:
            return number
    return None


def numbers_equal(pred: str, ref: str) -> bool:
    """Numeric equality of two answer strings within ABS_TOL/REL_TOL; False if either is no number.

    Ratios compare in lowest terms ("6:8" is "3:4"); a two-part ratio a:b also equals a/b,
    except a clock time on the hour, "7:00", which equals 7.
    """
    ratio_p, ratio_r = _ratio(pred), _ratio(ref)
    if ratio_p is not None and ratio_r is not None:
        return ratio_p == ratio_r
    if ratio_p is not None or ratio_r is not None:
        token = pred if ratio_p else ref
        parts = [int(p) for p in token.strip().split(":")]
        if len(parts) != 2:
            return False
        if token.strip().endswith(":00"):
            as_fraction = str(parts[0])
        elif parts[1] == 0:
            return False
        else:
            as_fraction = f"{parts[0]}/{parts[1]}"
        return numbers_equal(as_fraction, ref) if ratio_p else numbers_equal(pred, as_fraction)
    p, r = _to_fraction(pred), _to_fraction(ref)
    if p is None or r is None:
        return False
    if p.denominator == 1 and r.denominator == 1:  # integers: exact, or 1000001 would pass
        return p == r
    return p == r or math.isclose(float(p), float(r), rel_tol=REL_TOL, abs_tol=ABS_TOL)
