"""The study's grid on a tiny random model (configs/tiny.py): every method and three benchmarks in a
few minutes on CPU, for CI. Numbers are meaningless; the machinery is the point."""

import ml_collections

from configs.study import get_config as study_config
from jaxft.data.tasks import TASKS


def get_config():
    c = study_config()
    c.models = ("tiny",)
    c.model_configs = ml_collections.ConfigDict({"tiny": "configs/tiny.py"})
    c.benchmarks = ("gsm8k", "svamp", "math500")
    c.train_overrides = ml_collections.ConfigDict({"total_steps": 6, "checkpoint_every_steps": 3,
                                                   "global_batch_size": 4})
    c.eval.max_new_tokens = 12
    c.eval.batch_size = 4
    c.eval.limits = ml_collections.ConfigDict({t: 4 for t in TASKS})
    c.progress = False
    return c
