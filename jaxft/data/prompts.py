"""Few-shot prompts and training targets.

Every reference solution ends with a statement the scorer reads ("The answer is N." for word
problems, a final ``\\boxed{}`` for MATH), so few-shot prompts teach the model the format that
`jaxft.eval.scoring` extracts.

Where shots come from (never from the evaluated examples):
    gsm8k, svamp, orcamath  the task's train split.
    math500                 MATH test problems that are not in MATH-500 (matched by problem
                            text): the 4500 problems OpenAI's PRM800K split put on the training
                            side. Chosen over MATH train so prompts are the same with or without
                            network access.
    math                    MATH train (local math/train.jsonl or the hub); all of MATH test is
                            evaluated, so there is no offline fallback and a DataError says so.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Collection, Sequence

from jaxft.data.tasks import Example, default_data_dir, get_task, load_task
from jaxft.errors import ConfigError, DataError

TEMPLATES = ("plain", "chat")  # "Question: ... Answer:", or the tokenizer's chat template (stop strings: tasks.py)
# What an evaluation may ask for: "auto" (the default) is resolved by `resolve_template` before any prompt is built.
TEMPLATE_CHOICES = ("auto", *TEMPLATES)


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def resolve_template(template: str, tokenizer=None, *, trained: str | None = None) -> str:
    """The template `template` stands for: "plain" and "chat" as they are; "auto" is the template the model
    answers in: `trained` (a model fine-tuned by jaxft learned its training data's format) when given,
    else "chat" for a tokenizer with a chat template (an instruct checkpoint given plain prompts often
    ends its turn at once: empty answers), else "plain"."""
    if template in TEMPLATES:
        return template
    if template != "auto":
        raise ConfigError(f"unknown prompt template {template!r}; expected one of: {', '.join(TEMPLATE_CHOICES)}")
    if trained is not None:
        return resolve_template(trained, tokenizer)
    return "chat" if has_chat_template(tokenizer) else "plain"


@functools.lru_cache(maxsize=8)
def _shot_pool(task: str, data_dir: str | None) -> tuple[Example, ...]:
    """Cached per (task, resolved data dir): callers may ask once per evaluated example."""
    return tuple(_load_shot_pool(task, data_dir))


def _load_shot_pool(task: str, data_dir: str | None) -> list[Example]:
    if task == "math500":
        evaluated = {e.question.strip() for e in load_task("math500", "test", data_dir=data_dir)}
        return [e for e in load_task("math", "test", data_dir=data_dir)
                if e.question.strip() not in evaluated]
    if task == "math":
        try:
            return load_task("math", "train", data_dir=data_dir)
        except DataError as e:
            raise DataError(f"math few-shot examples come from MATH train, which is not available "
                            f"({e}); use k=0, or evaluate math500, whose shots come from the rest "
                            f"of MATH test") from e
    # A shot must show the answer statement the scorer reads; ambiguous OrcaMath rows have none.
    return [e for e in load_task(task, "train", data_dir=data_dir) if not e.ambiguous]


def select_shots(task: str, k: int | None = None, *, seed: int = 0, data_dir: str | None = None,
                 exclude_ids: Collection[str] = ()) -> list[Example]:
    """k seeded few-shot examples for `task` (see the module docstring for their source); k=None: the
    task's default (`Task.shots`).

    The pool is shuffled once per seed and the first k not in `exclude_ids` are taken, so
    excluding one example replaces only that shot.
    """
    k = get_task(task).shots if k is None else k  # get_task rejects an unknown task
    if not isinstance(k, int) or k < 0:
        raise ConfigError(f"number of shots must be a non-negative int, got {k!r}")
    if k == 0:
        return []
    pool = _shot_pool(task, data_dir if data_dir is not None else default_data_dir())
    excluded = set(exclude_ids)
    order = list(range(len(pool)))
    random.Random(seed).shuffle(order)
    shots = [pool[i] for i in order if pool[i].id not in excluded][:k]
    if len(shots) < k:
        raise DataError(f"{task}: asked for {k} shots but the shot pool has only {len(shots)} "
                        "usable examples")
    return shots


def build_prompt(example: Example, *, template: str = "plain", shots: Sequence[Example] = (),
                 tokenizer=None) -> str:
    """The text a model continues to answer `example`, preceded by worked `shots` ("auto": see
    `resolve_template`)."""
    template = resolve_template(template, tokenizer)
    if template == "plain":
        parts = [f"Question: {s.question}\nAnswer: {s.solution}\n\n" for s in shots]
        parts.append(f"Question: {example.question}\nAnswer:")
        return "".join(parts)
    if template == "chat":
        if not has_chat_template(tokenizer):
            raise ConfigError("template 'chat' needs a tokenizer with a chat_template; use "
                              "template 'plain' for base models")
        messages = []
        for s in shots:
            messages.append({"role": "user", "content": s.question})
            messages.append({"role": "assistant", "content": s.solution})
        messages.append({"role": "user", "content": example.question})
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def format_completion(example: Example, *, template: str = "plain") -> str:
    """The training target that follows `build_prompt(example, template=...)`.

    plain prompts end in "Answer:", hence the leading space; a chat prompt ends with the
    assistant header, so the target is the bare solution (the caller appends EOS/end-of-turn).
    """
    if template == "plain":
        return " " + example.solution
    if template == "chat":
        return example.solution
    raise ConfigError(f"unknown prompt template {template!r}; expected one of: "
                      f"{', '.join(TEMPLATES)}")
