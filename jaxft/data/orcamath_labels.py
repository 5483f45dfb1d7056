"""Reference answers for OrcaMath's free-text solutions, or None when the text does not settle one.

OrcaMath rows have no answer field: the answer is whatever the solution's closing sentence says
("Therefore, the area is 25 m^2.", "So, Jungkook has **15** apples."). The last number of the
text is wrong whenever that sentence carries a unit exponent, a rounding remark, a ratio or a
trailing note, so the closing statement is read instead:

1. notes ("Note: ...", "(assuming 30 days)"), rounding remarks ("rounded to 2 decimal places")
   and unit exponents ("m^2") are dropped;
2. the closing statement is the last sentence that still holds a number, passing over checks
   and asides ("Let's verify: ...", "This is because ..."); a closing block of "name = value"
   lines that names different quantities ("Length = 20 m" / "Width = 10 m") is ambiguous;
3. within it, reasons are set aside ("Since ..., ", "... because ...", "which is 5 more than"),
   then the part after "the answer is", else after the last "so"/"therefore", is read: "round
   up to N" gives N; after "a total of" that total; two assignments to different variables or
   two values put forward in joined clauses ("the son is 10 and the father is 40") are
   ambiguous; otherwise the value after the last "=", else after the last verb that puts a
   value forward ("is", "has", "needs", ...), else the sentence's only value;
4. that value must stand alone: "8 chickens and 12 cows", "2 hours and 30 minutes", "3.6 m or
   360 cm" are ambiguous.

Ambiguous rows are not evaluated and are trained on without an appended answer sentence.
Measured on GSM8K test bodies with their "#### N" line removed (a proxy: OrcaMath ships no
answers): 1287 of 1319 agree with N, 22 ambiguous, 10 disagree.
"""

from __future__ import annotations

import re
from decimal import Decimal

from jaxft.eval.math_normalize import last_boxed
from jaxft.eval.numeric import canonical_numbers, prepare_numeric, without_justification

# ---------------------------------------------------------------------------------------------
# Text clean-up
# ---------------------------------------------------------------------------------------------

_LATEX = [
    (re.compile(r"\\[()\[\]]"), " "),
    (re.compile(r"\\(?:text|mathrm|textbf|mbox)\s*\{([^{}]*)\}"), r"\1"),
    (re.compile(r"\\(?:times|cdot)(?![a-zA-Z])"), " × "),
    (re.compile(r"\\div(?![a-zA-Z])"), " ÷ "),
    (re.compile(r"\\approx(?![a-zA-Z])"), " ≈ "),
    (re.compile(r"\^\s*\{?\\circ\}?"), "°"),
    (re.compile(r"\\%"), "%"),
    (re.compile(r"\\(?:quad|qquad|,|;|!)"), " "),
]
_ABBREVIATIONS = re.compile(r"\b(Rs|approx|Mr|Mrs|Ms|Dr|St|No|vs|sq|ft|hrs?|mins?|e\.g|i\.e|etc)\.",
                            re.IGNORECASE)
_NOTE_LINE = re.compile(r"^[\s*_>(#-]*(?:note|please\s+note|n\.b|nb|disclaimer|remember|keep\s+in\s+mind"
                        r"|assumptions?)\b", re.IGNORECASE)
_NOTE_PAREN = re.compile(r"\((?:[^()]*\b(?:note|assum\w*|rounded|approximately|approx)\b[^()]*)\)",
                         re.IGNORECASE)
_ROUNDING = re.compile(
    r"[,(]?\s*(?:\b(?:when|if|after|and)\s+)?(?:\b(?:rounded|rounding|correct|accurate)\s+"
    r"(?:(?:it|off|up|down)\s+)*)?\bto\s+(?:the\s+nearest\s+)?(?:\d+|one|two|three|four|five|a)\s+"
    r"(?:decimal\s+(?:places?|digits?)|significant\s+(?:figures?|digits?)|d\.?p\.?)(?!\w)[ \t]*\)?"
    r"|[,(]?\s*(?:\b(?:when|if|after)\s+)?\brounded\s+(?:(?:off|up|down)\s+)?to\s+the\s+nearest\s+"
    r"\d+\b\s*\)?",
    re.IGNORECASE)
_UNIT_POWER = re.compile(r"(?<=[A-Za-z])[ \t]*(?:\^[ \t]*\{?[ \t]*[23][ \t]*\}?|[²³])")
_ORDINAL = re.compile(r"\b\d+(?:st|nd|rd|th)\b", re.IGNORECASE)
_SCIENTIFIC = re.compile(r"(\d+(?:\.\d+)?)\s*(?:×|x|\*)\s*10\s*\^\s*\{?\s*(-?\d+)\s*\}?")
_BOLD = re.compile(r"\*\*([^*]+)\*\*|__([^_]+)__")


def _scientific(m: re.Match) -> str:
    """'2 × 10^3' -> '2000'."""
    return format(Decimal(m.group(1)).scaleb(int(m.group(2))).normalize(), "f")


def _clean(text: str) -> str:
    for pattern, replacement in _LATEX:
        text = pattern.sub(replacement, text)
    text = prepare_numeric(text)  # \frac{a}{b} -> a/b, unicode minus, \$ ...
    text = _ABBREVIATIONS.sub(lambda m: m.group(1), text)
    text = _NOTE_PAREN.sub(" ", text)
    text = _ROUNDING.sub(" ", text)
    text = _UNIT_POWER.sub("", text)
    text = _SCIENTIFIC.sub(_scientific, text)
    return text


# ---------------------------------------------------------------------------------------------
# Choosing the closing statement
# ---------------------------------------------------------------------------------------------

_ASIDE = re.compile(r"^[\s*_]*(?:(?:this|that)\s+is\s+(?:because|since)|this\s+assumes"
                    r"|(?:let's|let\s+us|we\s+can)\s+(?:verify|check|double-check)"
                    r"|to\s+(?:verify|check)|check:|verification)\b", re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z*_(\\$\d])|\n+")
# A closing line "Length = 10 m", or a list item "- Apples: 5" / "2. Width = 5 m".
_ASSIGNMENT_LINE = re.compile(r"^\s*(?:(?:[-*•]|\d+\.)\s*([^=:\n]{1,40}?)\s*[=:]"
                              r"|([^=:\n]{1,40}?)\s*=)\s*[^\n]*\d")
_CONNECTIVE = re.compile(r"^(?:so|therefore|thus|hence|then|and|finally)\b[\s,]*", re.IGNORECASE)


def _has_number(text: str) -> bool:
    return bool(canonical_numbers(text))


def _drop_notes(text: str) -> str:
    """Without note paragraphs ("Note: ..." and the lines under it) and note lines."""
    kept = []
    for paragraph in re.split(r"\n\s*\n", text):
        if _NOTE_LINE.match(paragraph):
            continue
        kept.append("\n".join(line for line in paragraph.split("\n") if not _NOTE_LINE.match(line)))
    return "\n\n".join(kept)


def _lhs_name(lhs: str) -> str:
    """'x' -> 'x', 'So, total cost' -> 'totalcost'; '' for a calculation or a sentence ('3x',
    '25 - 10', 'In total they sold 12+36+12'): those are steps, not named results."""
    lhs = _CONNECTIVE.sub("", lhs.strip().strip("*_ "))
    variable = re.search(r"(?:^|\s)\d*([A-Za-z])$", lhs)  # "2y = 8", "There are x = 80" name y, x
    if variable:
        return variable.group(1).lower()
    if re.search(r"\d", lhs) or len(lhs.split()) > 5:
        return ""
    return re.sub(r"[^a-z]", "", lhs.lower())


def _trailing_block_is_ambiguous(lines: list[str]) -> bool:
    """Closing lines "Length = 10 m" / "Width = 5 m" name two different results."""
    names = []
    for line in reversed(lines):
        if not line.strip():
            continue
        m = _ASSIGNMENT_LINE.match(line)
        if not m:
            break
        name = _lhs_name(m.group(1) or m.group(2))
        if name:
            names.append(name)
    return len(set(names)) > 1


def _closing_statement(text: str) -> str | None:
    lines = text.split("\n")
    while lines and not _has_number(lines[-1]):
        lines.pop()
    if not lines or _trailing_block_is_ambiguous(lines):
        return None
    sentences = [s for s in _SENTENCE_END.split("\n".join(lines)) if s.strip()]
    for sentence in reversed(sentences):
        if _has_number(sentence) and not _ASIDE.match(sentence) and not _NOTE_LINE.match(sentence):
            return sentence
    return None


# ---------------------------------------------------------------------------------------------
# Reading the answer from the closing statement
# ---------------------------------------------------------------------------------------------

_ANSWER_IS = re.compile(r"\banswer\s*(?:is|:|\*\*:?)\s*:?", re.IGNORECASE)
_CONCLUSION = re.compile(r"(?:^|[,;]\s*|\s)(?:so|therefore|thus|hence)\b[\s,]*",
                         re.IGNORECASE)
_ASSIGNMENT = re.compile(r"(?<![\w.])([A-Za-z][A-Za-z_]*)\s*=\s*[-$]?\d")
_RELATIVE = re.compile(r"\b(?:who|whom|whose|that)\b", re.IGNORECASE)
_QUANTITY_BEFORE = re.compile(r"\d[\d,.%]*(?:\s+[A-Za-z'-]+){0,2}\s*$")
# The same value again, rounded or computed: "33.333 km/h, which is approximately 33.33 km/h",
# "he adds 70 more, which will now be 400 + 70 = 470".
_RESTATEMENT = re.compile(r",?\s*\b(?:which\s+is|or)\s+(?:approximately|about|roughly|around"
                          r"|nearly|almost)\b|≈|,?\s*\bwhich\b[^=;]*=", re.IGNORECASE)
# "rounded it up to": both a verb that puts a value forward and the mark of a rounded result.
_ROUND_TO_WORDS = r"round(?:s|ed|ing)?(?:\s+(?:it|this|that))?(?:\s+(?:up|down|off))?\s+to"
# A verb that puts a value forward; not "to have 20" (a purpose), read as in "needs 4 more".
_INTRODUCER = re.compile(
    r"(?<!\bto\s)\b(?:is|are|was|were|be|been|equals?|equaled|becomes?|became|makes?|made|gets?|got|has|have"
    r"|had|needs?|needed|costs?|weighs?|takes?|took|earns?|earned|spends?|spent|pays?|paid"
    r"|contains?|contained|holds?|gives?|gave|sold|bought|buys?|receives?|received|scored?"
    r"|travels?|travell?ed|covers?|covered|uses?|used|saves?|saved|owes?|comes\s+to|amounts?\s+to"
    r"|totals?|totaled|totalled|remains?|remained|left\s+with"
    r"|" + _ROUND_TO_WORDS + r")\b|=|≈|:(?!\d)",
    re.IGNORECASE)
# Within a few words after a value: another value follows, not an explanation of this one.
_JOINED = re.compile(r"\b(?:and|or|while|whereas|but|plus|by|x)\b|[,;&×]", re.IGNORECASE)
_RANGE = re.compile(r"\s*(?:to|-|–)\s*", re.IGNORECASE)
_TOTAL = re.compile(r"\b(?:(?:a|the|in)\s+total(?:\s+of)?|altogether|in\s+all|combined)\b", re.IGNORECASE)
_STATEMENTS_JOINED = re.compile(r"\b(?:and|while|whereas|but)\b|[,;]", re.IGNORECASE)
_ROUND_TO = re.compile(r"\b" + _ROUND_TO_WORDS + r"\b", re.IGNORECASE)
_RATIO_WORDS = re.compile(r"\bratio\b", re.IGNORECASE)
_EQUALS = re.compile(r"=|≈")
_CORRECTION = re.compile(r",?\s*\b(?:not|instead\s+of|rather\s+than)\s+[-$]?\d[\d,.:/]*",
                         re.IGNORECASE)
_LEADING_REASON = re.compile(r"^\W*(?:(?:and|so|then)\s+)?(?:since|because|as|given\s+that|if|when|once"
                             r"|after|although|though)\b(?:[^,]|,(?=\d))*,(?!\d)", re.IGNORECASE)
# "..., since distance = speed * time, Felix will cover 528 miles": the reason sits in between.
_INNER_REASON = re.compile(r"(?:,|\band\b)\s*(?:since|because)\b(?:[^,]|,(?=\d))*,(?!\d)(?=[^,]*\d)",
                           re.IGNORECASE)


def _bold_focus(sentence: str) -> str:
    """The one bold span that holds a number, when the writer marked the answer that way."""
    spans = [a or b for a, b in _BOLD.findall(sentence)]
    numbered = [s for s in spans if _has_number(s)]
    if len(numbered) == 1:
        return numbered[0]
    return sentence.replace("**", "").replace("__", "")


def _after_last(pattern: re.Pattern, text: str) -> str | None:
    """Text after the last match of `pattern` that still has a number after it, else None."""
    for m in reversed(list(pattern.finditer(text))):
        if _has_number(text[m.end():]):
            return text[m.end():]
    return None


def _cut_relative_clause(text: str) -> str:
    """'there are 12 students who have 3 pencils' -> 'there are 12 students': a clause that
    describes a stated value does not answer."""
    for m in _RELATIVE.finditer(text):
        before = text[:m.start()]
        if _QUANTITY_BEFORE.search(before) and _after_last(_INTRODUCER, before) is not None:
            return text[:m.start()]
    return text


def _single_value(part: str) -> str | None:
    """The one value in `part`; None when it holds none or several joined values."""
    spans = canonical_numbers(part)
    if not spans:
        return None
    (_, end, first), rest = spans[0], spans[1:]
    between = part[end:rest[0][0]] if rest else ""
    if rest and (_JOINED.search(" ".join(between.split()[:4])) or _RANGE.fullmatch(between)):
        return None  # "8 chickens and 12 cows", "2 hours and 30 minutes", "12 or 13"
    return first


def _several_statements(s: str) -> bool:
    """'the son is 10 and the father is 40': two introduced values joined by "and", "," ..."""
    anchored = []  # (introducer start, value start, value end, value)
    for m in _INTRODUCER.finditer(s):
        spans = canonical_numbers(s[m.end():])
        if spans:
            start, end, value = spans[0]
            anchored.append((m.start(), m.end() + start, m.end() + end, value))
    for (_, _, end, value), (nxt, _, _, other) in zip(anchored, anchored[1:]):
        between = re.sub(r"\d[\d,.]*", " ", s[end:nxt])  # "320,000 + 30,000 = ..." is one statement
        if value != other and nxt > end and _STATEMENTS_JOINED.search(between):
            return True
    return False


def _read_statement(sentence: str) -> str | None:
    s = _bold_focus(sentence)
    without_ordinals = _ORDINAL.sub(" nth ", s)  # "the 5th term is 23"; but "in 3rd place": 3
    if _has_number(without_ordinals):
        s = without_ordinals
    else:
        s = re.sub(r"(\d+)(?:st|nd|rd|th)\b", r"\1", s, flags=re.IGNORECASE)
    s = _CORRECTION.sub(" ", s)  # "35, not 53"
    reason = _LEADING_REASON.match(s)
    if reason:  # "Since 9 is the biggest, Jungkook has the biggest number": no value is stated
        s = s[reason.end():]
        if not _has_number(s):
            return None
    rounded = _after_last(_ROUND_TO, s)
    if rounded is not None:  # "12.5, but since we can't have half a person, we round up to 13"
        return _single_value(rounded)
    if _RATIO_WORDS.search(s):  # "3 : 4", "3 to 4" -> "3:4"
        s = re.sub(r"(\d)\s*(?::|\bto\b)\s*(\d)", r"\1:\2", s)
    m = _ANSWER_IS.search(s)
    if m and _has_number(s[m.end():]):
        s = s[m.end():]
    else:
        s = _after_last(_CONCLUSION, s) or s
    unbracketed = re.sub(r"\([^()]*\)", " ", s)  # "33.33 km/h (9.26 m/s)", "(or 75%)"
    if _has_number(unbracketed):
        s = unbracketed
    again = _RESTATEMENT.search(s)
    if again and _has_number(s[:again.start()]) and _has_number(s[again.end():]):
        s = s[again.end():]
    s = without_justification(_INNER_REASON.sub(" ", s))
    s = _cut_relative_clause(s)
    total = _after_last(_TOTAL, s)
    if total is not None:  # "$5, the next 3 cost $12 and the rest $15, for a total of 5+12+15 = $32"
        s = total
    elif len({name.lower() for name in _ASSIGNMENT.findall(s)}) > 1 or _several_statements(s):
        return None  # "x = 5 and y = 7", "the length is 12 cm and the width is 8 cm"
    computed = _after_last(_EQUALS, s)
    if computed is not None:  # "2 x 10 = 20 brownies are given out from the 10 batches"
        return _single_value(computed)
    anchored = _after_last(_INTRODUCER, s)
    if anchored is None:  # no verb introduces a number: only a lone value is safe to take
        values = {c for _, _, c in canonical_numbers(s)}
        return values.pop() if len(values) == 1 else None
    return _single_value(anchored)


def orcamath_answer(solution: str) -> str | None:
    """The final answer an OrcaMath solution states (a canonical number, fraction "3/4" or ratio
    "3:4"), or None when it cannot be determined (several values, no closing statement)."""
    text = _clean(_drop_notes(solution.strip()))
    boxed = last_boxed(text)
    if boxed is not None:
        return _read_statement(boxed)
    sentence = _closing_statement(text)
    return _read_statement(sentence) if sentence is not None else None
