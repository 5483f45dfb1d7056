"""Zero-shot GSM8K of the real Gemma 3 270M beside SmolLM2-135M-Instruct on the same first 200 test
problems, both from their offline GGUFs on a CPU: greedy, at most 256 new tokens, batch 32, float32,
each model in its own format (template "auto": SmolLM2-Instruct's chat template; Gemma 3 270M is the
pretrained model, without one, so plain). Gemma 3 270M is the one model below the study's 300M "danger
zone" that is not a SmolLM2.

    python -m jaxft.study --config=configs/study_gemma3_cpu.py --workdir=runs/gemma3_cpu
    python -m jaxft.report --runs=runs/gemma3_cpu --out=docs/results/gemma3_270m --keep_inputs
"""

import ml_collections

from configs.study import get_config as study_config
from jaxft.data.tasks import TASKS


def get_config():
    c = study_config()
    c.models = ("gemma-3-270m", "smollm2-135m-instruct")
    c.model_configs = ml_collections.ConfigDict({"gemma-3-270m": "configs/gemma3_270m_quickstart.py",
                                                 "smollm2-135m-instruct": "configs/grid_smollm2_cpu.py"})
    c.methods = ("zero-shot",)
    c.benchmarks = ("gsm8k",)
    c.eval.template = "auto"
    c.eval.max_new_tokens = 256
    c.eval.batch_size = 32
    c.eval.limits = ml_collections.ConfigDict({t: 0 for t in TASKS})
    c.eval.limits.gsm8k = 200
    c.sample_ids = ml_collections.ConfigDict({"gsm8k": ("gsm8k-test-0", "gsm8k-test-1", "gsm8k-test-2")})
    return c
