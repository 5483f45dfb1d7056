"""What an evaluation runs, with its defaults in one place: train, study and `python -m jaxft.eval` all build
their `EvalSettings` with `eval_settings_from`, and configs take their `eval` section from `eval_section`.

No jax imports: configs read this module.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import ml_collections

from jaxft.data.prompts import TEMPLATE_CHOICES
from jaxft.errors import ConfigError


@dataclasses.dataclass
class EvalSettings:
    task: str = "gsm8k"
    split: str = "test"
    shots: int = 0
    # "auto": the tokenizer's chat template when it has one, else plain (a fine-tuned run: its training data's;
    # jaxft.data.prompts.resolve_template); "plain" ("Question: ... Answer:"); "chat" (the tokenizer's template)
    template: str = "auto"
    limit: int | None = None
    batch_size: int = 16
    refill: int = 0  # continuous batching refill group (0: batch_size // 4; batch_size: static batches)
    max_new_tokens: int = 256
    data_dir: str | None = None
    seed: int = 0  # draws the few-shot exemplars

    def __post_init__(self):
        if self.batch_size < 1 or self.max_new_tokens < 1 or not 0 <= self.refill <= self.batch_size:
            raise ConfigError(f"eval settings need batch_size >= 1, max_new_tokens >= 1 and 0 <= refill <= "
                              f"batch_size; got batch_size={self.batch_size}, refill={self.refill}, "
                              f"max_new_tokens={self.max_new_tokens}")
        if self.template not in TEMPLATE_CHOICES:
            raise ConfigError(f"eval template {self.template!r}: expected one of {', '.join(TEMPLATE_CHOICES)}")


PROBLEM_KEYS = ("task", "split", "shots", "limit")  # which problems are asked
DECODING_KEYS = ("template", "max_new_tokens", "batch_size", "refill")  # how the answers are generated


def eval_section(keys: Iterable[str] = PROBLEM_KEYS + DECODING_KEYS, **values) -> ml_collections.ConfigDict:
    """A config's `eval` section: EvalSettings' defaults for `keys`, then `values` (which may add keys
    the caller reads itself, e.g. a training config's every_steps)."""
    defaults = EvalSettings()
    return ml_collections.ConfigDict({**{k: getattr(defaults, k) for k in keys}, **values})


def eval_settings_from(section, **overrides) -> EvalSettings:
    """EvalSettings from a config section (or parsed CLI flags as a dict): its keys that name a field, then
    `overrides`. A key the section lacks keeps the default, so a workdir written before that key existed
    still evaluates; an empty data_dir means the default data folder."""
    values = {f.name: section[f.name] for f in dataclasses.fields(EvalSettings) if f.name in section}
    values.update(overrides)
    if "data_dir" in values:
        values["data_dir"] = values["data_dir"] or None
    return EvalSettings(**values)
