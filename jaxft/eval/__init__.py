"""Exact-match evaluation: KV-cache greedy decoding and answer scorers.

`is_correct(task, generation, reference)` and `extract_answer(task, generation)` take a task name
(the contract other tools rely on) or a scorer kind ("numeric", "math"); `jaxft.eval.scoring` itself
grades by kind and knows nothing of tasks.
"""


def _kind(task_or_scorer: str) -> str:
    from jaxft.data.tasks import REGISTRY  # at call time: the package stays light to import
    from jaxft.eval.scoring import SCORERS
    from jaxft.errors import ConfigError

    task = REGISTRY.get(task_or_scorer)
    if task is not None:
        return task.scorer
    if task_or_scorer not in SCORERS:
        raise ConfigError(f"unknown task or scorer {task_or_scorer!r}; tasks: {', '.join(REGISTRY)}; "
                          f"scorers: {', '.join(SCORERS)}")
    return task_or_scorer


def is_correct(task_or_scorer: str, generation: str, reference_answer: str) -> bool:
    from jaxft.eval import scoring

    return scoring.is_correct(_kind(task_or_scorer), generation, reference_answer)


def extract_answer(task_or_scorer: str, generation: str) -> str | None:
    from jaxft.eval import scoring

    return scoring.extract_answer(_kind(task_or_scorer), generation)


__all__ = ["is_correct", "extract_answer"]
