"""Math word-problem tasks (GSM8K, SVAMP, MATH, MATH-500, OrcaMath) and their prompts."""

from jaxft.data.prompts import STOP_STRINGS, TEMPLATES, build_prompt, format_completion, select_shots
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

__all__ = [
    "DEFAULT_DATA_DIR_ENV",
    "STOP_STRINGS",
    "TASKS",
    "TEMPLATES",
    "Example",
    "answer_from_solution",
    "available_splits",
    "build_prompt",
    "default_data_dir",
    "format_completion",
    "load_task",
    "orcamath_split_indices",
    "select_shots",
]
