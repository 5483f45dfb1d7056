"""Math word-problem tasks (the registry in jaxft.data.tasks) and their prompts."""

from jaxft.data.prompts import TEMPLATES, build_prompt, format_completion, select_shots
from jaxft.data.tasks import (
    DEFAULT_DATA_DIR_ENV,
    REGISTRY,
    STOP_STRINGS,
    TASKS,
    Example,
    Task,
    answer_from_solution,
    available_splits,
    default_data_dir,
    get_task,
    load_task,
    orcamath_split_indices,
)

__all__ = [
    "DEFAULT_DATA_DIR_ENV",
    "REGISTRY",
    "STOP_STRINGS",
    "TASKS",
    "TEMPLATES",
    "Example",
    "Task",
    "answer_from_solution",
    "available_splits",
    "build_prompt",
    "default_data_dir",
    "format_completion",
    "get_task",
    "load_task",
    "orcamath_split_indices",
    "select_shots",
]
