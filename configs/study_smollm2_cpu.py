"""The study's grid for the real SmolLM2-135M-Instruct (offline GGUF) at a size a 2-core CPU can run and
that can show an effect: zero-shot, 5-shot, and Full FT, LoRA and DoRA each trained one epoch over
1,000 GSM8K-train examples at 64 examples per step with the protocol's learning rates
(configs/grid_smollm2_cpu.py), all evaluated greedily on the same first 200 GSM8K test problems
(chat template, at most 256 new tokens). Several CPU hours; a killed study resumes where it stopped.

    python -m jaxft.study --config=configs/study_smollm2_cpu.py --workdir=runs/study_cpu
    python -m jaxft.report --runs=runs/study_cpu --out=docs/results
"""

import ml_collections

from configs.study import get_config as study_config
from jaxft.data.tasks import TASKS
from jaxft.train.config import LEARNING_RATES


def get_config():
    c = study_config()
    c.models = ("smollm2-135m-instruct",)
    c.model_configs = ml_collections.ConfigDict({"smollm2-135m-instruct": "configs/grid_smollm2_cpu.py"})
    c.benchmarks = ("gsm8k",)
    c.learning_rates = ml_collections.ConfigDict(dict(LEARNING_RATES))  # per method, docs/protocol.md
    c.eval.template = "chat"
    c.eval.max_new_tokens = 256
    c.eval.batch_size = 32
    c.eval.limits = ml_collections.ConfigDict({t: 200 for t in TASKS})
    c.sample_ids = ml_collections.ConfigDict({"gsm8k": ("gsm8k-test-0", "gsm8k-test-1", "gsm8k-test-2")})
    return c
