"""The study's grid for the real SmolLM2-135M-Instruct (offline GGUF) as far as a 2-core CPU allows:
zero-shot, 5-shot, Full FT, LoRA and DoRA, each fine-tuning run quickstart-sized (configs/quickstart.py:
12 steps of 4 x 256 tokens of GSM8K train), all evaluated on the first 64 GSM8K test problems.

    python -m jaxft.study --config=configs/study_smollm2_cpu.py --workdir=runs/study_cpu
    python -m jaxft.report --runs=runs/study_cpu --out=docs/results
"""

import ml_collections

from configs.study import get_config as study_config


def get_config():
    c = study_config()
    c.models = ("smollm2-135m-instruct",)
    c.model_configs = ml_collections.ConfigDict({"smollm2-135m-instruct": "configs/quickstart.py"})
    c.benchmarks = ("gsm8k",)
    # quickstart's 5e-4 suits the adapters; all weights moving at that rate wreck the model in 12 steps.
    c.learning_rates = ml_collections.ConfigDict({"full": 5e-5, "lora": 5e-4, "dora": 5e-4})
    c.eval.max_new_tokens = 256
    c.eval.batch_size = 32
    c.eval.limits = ml_collections.ConfigDict(dict(orcamath=64, gsm8k=64, math=64, svamp=64, math500=64))
    c.sample_ids = ml_collections.ConfigDict({"gsm8k": ("gsm8k-test-0", "gsm8k-test-1", "gsm8k-test-2")})
    return c
