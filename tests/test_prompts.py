"""Few-shot selection, prompt templates and training targets."""

import json

import pytest

from conftest import SHARED_DATA, needs_shared
from jaxft.data import (
    STOP_STRINGS,
    TEMPLATES,
    Example,
    build_prompt,
    format_completion,
    load_task,
    select_shots,
)
from jaxft.data.tasks import get_task
from jaxft.errors import ConfigError, DataError
from jaxft.eval.scoring import is_correct

Q1 = Example("gsm8k", "train", 0, "a", "One plus one?", "1 + 1 = 2.\nThe answer is 2.", "2")
Q2 = Example("gsm8k", "train", 1, "b", "Two times three?", "2 * 3 = 6.\nThe answer is 6.", "6")
TARGET = Example("gsm8k", "test", 0, "t", "Ten minus four?", "10 - 4 = 6.\nThe answer is 6.", "6")

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def tiny_tokenizer(chat_template=CHAT_TEMPLATE):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "<eos>": 1, "one": 2, "two": 3}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", eos_token="<eos>")
    if chat_template is not None:
        hf.chat_template = chat_template
    return hf


def test_plain_prompt_format():
    prompt = build_prompt(TARGET, shots=[Q1, Q2])
    assert prompt == ("Question: One plus one?\nAnswer: 1 + 1 = 2.\nThe answer is 2.\n\n"
                      "Question: Two times three?\nAnswer: 2 * 3 = 6.\nThe answer is 6.\n\n"
                      "Question: Ten minus four?\nAnswer:")
    assert build_prompt(TARGET) == "Question: Ten minus four?\nAnswer:"


def test_completion_continues_the_prompt_and_scores_correct():
    completion = format_completion(TARGET)
    assert completion == " 10 - 4 = 6.\nThe answer is 6."
    text = build_prompt(TARGET, shots=[Q1]) + completion
    assert text.endswith("Answer: 10 - 4 = 6.\nThe answer is 6.")
    # what the model would emit past the stop string is ignored by the scorer
    assert is_correct(get_task("gsm8k").scorer, completion + "\n\nQuestion: Five?\nAnswer: The answer is 5.", "6")
    assert format_completion(TARGET, template="chat") == TARGET.solution


def test_chat_prompt_uses_alternating_turns():
    prompt = build_prompt(TARGET, template="chat", shots=[Q1, Q2], tokenizer=tiny_tokenizer())
    assert prompt == ("<|user|>One plus one?<|end|><|assistant|>1 + 1 = 2.\nThe answer is 2.<|end|>"
                      "<|user|>Two times three?<|end|><|assistant|>2 * 3 = 6.\nThe answer is 6.<|end|>"
                      "<|user|>Ten minus four?<|end|><|assistant|>")


def test_chat_needs_a_tokenizer_with_a_template():
    with pytest.raises(ConfigError, match="chat_template"):
        build_prompt(TARGET, template="chat")
    with pytest.raises(ConfigError, match="chat_template"):
        build_prompt(TARGET, template="chat", tokenizer=tiny_tokenizer(chat_template=None))


def test_unknown_template():
    with pytest.raises(ConfigError, match="plain, chat"):
        build_prompt(TARGET, template="alpaca")
    with pytest.raises(ConfigError, match="plain, chat"):
        format_completion(TARGET, template="alpaca")


def test_auto_is_the_chat_template_when_the_tokenizer_has_one_else_plain():
    """The default everywhere an evaluation picks its template: an instruct tokenizer gets its chat format,
    one without a template the plain prompt; a fine-tuned run's own data template wins over both."""
    from configs.base import get_base_config
    from jaxft.data.prompts import TEMPLATE_CHOICES, resolve_template
    from jaxft.eval.settings import EvalSettings, eval_section

    chat, bare = tiny_tokenizer(), tiny_tokenizer(chat_template=None)
    assert resolve_template("auto", chat) == "chat" and resolve_template("auto", bare) == "plain"
    assert resolve_template("auto", None) == "plain"
    assert build_prompt(TARGET, template="auto", shots=[Q1], tokenizer=chat) == (
        "<|user|>One plus one?<|end|><|assistant|>1 + 1 = 2.\nThe answer is 2.<|end|>"
        "<|user|>Ten minus four?<|end|><|assistant|>")
    assert build_prompt(TARGET, template="auto", tokenizer=bare) == "Question: Ten minus four?\nAnswer:"
    # explicit choices stay what they say; a trained run's data template decides "auto"
    assert resolve_template("plain", chat) == "plain" and resolve_template("chat", bare) == "chat"
    assert resolve_template("auto", chat, trained="plain") == "plain"
    assert resolve_template("auto", bare, trained="auto") == "plain"
    with pytest.raises(ConfigError, match="'alpaca'; expected one of: auto, plain, chat"):
        resolve_template("alpaca", chat)
    # the one default, for the CLI, training configs and study configs
    assert TEMPLATE_CHOICES == ("auto", "plain", "chat")
    assert EvalSettings().template == "auto" and eval_section().template == "auto"
    assert get_base_config().eval.template == "auto"
    assert get_base_config().data.template == "plain"  # training data: the protocol's format, unchanged
    with pytest.raises(ConfigError, match="eval template 'alpaca': expected one of auto, plain, chat"):
        EvalSettings(template="alpaca")


def test_stop_strings_cover_every_template():
    assert set(STOP_STRINGS) == set(TEMPLATES)
    assert "\nQuestion:" in STOP_STRINGS["plain"]
    # the stop string cannot cut a well-formed plain completion short
    assert not any(s in format_completion(TARGET) for s in STOP_STRINGS["plain"])


@needs_shared
@pytest.mark.parametrize("task", ["gsm8k", "svamp", "math500"])
def test_shots_are_seeded_and_sized(task):
    a = select_shots(task, 4, seed=0, data_dir=SHARED_DATA)
    b = select_shots(task, 4, seed=0, data_dir=SHARED_DATA)
    c = select_shots(task, 4, seed=1, data_dir=SHARED_DATA)
    assert len(a) == 4 and len({e.id for e in a}) == 4
    assert [e.id for e in a] == [e.id for e in b]
    assert [e.id for e in a] != [e.id for e in c]
    assert select_shots(task, 0, data_dir=SHARED_DATA) == []
    assert len(select_shots(task, 7, seed=2, data_dir=SHARED_DATA)) == 7


@needs_shared
@pytest.mark.parametrize("task", ["gsm8k", "svamp"])
def test_shots_come_from_train_never_from_the_evaluated_split(task):
    evaluated = load_task(task, "test", data_dir=SHARED_DATA)
    questions = {e.question for e in evaluated}
    for seed in range(3):
        shots = select_shots(task, 5, seed=seed, data_dir=SHARED_DATA)
        assert all(s.split == "train" and s.question not in questions for s in shots)


@needs_shared
def test_math500_shots_exclude_math500_problems():
    evaluated = {e.question.strip() for e in load_task("math500", data_dir=SHARED_DATA)}
    for seed in range(5):
        shots = select_shots("math500", 8, seed=seed, data_dir=SHARED_DATA)
        assert all(s.task == "math" and s.question.strip() not in evaluated for s in shots)


@needs_shared
def test_exclude_ids_replace_only_the_excluded_shot():
    shots = select_shots("gsm8k", 4, seed=0, data_dir=SHARED_DATA)
    again = select_shots("gsm8k", 4, seed=0, data_dir=SHARED_DATA, exclude_ids={shots[1].id})
    assert shots[1].id not in {e.id for e in again}
    assert [e.id for e in again[:3]] == [shots[0].id, shots[2].id, shots[3].id]


@needs_shared
@pytest.mark.parametrize("task", ["gsm8k", "svamp", "math500"])
def test_shot_solutions_end_with_what_the_scorer_reads(task):
    for shot in select_shots(task, 10, seed=0, data_dir=SHARED_DATA):
        assert is_correct(get_task(task).scorer, shot.solution, shot.answer)


def test_math_shots_need_math_train(tmp_path, monkeypatch):
    import datasets

    def refuse(*args, **kwargs):
        raise ConnectionError("offline (test)")

    monkeypatch.setattr(datasets, "load_dataset", refuse)
    with pytest.raises(DataError, match="MATH train.*k=0"):
        select_shots("math", 4, data_dir=str(tmp_path))
    assert select_shots("math", 0, data_dir=str(tmp_path)) == []


def test_math_shots_from_local_train_file(tmp_path):
    path = tmp_path / "math" / "train.jsonl"
    path.parent.mkdir()
    path.write_text("".join(json.dumps({"problem": f"p{i}", "solution": f"$\\boxed{{{i}}}$"}) + "\n"
                            for i in range(6)))
    shots = select_shots("math", 3, seed=0, data_dir=str(tmp_path))
    assert len(shots) == 3 and all(s.split == "train" for s in shots)


def test_too_many_shots_and_bad_k(tmp_path):
    path = tmp_path / "gsm8k" / "train.jsonl"
    path.parent.mkdir()
    path.write_text(json.dumps({"question": "q", "answer": "a\n#### 1"}) + "\n")
    with pytest.raises(DataError, match="only 1"):
        select_shots("gsm8k", 2, data_dir=str(tmp_path))
    with pytest.raises(DataError, match="only 0"):
        select_shots("gsm8k", 1, data_dir=str(tmp_path), exclude_ids={"gsm8k-train-0"})
    with pytest.raises(ConfigError, match="non-negative"):
        select_shots("gsm8k", -1, data_dir=str(tmp_path))
    with pytest.raises(DataError, match="unknown task"):
        select_shots("aime", 1)
