"""Exact-match scorers on hand-written hard cases (each id says what makes the case tricky)."""

import threading
import time

import pytest

from jaxft.data.tasks import get_task
from jaxft.errors import ConfigError, DataError
from jaxft.eval import math_normalize, scoring
from jaxft.eval.math_normalize import last_boxed, math_equiv, normalize_math_answer


# The cases name tasks; the scorer is the one the task registry names for each, as the evaluator uses it.
def is_correct(task, generation, reference):
    return scoring.is_correct(get_task(task).scorer, generation, reference)


def extract_answer(task, generation):
    return scoring.extract_answer(get_task(task).scorer, generation)


# (task, generation, reference, expected)
NUMERIC_CASES = [
    pytest.param("gsm8k", "9 * 2 = $18 every day.\nThe answer is 18.", "18", True,
                 id="plain-few-shot-format"),
    pytest.param("gsm8k", "The answer is 5.\n\nThe answer is 5.\n\nThe answer is 6.", "5", True,
                 id="repetition-loop-first-statement-wins"),
    pytest.param("gsm8k", "The answer is 5. Wait, I made an error. The answer is 6.", "6", False,
                 id="self-correction-still-scored-on-first-statement"),
    pytest.param("gsm8k", "3 + 4 = 7.\nThe answer is 7.\n\nQuestion: Tom has 3 apples.\n"
                 "Answer: The answer is 3.", "7", True,
                 id="invented-next-question-ignored"),
    pytest.param("gsm8k", "He had 7 left.\nQuestion: Sam buys 12 pens. How many?\nAnswer: 12",
                 "7", True, id="last-number-fallback-stops-at-next-question"),
    pytest.param("gsm8k", "Total = 1,000 + 234 = 1,234\n#### 1,234", "1234", True,
                 id="gsm8k-hashes-with-thousands-commas"),
    pytest.param("gsm8k", "The answer is $1,234.50.", "1234.5", True,
                 id="dollar-commas-trailing-zero-decimal-and-period"),
    pytest.param("gsm8k", "The answer is 1.5.", "15", False, id="1.5-is-not-15"),
    pytest.param("gsm8k", "The answer is 15.0", "15", True, id="float-spelling-of-integer"),
    pytest.param("gsm8k", "The answer is 7.00.", "7", True, id="two-decimal-zeros-then-period"),
    pytest.param("gsm8k", "He lost money. The answer is -5.", "-5", True, id="negative"),
    pytest.param("gsm8k", "The answer is 5.", "-5", False, id="sign-matters"),
    pytest.param("gsm8k", "The answer is \u22124", "-4", True, id="unicode-minus-sign"),
    pytest.param("gsm8k", "He had 10-3=7 apples", "7", True,
                 id="binary-minus-is-not-a-negative-number"),
    pytest.param("gsm8k", "He had 10-3 apples", "-3", False,
                 id="binary-minus-never-read-as-sign"),
    pytest.param("gsm8k", "The answer is 18 dollars.", "18", True, id="unit-word-after-number"),
    pytest.param("gsm8k", "Each side is 5cm long", "5", True, id="unit-glued-to-number"),
    pytest.param("gsm8k", "The answer is 50%.", "50", True, id="percent-sign"),
    pytest.param("gsm8k", "The answer is 3/4.", "0.75", True, id="fraction-vs-decimal"),
    pytest.param("gsm8k", "The answer is 6/8", "3/4", True, id="unreduced-fraction"),
    pytest.param("gsm8k", "The answer is 3 + 4 = 7.", "7", True,
                 id="equation-inside-answer-sentence"),
    pytest.param("gsm8k", "The answer is: **42**", "42", True, id="markdown-bold-after-colon"),
    pytest.param("gsm8k", "Final Answer: The final answer is $42$. I hope it is correct.", "42",
                 True, id="minerva-nested-statement"),
    pytest.param("gsm8k", "**Final Answer:** 42", "42", True, id="markdown-answer-heading"),
    pytest.param("gsm8k", "To find the answer: 16 - 3 - 4 = 9 eggs, times $2.\nThe answer is 18.",
                 "18", True, id="answer-colon-mid-sentence-is-reasoning"),
    pytest.param("gsm8k", "So she pays \\boxed{42} in total.", "42", True, id="boxed-numeric"),
    pytest.param("gsm8k", "She keeps \\boxed{\\frac{3}{4}} of it", "0.75", True,
                 id="boxed-latex-fraction"),
    pytest.param("gsm8k", "The answer is:\n\n12", "12", True, id="number-on-the-next-line"),
    pytest.param("gsm8k", "The answer is .5", "0.5", True, id="leading-dot-decimal"),
    pytest.param("gsm8k", "I do not know.", "0", False, id="no-number-at-all"),
    pytest.param("gsm8k", "", "0", False, id="empty-generation"),
    pytest.param("gsm8k", "The answer is 1,00.", "100", False,
                 id="bad-thousands-grouping-is-not-100"),
    pytest.param("gsm8k", "The answers are 3,4,5 so the answer is 5", "5", True,
                 id="comma-list-is-not-one-number"),
    pytest.param("svamp", "(290 / 2) = 145. The answer is 145.", "145.0", True,
                 id="svamp-float-reference"),
    pytest.param("svamp", "The answer is 145", "14.5", False, id="svamp-decimal-shift"),
    pytest.param("orcamath", "The speed is 33.33 km/hr.", "33.33", True,
                 id="orcamath-decimal-with-unit"),
    pytest.param("orcamath", "0.1 + 0.2 = 0.30000000000000004", "0.3", True,
                 id="float-noise-within-tolerance"),
    pytest.param("orcamath", "The answer is 0.31", "0.3", False, id="close-but-wrong-decimal"),
    pytest.param("orcamath", "The answer is 1000001", "1000000", False,
                 id="large-off-by-one-beyond-rel-tolerance"),
]

MATH_CASES = [
    pytest.param("math", "so $\\boxed{\\dfrac{1}{2}}$.", "\\frac{1}{2}", True, id="dfrac-vs-frac"),
    pytest.param("math", "$\\boxed{\\frac12}$", "\\frac{1}{2}", True, id="frac-without-braces"),
    pytest.param("math", "$\\boxed{0.5}$", "\\frac{1}{2}", True, id="decimal-vs-fraction"),
    pytest.param("math", "$\\boxed{\\frac{2}{4}}$", "\\frac{1}{2}", True,
                 id="unreduced-fraction-via-sympy"),
    pytest.param("math", "$\\boxed{\\frac{1}{3}}$", "0.333", False,
                 id="rounded-decimal-is-not-a-third"),
    pytest.param("math", "$\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}$", "(3,\\frac{\\pi}{2})",
                 True, id="nested-boxed-tuple-left-right"),
    pytest.param("math", "$\\boxed{(\\frac{\\pi}{2}, 3)}$", "\\left( 3, \\frac{\\pi}{2} \\right)",
                 False, id="tuple-order-matters"),
    pytest.param("math", "$\\boxed{(3, \\pi/2)}$", "\\left( 3, \\frac{\\pi}{2} \\right)", True,
                 id="slash-vs-frac-inside-tuple"),
    pytest.param("math", "First $\\boxed{3}$. Alternatively ... $\\boxed{\\sqrt{8}}$",
                 "2\\sqrt{2}", True, id="last-box-counts-and-sqrt-simplifies"),
    pytest.param("math", "$\\boxed{\\frac{\\sqrt{3}}{3}}$", "\\frac{1}{\\sqrt{3}}", True,
                 id="rationalised-denominator"),
    pytest.param("math", "$\\boxed{90^\\circ}$", "90", True, id="degrees-caret-circ"),
    pytest.param("math", "$\\boxed{90^{\\circ}}$", "90", True, id="degrees-braced-circ"),
    pytest.param("math", "$\\boxed{5\\text{ cm}}$", "5", True, id="text-unit-with-space"),
    pytest.param("math", "$\\boxed{5 \\text{cm}^2}$", "5", True, id="squared-text-unit"),
    pytest.param("math", "$\\boxed{\\text{(C)}}$", "\\textbf{(C)}", True,
                 id="multiple-choice-letter-text-vs-textbf"),
    pytest.param("math", "$\\boxed{\\$18.90}$", "18.90", True, id="escaped-dollar"),
    pytest.param("math", "$\\boxed{50\\%}$", "50", True, id="escaped-percent"),
    pytest.param("math", "$\\boxed{x=3}$", "3", True, id="short-lhs-dropped"),
    pytest.param("math", "$\\boxed{y = 3 + 2x}$", "y=2x+3", True, id="equation-reordered"),
    pytest.param("math", "$\\boxed{(x+1)^2}$", "x^2+2x+1", True, id="factored-vs-expanded"),
    pytest.param("math", "$\\boxed{x^2+2x}$", "x^2+2x+1", False, id="close-polynomial-is-wrong"),
    pytest.param("math", "$\\boxed{2, -3}$", "-3, 2", True, id="solution-list-any-order"),
    pytest.param("math", "$\\boxed{[1, 2)}$", "[1,2]", False, id="interval-endpoint-type"),
    pytest.param("math", "$\\boxed{(-\\infty, 3]}$", "(-\\infty,3]", True, id="infinite-interval"),
    pytest.param("math", "$\\boxed{\\{2,1\\}}$", "\\{1,2\\}", True, id="set-any-order"),
    pytest.param("math", "$\\boxed{\\pi r^2}$", "r^2\\pi", True, id="command-glued-to-variable"),
    pytest.param("math", "$\\boxed{4i+3}$", "3+4i", True, id="complex-number"),
    pytest.param("math", "$\\boxed{\\sqrt[3]{8}}$", "2", True, id="cube-root"),
    pytest.param("math", "$\\boxed{2^{10}}$", "1024", True, id="power-evaluated"),
    pytest.param("math", "$\\boxed{10{,}000}$", "10000", True, id="latex-thousands-separator"),
    pytest.param("math", "$\\boxed{-8192}$", "8192", False, id="sign-matters-math"),
    pytest.param("math", "$\\boxed{1.5}$", "15", False, id="decimal-shift-math"),
    pytest.param("math", "$\\boxed{\\frac{-1}{2}}$", "-\\frac{1}{2}", True, id="sign-placement"),
    pytest.param("math500", "$\\boxed{\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}}$",
                 "\\begin{pmatrix}1\\\\2\\end{pmatrix}", True, id="matrix-spacing"),
    pytest.param("math500", "The final answer is $\\frac{1}{2}$. I hope it is correct.",
                 "\\frac{1}{2}", True, id="minerva-statement-without-box"),
    pytest.param("math500", "The value is \\boxed{12", "12", False, id="unclosed-box-only"),
    pytest.param("math500", "\\boxed{7}. Repeat: \\boxed{7}. Again: \\boxed{", "7", True,
                 id="truncated-repetition-falls-back-to-complete-box"),
    pytest.param("math500", "The answer is 7 and nothing is boxed", "7", True,
                 id="answer-sentence-without-box"),
    pytest.param("math500", "I could not solve it.", "7", False, id="nothing-to-extract"),
    pytest.param("math500", "$\\boxed{\\sin(\\pi/6)}$", "\\frac12", True, id="trig-value"),
    pytest.param("math500", "$\\boxed{\\frac{\\sqrt{2}}{}}$", "1", False, id="malformed-latex"),
]


@pytest.mark.parametrize("task,generation,expected", [
    ("gsm8k", "The answer is $1,080.", "1080"),
    ("gsm8k", "The answer is -2.50 dollars", "-2.5"),
    ("gsm8k", "nothing here", None),
    ("svamp", "The answer is 6/8", "3/4"),
    ("math", "so $\\boxed{\\frac{a}{\\sqrt{b^{2}}}}$ and more", "\\frac{a}{\\sqrt{b^{2}}}"),
    ("math500", "no box", None),
])
def test_extract_answer(task, generation, expected):
    assert extract_answer(task, generation) == expected


def test_unknown_scorer_or_task_names_the_allowed_ones():
    with pytest.raises(ConfigError, match="unknown scorer 'gsm8k'; expected one of: numeric, math"):
        scoring.is_correct("gsm8k", "The answer is 3", "3")
    with pytest.raises(ConfigError, match="unknown scorer"):
        scoring.extract_answer("aime", "3")
    with pytest.raises(DataError, match="unknown task 'aime'.*gsm8k.*math500"):
        get_task("aime")


@pytest.mark.parametrize("text,expected", [
    ("\\boxed{\\frac{1}{\\sqrt{2}}}", "\\frac{1}{\\sqrt{2}}"),  # nested braces
    ("\\fbox{3} then \\boxed{4}", "4"),  # last of either command
    ("\\boxed 5$ done", "5"),  # old-style box without braces
    ("\\boxedfoo{3}", None),  # another command, not a box
])
def test_last_boxed(text, expected):
    assert last_boxed(text) == expected


@pytest.mark.parametrize("raw,expected", [
    ("\\left( 3, \\dfrac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})"),
    ("\\tfrac1 2", "\\frac{1}{2}"),
    ("\\sqrt2", "\\sqrt{2}"),
    ("x = .5", "\\frac{1}{2}"),
    ("3/7", "\\frac{3}{7}"),
    ("1,000,000", "1000000"),
    ("10^{\\circ}.", "10"),
])
def test_normalize_math_answer(raw, expected):
    assert normalize_math_answer(raw) == expected


@pytest.mark.parametrize("pred,ref,expected", [
    ("10^{10^{10^{10}}}", "1", False),  # guarded: would never finish if evaluated
    ("10^{10^{10^{10}}}+1", "10^{10^{10^{10}}}", False),
    ("(x+1)^{10^{10}}", "x", False),
    ("2^{9999}", "2^{9999}", True),  # equal strings need no sympy
])
def test_pathological_input_returns_quickly(pred, ref, expected):
    start = time.monotonic()
    assert math_equiv(pred, ref) is expected
    assert time.monotonic() - start < 10


def test_timeout_interrupts_slow_checks(monkeypatch):
    def slow(a, b):
        while True:
            time.sleep(0.01)

    monkeypatch.setattr(math_normalize, "_structured_equal", slow)
    start = time.monotonic()
    assert math_equiv("\\frac{2}{4}", "\\frac{1}{2}", timeout=0.3) is False
    assert time.monotonic() - start < 5


def test_timeout_outside_the_main_thread(monkeypatch):
    monkeypatch.setattr(math_normalize, "_structured_equal", lambda a, b: time.sleep(3) or True)
    result = []
    worker = threading.Thread(target=lambda: result.append(
        math_equiv("\\frac{2}{4}", "\\frac{1}{2}", timeout=0.2)))
    start = time.monotonic()
    worker.start()
    worker.join()
    assert result == [False]
    assert time.monotonic() - start < 2.5


# --- answer classes (issue 15): text, set-like forms, statements with a justification ----------

TEXT_ANSWERS = [
    pytest.param("$\\boxed{\\text{seat}}$", "\\text{east}", False, id="anagram-words-differ"),
    pytest.param("$\\boxed{\\text{Naiv}}$", "\\text{Navin}", False, id="name-subset-of-letters"),
    pytest.param("$\\boxed{seat}$", "east", False, id="bare-words-are-text-too"),
    pytest.param("$\\boxed{Evelyn}$", "\\text{Evelyn}", True, id="name-with-and-without-text"),
    pytest.param("$\\boxed{\\text{monday}}$", "\\text{Monday}", True, id="case-insensitive"),
    pytest.param("$\\boxed{\\text{June 20}}$", "\\text{June 20}", True, id="words-and-number"),
    pytest.param("$\\boxed{\\text{June 21}}$", "\\text{June 20}", False, id="words-and-other-number"),
    pytest.param("$\\boxed{C}$", "\\text{(C)}", True, id="choice-letter-without-parentheses"),
    pytest.param("$\\boxed{\\textbf{(D)}}$", "\\text{(C)}", False, id="other-choice-letter"),
    pytest.param("$\\boxed{\\text{WV}}$", "\\text{VW}", False, id="letters-reordered-in-text"),
    pytest.param("$\\boxed{\\text{odd}}$", "\\text{even}", False, id="parity-words"),
    pytest.param("$\\boxed{qr}$", "rq", True, id="variables-outside-text-are-still-algebra"),
    pytest.param("$\\boxed{-30+6q+3qr-15r}$", "3qr + 6q - 15r -30", True,
                 id="polynomial-in-two-letter-products"),
    pytest.param("$\\boxed{8\\sqrt{3}}$", "8\\sqrt{3} \\text { square inches}", True,
                 id="unit-text-with-space-before-brace"),
]

SET_LIKE_FORMS = [
    pytest.param("$\\boxed{\\{5\\}}$", "5", True, id="singleton-set-vs-value"),
    pytest.param("$\\boxed{5}$", "\\{5\\}", True, id="value-vs-singleton-set"),
    pytest.param("$\\boxed{\\{5, 6\\}}$", "5", False, id="two-element-set-vs-value"),
    pytest.param("$\\boxed{\\{3\\}}$", "\\{3, 4\\}", False, id="set-sizes-differ"),
    pytest.param("$\\boxed{x \\in [1,2]}$", "[1,2]", True, id="membership-vs-interval"),
    pytest.param("$\\boxed{x \\in (1,2)}$", "[1,2]", False, id="membership-open-vs-closed"),
    pytest.param("$\\boxed{x \\in \\{3\\}}$", "x = 3", True, id="membership-in-singleton-vs-equation"),
    pytest.param("$\\boxed{x=3}$", "\\{3\\}", True, id="equation-vs-set"),
    pytest.param("$\\boxed{x = 3, x = 5}$", "3, 5", True, id="solutions-as-equations"),
    pytest.param("$\\boxed{x = 3, x = 5}$", "3, 6", False, id="solutions-as-equations-wrong"),
    pytest.param("$\\boxed{x \\ge 1}$", "[1, \\infty)", True, id="inequality-vs-ray"),
    pytest.param("$\\boxed{x > 1}$", "[1, \\infty)", False, id="strict-inequality-vs-closed-ray"),
    pytest.param("$\\boxed{x < 3}$", "(-\\infty, 3)", True, id="upper-bound"),
    pytest.param("$\\boxed{3 > x}$", "(-\\infty, 3)", True, id="bound-on-the-left"),
    pytest.param("$\\boxed{1 \\le x \\le 2}$", "[1,2]", True, id="double-inequality"),
    pytest.param("$\\boxed{1 < x \\leq 2}$", "[1,2]", False, id="double-inequality-endpoint"),
    pytest.param("$\\boxed{2 > x > 1}$", "(1,2)", True, id="descending-double-inequality"),
    pytest.param("$\\boxed{x < -1 \\text{ or } x > 2}$", "(-\\infty,-1) \\cup (2,\\infty)", True,
                 id="disjunction-vs-union"),
    pytest.param("$\\boxed{(2,\\infty) \\cup (-\\infty,-1)}$", "(-\\infty,-1) \\cup (2,\\infty)", True,
                 id="union-in-any-order"),
    pytest.param("$\\boxed{x < -1 \\text{ or } x \\ge 2}$", "(-\\infty,-1) \\cup (2,\\infty)", False,
                 id="disjunction-endpoint-differs"),
    pytest.param("$\\boxed{19, 43}$", "19 \\text{ and }43", True, id="list-written-with-and"),
]

JUSTIFIED_STATEMENTS = [
    pytest.param("gsm8k", "The answer is 5 since 5 x 3 = 15.", "5", True, id="since"),
    pytest.param("gsm8k", "The answer is 5 since 5 x 3 = 15.", "15", False, id="since-not-the-check"),
    pytest.param("gsm8k", "The answer is 12 because 4 * 3 = 12 and 12 - 2 = 10", "12", True,
                 id="because"),
    pytest.param("gsm8k", "The answer is 7, as 3 + 4 = 7 and 7 x 2 = 14.", "7", True, id="as-digit"),
    pytest.param("orcamath", "The answer is 20, which is 5 more than 15.", "20", True, id="which"),
    pytest.param("orcamath", "The answer is 20, which is 5 more than 15.", "15", False,
                 id="which-not-the-comparison"),
    pytest.param("gsm8k", "The answer is 3 + 4 = 7.", "7", True, id="computation-is-not-a-reason"),
    pytest.param("gsm8k", "The answer is 3 + 4 = 7 because she had 3 and got 4 more.", "7", True,
                 id="computation-then-reason"),
    pytest.param("gsm8k", "So the answer is 9; 3 x 3 = 9 checks it.", "9", True, id="semicolon"),
    pytest.param("math", "The final answer is 5, because 5*3=15", "5", True, id="math-comma-because"),
    pytest.param("math", "The answer is 5 since 5 x 3 = 15", "15", False, id="math-since"),
    pytest.param("math500", "The answer is $x = 4$ since $2x = 8$.", "4", True,
                 id="math-dollar-statement-then-reason"),
]

NUMERIC_SHAPES = [
    pytest.param("orcamath", "The ratio is 6:8.", "3:4", True, id="ratio-in-lowest-terms"),
    pytest.param("orcamath", "The answer is 3:4.", "0.75", True, id="ratio-vs-decimal"),
    pytest.param("orcamath", "The answer is 3/4.", "3:4", True, id="fraction-vs-ratio"),
    pytest.param("orcamath", "The ratio is 4:3.", "3:4", False, id="ratio-order-matters"),
    pytest.param("orcamath", "The ratio is 2:4:6.", "1:2:3", True, id="three-part-ratio"),
    pytest.param("orcamath", "The ratio is 1:2:3.", "1:2", False, id="ratio-lengths-differ"),
    pytest.param("orcamath", "She needs 2 1/2 cups.", "2.5", True, id="mixed-number"),
    pytest.param("orcamath", "She needs 2 1/2 cups.", "2", False, id="mixed-number-is-not-whole"),
    pytest.param("gsm8k", "Step 1: 5 apples. The answer is 5.", "5", True,
                 id="colon-with-space-is-not-a-ratio"),
    pytest.param("gsm8k", "Week 2: 90 pages\nWeek 3:210 pages", "210", True,
                 id="label-colon-number-is-not-a-ratio"),
    pytest.param("gsm8k", "She can eat at 4+3 = 7:00 pm", "7", True, id="clock-time-on-the-hour"),
    pytest.param("gsm8k", "The answer is 5:00 pm", "7", False, id="other-hour"),
    pytest.param("orcamath", "The answer is 5:00 pm", "7:00", False, id="other-clock-time"),
    pytest.param("orcamath", "The answer is 7:30 pm", "7", False, id="half-past-is-not-the-hour"),
]


@pytest.mark.parametrize("generation,reference,expected", TEXT_ANSWERS + SET_LIKE_FORMS)
def test_math_answer_classes(generation, reference, expected):
    assert is_correct("math", generation, reference) is expected


@pytest.mark.parametrize("task,generation,reference,expected",
                         NUMERIC_CASES + MATH_CASES + JUSTIFIED_STATEMENTS + NUMERIC_SHAPES)
def test_is_correct(task, generation, reference, expected):
    assert is_correct(task, generation, reference) is expected
