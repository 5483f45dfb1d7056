"""OrcaMath reference answers from free-text solutions; ambiguous ones are excluded and untagged.

The fixture endings were written for this project in the style of
microsoft/orca-math-word-problems-200k solutions (closing sentences with units, money, rounding
remarks, ratios, notes, several unknowns ...); each expected answer was decided by hand.
"""

import json
import os
import re
import types

import pytest

from conftest import SHARED_DATA, needs_shared
from jaxft.data import format_completion, get_task, load_task
from jaxft.data.orcamath_labels import orcamath_answer
from jaxft.eval.numeric import numbers_equal
from jaxft.eval.scoring import is_correct

AMBIGUOUS = None

# (id, solution ending, expected reference answer or AMBIGUOUS)
ENDINGS = [
    # units
    ("unit-squared", "The area of the rectangle is length × width.\n\n"
     "Area = 5 m × 5 m = 25 m^2\n\nSo, the area is 25 m^2.", "25"),
    ("unit-cubed-superscript", "The volume of the cube is 4^3 = 64 cm³.", "64"),
    ("unit-speed", "Therefore, the speed of the train is 72 km/hr.", "72"),
    ("unit-distance", "The distance covered is 45 km.", "45"),
    ("unit-litres-thousands", "So, the tank can hold 1,250 liters of water.", "1250"),
    ("unit-acceleration", "Hence, the acceleration is 9.8 m/s^2.", "9.8"),
    ("unit-perimeter-product", "The perimeter of the square field is 4 × 15 m = 60 m.", "60"),
    ("unit-kg-decimal", "Therefore, the weight of the box is 2.5 kg.", "2.5"),
    ("unit-latex-squared", "So, the area of the floor is \\( 96 \\text{ m}^2 \\).", "96"),
    ("unit-degrees", "The mean temperature for the week was 25.5 °C.", "25.5"),
    ("unit-scientific", "The total weight is 2 × 10^3 kg.", "2000"),
    # money
    ("money-dollars", "Therefore, the total cost is $25.", "25"),
    ("money-cents", "So, Mary spent $12.50 on the toys.", "12.5"),
    ("money-rupees-abbrev", "Hence, the cost price of the article is Rs. 1,200.", "1200"),
    ("money-with-purpose", "The selling price should be Rs. 575.50 to make a profit of 15%.", "575.5"),
    ("money-rupees-no-dot", "The loss incurred is Rs 250.", "250"),
    ("money-with-later-explanation", "So the value of the scooter after 3 years will be $8,100.\n\n"
     "This is because it depreciates by 10% each year.", "8100"),
    # percentages
    ("percent", "Therefore, the profit percentage is 25%.", "25"),
    ("percent-then-which-means", "The discount offered is 20%, which means the customer saves $10.",
     "20"),
    ("percent-relative-clause-before", "So, the percentage of students who passed is 75%.", "75"),
    ("percent-per-annum", "Thus, the interest rate is 8% per annum.", "8"),
    ("percent-or-decimal", "The probability is 0.25, or 25%.", AMBIGUOUS),
    # fractions
    ("fraction-subject", "Therefore, 3/4 of the pizza is left.", "3/4"),
    ("fraction-latex", "So, the fraction of the students that are girls is \\( \\frac{3}{5} \\).",
     "3/5"),
    ("fraction-reduced-in-sentence", "Hence, she ate 2/8 = 1/4 of the cake.", "1/4"),
    ("fraction-mixed-number", "The recipe needs 2 1/2 cups of flour.", "5/2"),
    # rounding remarks
    ("rounding-parenthetical", "The average speed is approximately 33.33 km/h "
     "(rounded to two decimal places).", "33.33"),
    ("rounding-when-clause", "Therefore, the length of each piece is 2.67 meters when rounded to "
     "2 decimal places.", "2.67"),
    ("rounding-sentence-before", "Since we cannot have a fraction of a bus, we need to round up to "
     "the nearest whole number. Therefore, 7 buses are needed.", "7"),
    ("rounding-half-person", "The result is 12.5, but since we can't have half a person, we round "
     "up to 13 people.", "13"),
    ("rounding-nearest-whole-lead", "Rounding to the nearest whole number, the school needs 42 buses.",
     "42"),
    ("rounding-correct-to", "So, the answer is 3.14, correct to 2 decimal places.", "3.14"),
    ("rounding-approximately-paren", "Each friend gets $8.33 (approximately).", "8.33"),
    ("rounding-note-paragraph", "Therefore, each person pays $16.67.\n\n"
     "(The amount has been rounded to 2 decimal places.)", "16.67"),
    ("rounding-approx-sign", "Therefore, the speed of the car is 100/3 ≈ 33.33 km/h.", "33.33"),
    ("rounding-which-is-approximately", "The average speed is 33.333 km/h, which is approximately "
     "33.33 km/h.", "33.33"),
    ("rounding-nearest-ten", "So, the population of the village is 1,250, rounded to the nearest 10.",
     "1250"),
    # ratios
    ("ratio-colon", "Therefore, the ratio of boys to girls is 3:4.", "3:4"),
    ("ratio-spaced-colon", "So, the ratio of the ages of A and B is 5 : 7.", "5:7"),
    ("ratio-to", "The ratio of red marbles to blue marbles is 2 to 3.", "2:3"),
    ("ratio-three-parts", "Thus, the ratio of their investments is 4:5:6.", "4:5:6"),
    ("clock-time", "Therefore, the time is 3:30 PM.", "3:30"),
    # notes with numbers
    ("note-paragraph", "Therefore, the total number of apples is 120.\n\n"
     "Note: This assumes each box holds exactly 24 apples.", "120"),
    ("note-parenthetical", "So, the car travels 150 km in total. (Note: we assumed a constant speed "
     "of 50 km/h for 3 hours.)", "150"),
    ("note-please", "The final price of the shirt is $36.\n\nPlease note that the 10% discount was "
     "applied before the 20% discount.", "36"),
    ("note-italic", "Hence, Jungkook has 15 marbles.\n\n*Note: If the question meant 3 bags of 5 "
     "marbles each, the answer would still be 15.*", "15"),
    ("note-inline-sentence", "Therefore, the area is 25 m^2. Note: 1 m = 100 cm.", "25"),
    ("verification-after", "Therefore, Sam has 24 marbles.\n\n"
     "Let's verify: 24 - 6 = 18, and 18 / 2 = 9, which matches.", "24"),
    # several variables / several values
    ("two-animals", "Therefore, there are 8 chickens and 12 cows on the farm.", AMBIGUOUS),
    ("two-assignments", "So, x = 5 and y = 7.", AMBIGUOUS),
    ("two-ages", "The son is currently 10 years old and the father is 40 years old.", AMBIGUOUS),
    ("length-and-width", "Therefore, the length is 12 cm and the width is 8 cm.", AMBIGUOUS),
    ("two-numbers", "So, the two numbers are 24 and 36.", AMBIGUOUS),
    ("two-workers-no-verb", "Hence, A can do the work in 10 days and B in 15 days.", AMBIGUOUS),
    ("dimension-lines", "The dimensions of the garden are:\nLength = 20 m\nWidth = 10 m", AMBIGUOUS),
    ("solution-lines", "Solving these equations, we get:\nx = 12\ny = 8", AMBIGUOUS),
    ("hours-and-minutes", "It will take them 2 hours and 30 minutes to finish.", AMBIGUOUS),
    ("two-bold-values", "Therefore, the man's speed in still water is **7.5 km/h** and the speed of "
     "the current is **2.5 km/h**.", AMBIGUOUS),
    ("largest-and-smallest", "In conclusion, the largest number is 98 and the smallest is 12.",
     AMBIGUOUS),
    ("answer-is-two-values", "The answer is 12 and 18.", AMBIGUOUS),
    ("alternative-units", "The train takes 1.5 hours, or 90 minutes, to reach the station.", AMBIGUOUS),
    ("two-people-have", "Jungkook has 15 apples, and Yoongi has 9.", AMBIGUOUS),
    ("no-number", "Therefore, Yoongi has the most apples.", AMBIGUOUS),
    # "x = ..., so the answer ..."
    ("steps-then-sentence", "x = 120 / 4\nx = 30\n\nSo, the number is 30.", "30"),
    ("so-original-number", "Solving for x, we get x = 7, so the original number was 7 + 3 = 10.", "10"),
    ("so-tom-has", "Therefore, x = 15, so Tom has 15 stamps.", "15"),
    ("so-answer-is-product", "We find x = 4, so the answer is 4 × 6 = 24 cookies.", "24"),
    ("which-means", "x = 36 / 4 = 9, which means the certain number is 9.", "9"),
    ("coefficient-in-answer", "So, x = 6. Therefore, the larger number is 3x = 18.", "18"),
    ("equation-steps-same-variable", "3x = 27\nx = 27 / 3\nx = 9", "9"),
    # bold
    ("bold-number", "So, Jungkook has **15** apples.", "15"),
    ("bold-total", "The total number of students in the class is **42**.", "42"),
    ("bold-answer-line", "Adding the areas together:\n\n**Answer: 96 square feet**", "96"),
    # answer sentences
    ("answer-since-justification", "The answer is 5 since 5 × 3 = 15.", "5"),
    ("answer-colon", "Thus, the answer is: 64", "64"),
    ("final-answer-label", "Final answer: 18 pencils.", "18"),
    # LaTeX
    ("latex-display-then-sentence", "\\[ \\text{Total} = 12 \\times 4 = 48 \\]\n\n"
     "Therefore, there are \\( 48 \\) eggs in total.", "48"),
    ("latex-inline-value", "So, the value of \\( x \\) is \\( 2.5 \\).", "2.5"),
    ("latex-no-verb", "\\[ \\frac{3}{8} \\times 64 = 24 \\]\n\nThus, 24 students play soccer.", "24"),
    # other closing shapes
    ("ordinal", "Therefore, the 5th term of the sequence is 23.", "23"),
    ("relative-clause-in-subject", "Hence, the number of students who have 3 pencils is 12.", "12"),
    ("relative-clause-after-value", "So, there are 12 students who have 3 pencils each.", "12"),
    ("value-then-later-number", "Jungkook has 15 apples left after giving 3 to Yoongi.", "15"),
    ("future-age", "After 5 years, Tom will be 20 years old.", "20"),
    ("population-growth", "The population of the town after 2 years will be 10,648.", "10648"),
    ("purpose-infinitive", "Thus, she needs 4 more bags to have 20 bags in total.", "4"),
    ("negative", "So, the number is -12.", "-12"),
    ("more-than-comparison", "So, the number that is 5 more than x is 12.", "12"),
    ("value-before-copula", "Therefore, 15 is the number.", "15"),
    ("ordinal-is-the-answer", "Therefore, Seokjin is in 3rd place.", "3"),
    ("correction", "Therefore, the correct answer is 35, not 53.", "35"),
    ("reason-without-value", "Yoongi's number is 4, Jungkook's is 6 + 3 = 9, and Yuna's is 5. "
     "Since 9 is the biggest, Jungkook has the biggest number.", AMBIGUOUS),
    ("quotient-and-remainder", "The quotient is 12 and the remainder is 3.", AMBIGUOUS),
    ("left-over-too", "Each student will receive 4 pencils, and there will be 2 pencils left over.",
     AMBIGUOUS),
    ("two-units", "Therefore, the total length of the ribbon used is 3.6 meters or 360 centimeters.",
     AMBIGUOUS),
    ("fraction-or-decimal", "So, the value of the expression is 1/2 or 0.5.", AMBIGUOUS),
    ("two-named-values", "Therefore, the value of a is 7 and the value of b is 3.", AMBIGUOUS),
    ("sum-of-named-values", "Thus, a + b = 7 + 3 = 10.", "10"),
    # whole solutions: working first, then the closing statement
    ("full-assignment-then-sentence", "Let's denote the number of apples Jungkook has as J.\n\n"
     "J = 6 + 3 = 9\n\nTherefore, Jungkook has 9 apples.", "9"),
    ("full-unit-conversion", "First, convert the speed from km/h to m/s:\n\n72 km/h × (1000 m / 1 km) "
     "× (1 h / 3600 s) = 20 m/s\n\nThe time taken to cross the pole is the length of the train "
     "divided by its speed:\n\nTime = 200 m / 20 m/s = 10 s\n\nSo, the train takes 10 seconds to "
     "cross the pole.", "10"),
    ("full-interest", "The simple interest is calculated as:\n\nSI = P × R × T / 100\n\n"
     "SI = 5000 × 8 × 3 / 100 = 1200\n\nTherefore, the simple interest is Rs. 1200.", "1200"),
    ("full-two-unknowns", "Let the smaller number be x. Then the larger number is x + 5.\n\n"
     "x + (x + 5) = 45\n2x + 5 = 45\n2x = 40\nx = 20\n\nSo, the smaller number is 20 and the "
     "larger number is 25.", AMBIGUOUS),
    ("full-numbered-steps", "Let's calculate step by step:\n\n1. Cost of apples: 3 × $2 = $6\n"
     "2. Cost of bananas: 5 × $1 = $5\n\nTotal cost = $6 + $5 = $11\n\nSo, she spent $11 in total.",
     "11"),
    ("full-ends-in-list", "The costs are:\n1. Cost of apples: 3 × $2 = $6\n"
     "2. Cost of bananas: 5 × $1 = $5", AMBIGUOUS),
    ("full-check-after", "The value of x is 8.\n\nTo check: 3(8) - 4 = 20.", "8"),
    ("full-verification-disagrees", "So, the length of the rectangle is 15 cm.\n\nThe width would "
     "then be 15 - 5 = 10 cm, and the perimeter 2(15 + 10) = 50 cm, which matches the given "
     "perimeter.", AMBIGUOUS),
    ("full-because-sentence", "This was a total of 90 corn cobs + 150 potatoes = 240 crops.\n"
     "Because pests destroyed half of his crops, he now has 240 crops * 0.5 = 120 crops.", "120"),
    ("full-this-means", "The pots can hold a total of 4 * 20 = 80 seeds.\nThis will leave Oshea with "
     "200 - 80 = 120 seeds remaining.\nThis means he will need 120 / 4 = 30 small planters.", "30"),
    ("full-total-of-parts", "The first knife will cost $5.00, the next 3 cost $12.00 and the rest "
     "cost $15.00 for a total of 5 + 12 + 15 = $32.00", "32"),
    ("full-thousands-in-sums", "So the total number of people is 320,000 + 30,000 + 20,000 = 370,000",
     "370000"),
    ("full-if-then", "If there are 28 life jackets and she has 50 people, then she needs "
     "50 - 28 = 22 more life jackets.", "22"),
    ("full-which-computes", "The total picked now is 300 + 100 = 400 oranges.\nOn Wednesday, he "
     "adds 70 more, which will now be 400 + 70 = 470 oranges.", "470"),
    ("full-percentage-as", "Divide and multiply by 100% to express the answer as a percentage: "
     "8 pushups / 40 exercises * 100% = 20%", "20"),
    ("full-inner-reason", "In four hours, driving at 132 miles per hour, since distance = speed × "
     "time, Felix will cover 132 × 4 = 528 miles.", "528"),
]

# Endings that already state their answer in a form the scorer reads ("the answer is", "Answer:").
STATES_ITS_ANSWER = {"rounding-correct-to", "so-answer-is-product", "bold-answer-line",
                     "answer-since-justification", "answer-colon", "final-answer-label", "correction"}
ANSWERED = [(i, text, ans) for i, text, ans in ENDINGS if ans is not AMBIGUOUS]
UNANSWERED = [(i, text, ans) for i, text, ans in ENDINGS if ans is AMBIGUOUS]


def test_fixture_is_broad():
    assert len(ENDINGS) >= 60 and len({i for i, _, _ in ENDINGS}) == len(ENDINGS)
    for shape in ("unit", "money", "percent", "fraction", "rounding", "ratio", "note"):
        assert sum(i.startswith(shape) for i, _, _ in ENDINGS) >= 3, shape
    assert len(UNANSWERED) >= 12


@pytest.mark.parametrize("text,expected", [pytest.param(t, a, id=i) for i, t, a in ENDINGS])
def test_reference_answer(text, expected):
    assert orcamath_answer(text) == expected


@needs_shared
def test_gsm8k_solutions_as_a_proxy():
    """GSM8K bodies (the '#### N' line removed) read like OrcaMath working; their N is known.

    Measured: 1287 of 1319 agree, 22 ambiguous, 10 disagree (several of those are GSM8K's own
    slips, e.g. a body that computes 27 and a "#### 37"); the last number agrees on 1283.
    """
    agree = wrong = 0
    rows = [json.loads(line) for line in open(os.path.join(SHARED_DATA, "gsm8k", "test.jsonl"))]
    for row in rows:
        body, gold = row["answer"].rsplit("####", 1)
        label = orcamath_answer(re.sub(r"<<[^>]*>>", "", body))
        if label is not None:
            agree += numbers_equal(label, gold.strip().replace(",", ""))
            wrong += not numbers_equal(label, gold.strip().replace(",", ""))
    assert agree >= 0.97 * len(rows) and wrong <= 0.01 * len(rows)


def _write_split(folder, endings):
    os.makedirs(folder / "orcamath", exist_ok=True)
    rows = [{"question": f"Question {i}?", "answer": text} for i, text, _ in endings]
    for split in ("train", "test"):
        with open(folder / "orcamath" / f"{split}.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)


def test_training_targets(tmp_path):
    """Answered rows state their label in the scorer's format; ambiguous rows are left as written."""
    _write_split(tmp_path, ENDINGS)
    examples = load_task("orcamath", "train", data_dir=str(tmp_path))
    assert len(examples) == len(ENDINGS)
    for ex, (case, text, expected) in zip(examples, ENDINGS):
        if expected is AMBIGUOUS:
            assert ex.ambiguous and ex.answer == "", case
            assert ex.solution == text and format_completion(ex) == " " + text, case  # nothing added
        else:
            assert not ex.ambiguous and ex.answer == expected, case
            # the target (text + appended sentence, or its own "answer is") scores as its label
            assert is_correct(get_task("orcamath").scorer, ex.solution, ex.answer), case
            if case in STATES_ITS_ANSWER:
                assert ex.solution == text, case
            else:
                assert ex.solution == f"{text}\nThe answer is {expected}.", case


def test_a_stated_answer_that_contradicts_the_closing_statement_is_ambiguous(tmp_path):
    _write_split(tmp_path, [("c", "The answer is 5 apples at first.\nLater she buys 3 more, so "
                                  "she has 8 apples.", "8")])
    (ex,) = load_task("orcamath", "test", data_dir=str(tmp_path))
    assert orcamath_answer(ex.solution) == "8"  # the closing statement alone is clear
    assert ex.ambiguous and ex.solution.endswith("8 apples.")  # but the text also says 5


def test_ambiguous_rows_are_still_trained_on(tmp_path):
    from jaxft.data.pipeline import tokenize_examples

    from test_prompts import tiny_tokenizer

    _write_split(tmp_path, UNANSWERED[:3] + ANSWERED[:2])
    examples = load_task("orcamath", "train", data_dir=str(tmp_path))
    assert [ex.ambiguous for ex in examples] == [True, True, True, False, False]
    tokenized = tokenize_examples(examples, tiny_tokenizer(), seq_len=512)
    assert len(tokenized.records) == 5 and tokenized.dropped_no_answer == 0


def test_ambiguous_rows_are_never_few_shot_examples(tmp_path):
    from jaxft.data import select_shots

    _write_split(tmp_path, UNANSWERED[:6] + ANSWERED[:4])
    shots = select_shots("orcamath", 4, data_dir=str(tmp_path))
    assert sorted(s.question for s in shots) == sorted(f"Question {i}?" for i, _, _ in ANSWERED[:4])


def test_evaluation_excludes_ambiguous_rows(tmp_path, monkeypatch):
    from jaxft.eval import runner

    _write_split(tmp_path, ENDINGS)
    by_question = {ex.question: ex.solution for ex in load_task("orcamath", "train",
                                                                 data_dir=str(tmp_path))}
    generated = []

    def fake_generate(model, tokenizer, prompts, decode, *, stats=None, on_generations=None):
        """Answers each prompt with its training target (the solution a tuned model imitates)."""
        out = []
        for prompt in prompts:
            question = prompt.rsplit("Question: ", 1)[1].split("\nAnswer:")[0]
            generated.append(question)
            out.append(types.SimpleNamespace(text=" " + by_question[question], token_ids=[0]))
        if on_generations is not None:  # the runner collects finished rows through this callback
            on_generations(dict(enumerate(out)))
        return out

    monkeypatch.setattr(runner, "generate", fake_generate)
    settings = runner.EvalSettings(task="orcamath", split="test", data_dir=str(tmp_path))
    model = types.SimpleNamespace(dtype="float32")
    metrics = runner.evaluate(model, None, settings, output_dir=str(tmp_path / "out"), progress=False)

    assert metrics["excluded_ambiguous"] == len(UNANSWERED)
    assert metrics["n"] == len(ANSWERED) == len(generated)
    assert set(generated) == {f"Question {i}?" for i, _, _ in ANSWERED}  # never generated
    assert metrics["correct"] == len(ANSWERED)  # each target states its own label
    written = json.load(open(tmp_path / "out" / "metrics.json"))
    assert written["excluded_ambiguous"] == len(UNANSWERED) and written["n"] == len(ANSWERED)
    rows = [json.loads(line) for line in open(tmp_path / "out" / "predictions.jsonl")]
    assert len(rows) == len(ANSWERED) and all(r["reference"] for r in rows)


def test_other_tasks_exclude_nothing(tmp_path, monkeypatch):
    from jaxft.eval import runner

    os.makedirs(tmp_path / "gsm8k")
    with open(tmp_path / "gsm8k" / "test.jsonl", "w") as f:
        f.write(json.dumps({"question": "q", "answer": "1 + 1 = 2\n#### 2"}) + "\n")
    def fake_generate(model, tokenizer, prompts, decode, *, stats=None, on_generations=None):
        out = [types.SimpleNamespace(text=" The answer is 2.", token_ids=[0]) for _ in prompts]
        on_generations(dict(enumerate(out)))
        return out

    monkeypatch.setattr(runner, "generate", fake_generate)
    metrics = runner.evaluate(types.SimpleNamespace(dtype="float32"), None,
                              runner.EvalSettings(task="gsm8k", data_dir=str(tmp_path)), progress=False)
    assert metrics["excluded_ambiguous"] == 0 and metrics["n"] == 1 and metrics["correct"] == 1
