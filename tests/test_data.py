"""Task loading: local split counts, normalisation against the raw files, errors, OrcaMath splits."""

import json
import os
import re

import pytest

from conftest import SHARED_DATA, needs_shared
from jaxft.data import tasks
from jaxft.data.tasks import (
    DEFAULT_DATA_DIR_ENV,
    TASKS,
    Example,
    answer_from_solution,
    available_splits,
    default_data_dir,
    load_task,
    orcamath_split_indices,
)
from jaxft.errors import DataError
from jaxft.eval.math_normalize import normalize_math_answer


def raw_rows(task, split):
    with open(os.path.join(SHARED_DATA, task, f"{split}.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def write_jsonl(path, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write((row if isinstance(row, str) else json.dumps(row)) + "\n")


@pytest.fixture
def no_hub(monkeypatch):
    """Fail any hub access at once instead of waiting on network retries."""
    import datasets

    def refuse(*args, **kwargs):
        raise ConnectionError("offline (test)")

    monkeypatch.setattr(datasets, "load_dataset", refuse)


@needs_shared
@pytest.mark.parametrize("task,split,count", [
    ("gsm8k", "test", 1319), ("gsm8k", "train", 7473), ("svamp", "test", 300),
    ("svamp", "train", 700), ("math", "test", 5000), ("math500", "test", 500),
])
def test_local_split_counts(task, split, count):
    examples = load_task(task, split, data_dir=SHARED_DATA)
    assert len(examples) == count
    assert [e.index for e in examples] == list(range(count))
    assert len({e.id for e in examples}) == count
    assert all(e.task == task and e.split == split for e in examples)


def test_default_data_dir_finds_the_shared_folder(monkeypatch):
    monkeypatch.delenv(DEFAULT_DATA_DIR_ENV, raising=False)
    if os.path.isdir(SHARED_DATA):
        assert os.path.samefile(default_data_dir(), SHARED_DATA)
    else:
        assert default_data_dir() is None


@needs_shared
def test_gsm8k_normalisation_against_raw_file():
    raw = raw_rows("gsm8k", "test")
    examples = load_task("gsm8k", "test", data_dir=SHARED_DATA)
    for row, ex in zip(raw, examples):
        final = row["answer"].split("####")[-1].strip().replace(",", "")
        assert ex.answer == final
        assert ex.question == row["question"]
        assert "<<" not in ex.solution and "####" not in ex.solution
        assert ex.solution.endswith(f"\nThe answer is {final}.")
    # hand-checked: Janet's ducks, "#### 18"; the calculator annotation <<16-3-4=9>> is gone
    assert examples[0].answer == "18"
    assert examples[0].solution.startswith("Janet sells 16 - 3 - 4 = 9 duck eggs a day.")
    assert examples[0].id == "gsm8k-test-0"
    with_commas = [ex for row, ex in zip(raw, examples) if "," in row["answer"].split("####")[-1]]
    assert with_commas and all("," not in ex.answer for ex in with_commas)


@needs_shared
@pytest.mark.parametrize("split,first_id", [("train", "chal-777"), ("test", "chal-736")])
def test_svamp_fields_against_raw_file(split, first_id):
    raw = raw_rows("svamp", split)
    examples = load_task("svamp", split, data_dir=SHARED_DATA)
    assert examples[0].id == first_id  # the ChilleD order, per shared/data/README.md
    for row, ex in zip(raw, examples):
        assert ex.id == row["id"]
        assert ex.question == row["body"] + " " + row["question"] == row["question_concat"]
        assert float(ex.answer) == float(row["answer"])
        assert not ex.answer.endswith(".0")
        assert ex.solution.endswith(f"The answer is {ex.answer}.")


def test_svamp_float_and_capitalised_fields(tmp_path):
    # The original release and the hub copy capitalise names and store 145.0 as a float.
    write_jsonl(str(tmp_path / "svamp" / "test.jsonl"), [
        {"ID": "chal-1", "Body": "Each pack costs 76 dollars.", "Question": "How much?",
         "Equation": "( 76.0 - 25.0 )", "Answer": 51.0, "Type": "Subtraction"},
        {"ID": "chal-2", "Body": "b", "Question": "q", "Equation": "( 5.0 / 2.0 )",
         "Answer": "2.50", "Type": "Common-Division"},
    ])
    first, second = load_task("svamp", data_dir=str(tmp_path))
    assert (first.id, first.answer, first.question) == ("chal-1", "51",
                                                       "Each pack costs 76 dollars. How much?")
    assert first.solution == "(76 - 25) = 51. The answer is 51."
    assert second.answer == "2.5"


@needs_shared
def test_math_answer_is_last_boxed():
    raw = raw_rows("math", "test")
    examples = load_task("math", "test", data_dir=SHARED_DATA)
    simple = 0
    for row, ex in zip(raw, examples):
        assert ex.solution == row["solution"] and ex.question == row["problem"]
        boxes = re.findall(r"\\boxed\{([^{}]*)\}", row["solution"])
        if row["solution"].count("\\boxed") == len(boxes) and boxes:  # no nested braces
            assert ex.answer == boxes[-1].strip()
            simple += 1
    assert simple > 3000
    # hand-checked nested cases
    by_problem = {ex.question: ex for ex in examples}
    nested = [ex for ex in examples if ex.answer.startswith("\\frac{\\sqrt")]
    assert nested and all(ex.answer.count("{") == ex.answer.count("}") for ex in nested)
    assert by_problem[raw[0]["problem"]].answer == "2"


@needs_shared
def test_math500_uses_answer_field_which_matches_its_last_box():
    raw = raw_rows("math500", "test")
    examples = load_task("math500", "test", data_dir=SHARED_DATA)
    for row, ex in zip(raw, examples):
        assert ex.answer == row["answer"] and ex.id == row["unique_id"]
        # The official answers agree with our nested-brace box extraction, after normalisation.
        boxed = answer_from_solution("math500", row["solution"])
        assert normalize_math_answer(boxed) == normalize_math_answer(row["answer"])
    assert examples[0].answer == "\\left( 3, \\frac{\\pi}{2} \\right)"


def test_limit_keeps_the_first_rows(tmp_path):
    rows = [{"question": f"q{i}", "answer": f"s\n#### {i}"} for i in range(5)]
    write_jsonl(str(tmp_path / "gsm8k" / "train.jsonl"), rows)
    examples = load_task("gsm8k", "train", data_dir=str(tmp_path), limit=3)
    assert [e.answer for e in examples] == ["0", "1", "2"]
    assert examples[2] == Example("gsm8k", "train", 2, "gsm8k-train-2", "q2", "s\nThe answer is 2.",
                                  "2")


@pytest.mark.parametrize("lines,message", [
    (['{"question": "q", "answer": "a\\n#### 1"}', '{"question": "q"'],
     r"gsm8k[/\\]test\.jsonl:2: malformed JSON"),
    (['{"question": "q", "answer": "a\\n#### 1"}', "", '{"question": "q"}'],
     r"test\.jsonl:3: missing field 'answer'"),
    (['{"question": 7, "answer": "a\\n#### 1"}'],
     r"test\.jsonl:1: field 'question' must be str, got int"),
    (['{"question": "q", "answer": "no final line"}'],
     r"test\.jsonl:1: field 'answer' has no '#### <number>'"),
    (['["question", "answer"]'], r"test\.jsonl:1: expected a JSON object, got list"),
])
def test_data_errors_name_file_line_and_field(tmp_path, lines, message):
    write_jsonl(str(tmp_path / "gsm8k" / "test.jsonl"), lines)
    with pytest.raises(DataError, match=message):
        load_task("gsm8k", "test", data_dir=str(tmp_path))


def test_math_error_without_a_box(tmp_path):
    write_jsonl(str(tmp_path / "math" / "test.jsonl"),
                [{"problem": "p", "solution": "$\\boxed{1}$"}, {"problem": "p", "solution": "no"}])
    with pytest.raises(DataError, match=r"math[/\\]test\.jsonl:2: field 'solution' has no \\boxed"):
        load_task("math", "test", data_dir=str(tmp_path))


def test_svamp_non_numeric_answer(tmp_path):
    write_jsonl(str(tmp_path / "svamp" / "test.jsonl"),
                [{"id": "x", "body": "b", "question": "q", "equation": "e", "answer": "many"}])
    with pytest.raises(DataError, match=r"test\.jsonl:1: field 'answer' is not a number"):
        load_task("svamp", "test", data_dir=str(tmp_path))


def test_unknown_task_and_split():
    with pytest.raises(DataError, match="unknown task 'aime'.*orcamath, gsm8k, math, math500, svamp"):
        load_task("aime")
    with pytest.raises(DataError, match="'math500' has no split 'train'.*test"):
        load_task("math500", "train")
    assert available_splits("math500") == ("test",)
    assert set(TASKS) == {"gsm8k", "svamp", "math", "math500", "orcamath"}


def test_missing_data_dir_is_an_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_task("gsm8k", data_dir=str(tmp_path / "nowhere"))


def test_hub_failure_says_how_to_point_at_local_data(tmp_path, no_hub):
    with pytest.raises(DataError, match=r"gsm8k/test.*openai/gsm8k.*--data_dir.*JAXFT_DATA_DIR"):
        load_task("gsm8k", "test", data_dir=str(tmp_path))


def test_env_var_data_dir_is_honoured(tmp_path, monkeypatch):
    write_jsonl(str(tmp_path / "gsm8k" / "test.jsonl"),
                [{"question": "How many?", "answer": "Two <<1+1=2>>2.\n#### 2"}])
    monkeypatch.setenv(DEFAULT_DATA_DIR_ENV, str(tmp_path))
    assert default_data_dir() == str(tmp_path)
    (only,) = load_task("gsm8k", "test")
    assert (only.question, only.solution, only.answer) == ("How many?", "Two 2.\nThe answer is 2.", "2")


# --- OrcaMath ---------------------------------------------------------------------------------

def test_orcamath_split_is_disjoint_deterministic_and_seeded():
    n = 3000
    test = orcamath_split_indices(n, "test")
    train = orcamath_split_indices(n, "train", seed=0, train_size=1000)
    assert len(test) == 500 and len(set(test)) == 500
    assert len(train) == 1000 and len(set(train)) == 1000
    assert not set(test) & set(train)
    assert all(0 <= i < n for i in test + train)
    assert test == orcamath_split_indices(n, "test")  # deterministic
    assert train == orcamath_split_indices(n, "train", seed=0, train_size=1000)
    other = orcamath_split_indices(n, "train", seed=1, train_size=1000)
    assert other != train and not set(other) & set(test)  # the seed never moves the test slice
    assert orcamath_split_indices(n, "test", seed=1) == test
    assert orcamath_split_indices(n, "train", seed=0, train_size=300) == train[:300]  # prefixes
    everything = orcamath_split_indices(n, "train", seed=0, train_size=None)
    assert sorted(everything + test) == list(range(n))
    assert orcamath_split_indices(n, "test", test_seed=5) != test
    with pytest.raises(DataError, match="cannot hold"):
        orcamath_split_indices(400, "test")


def _orca_rows(n):
    return [{"question": f"Question number {i}?", "answer": f"We add {i} and 1, so the total is {i + 1}."}
            for i in range(n)]


def test_orcamath_derived_from_local_full_release(tmp_path):
    write_jsonl(str(tmp_path / "orcamath" / "train.jsonl"), _orca_rows(700))
    test = load_task("orcamath", "test", data_dir=str(tmp_path))
    train = load_task("orcamath", "train", data_dir=str(tmp_path), limit=150, seed=3)
    assert len(test) == 500 and len(train) == 150
    assert not {e.question for e in test} & {e.question for e in train}
    expected_rows = orcamath_split_indices(700, "train", seed=3, train_size=150)
    assert [e.question for e in train] == [f"Question number {i}?" for i in expected_rows]
    assert [e.id for e in test[:2]] == ["orcamath-test-0", "orcamath-test-1"]
    first = train[0]
    i = expected_rows[0]
    assert first.answer == str(i + 1)
    assert first.solution == f"We add {i} and 1, so the total is {i + 1}.\nThe answer is {i + 1}."
    default_train = load_task("orcamath", "train", data_dir=str(tmp_path))
    assert len(default_train) == 200  # all rows outside the test slice (< ORCAMATH_TRAIN_SIZE)


def test_orcamath_pre_split_folder_is_used_as_is(tmp_path):
    write_jsonl(str(tmp_path / "orcamath" / "train.jsonl"), _orca_rows(3))
    write_jsonl(str(tmp_path / "orcamath" / "test.jsonl"),
                [{"question": "q", "answer": "The answer is 42."}])
    (only,) = load_task("orcamath", "test", data_dir=str(tmp_path))
    assert only.solution == "The answer is 42." and only.answer == "42"  # nothing appended
    assert len(load_task("orcamath", "train", data_dir=str(tmp_path))) == 3


def test_orcamath_hub_failure(tmp_path, no_hub):
    with pytest.raises(DataError, match="orca-math-word-problems-200k.*JAXFT_DATA_DIR"):
        load_task("orcamath", "test", data_dir=str(tmp_path))


def test_answer_from_solution():
    assert answer_from_solution("gsm8k", "a\n#### 1,080") == "1080"
    assert answer_from_solution("math", "so $\\boxed{\\frac{1}{\\sqrt{2}}}$.") == "\\frac{1}{\\sqrt{2}}"
    assert answer_from_solution("orcamath", "Hence the train is 150 meters long.") == "150"
    assert answer_from_solution("gsm8k", "no final line") is None
    assert tasks.ORCAMATH_TEST_SIZE == 500 and tasks.ORCAMATH_TRAIN_SIZE == 10_000


@needs_shared
@pytest.mark.parametrize("task,split", [("gsm8k", "test"), ("svamp", "train"), ("svamp", "test"),
                                        ("math500", "test")])
def test_every_reference_solution_scores_correct(task, split):
    """The solutions the model is trained/prompted on state their answer in the scorer's format."""
    from jaxft.data.tasks import get_task
    from jaxft.eval.scoring import is_correct

    scorer = get_task(task).scorer
    wrong = [e.id for e in load_task(task, split, data_dir=SHARED_DATA) if not is_correct(scorer, e.solution, e.answer)]
    assert wrong == []
