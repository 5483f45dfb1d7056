"""The paper's Table 2 cells that the real SmolLM2-135M-Instruct (offline GGUF) can give on a CPU: zero-shot
and 5-shot, no training, at the paper's own test sizes where the data is offline: the whole GSM8K test
(1,319), the whole SVAMP test split (300) and MATH-500 (the full MATH test, 5,000, is ~10x MATH-500's decoding
time on 2 cores). Chat template (the instruct checkpoint's format), greedy, at most 256 new tokens, float32.
Zero-shot cells run first (the paper's Table 2 column), then 5-shot. A killed study resumes where it stopped.

    python -m jaxft.study --config=configs/study_paper_cpu.py --workdir=runs/paper_cpu
    python -m jaxft.report --runs=runs/paper_cpu --out=docs/results/paper --compare=paper
"""

import ml_collections

from configs.study import get_config as study_config
from jaxft.data.tasks import TASKS


def get_config():
    c = study_config()
    c.models = ("smollm2-135m-instruct",)
    c.model_configs = ml_collections.ConfigDict({"smollm2-135m-instruct": "configs/grid_smollm2_cpu.py"})
    c.methods = ("zero-shot", "5-shot")
    c.benchmarks = ("gsm8k", "svamp", "math500")
    c.eval.template = "chat"
    c.eval.max_new_tokens = 256
    c.eval.batch_size = 32
    c.eval.limits = ml_collections.ConfigDict({t: 0 for t in TASKS})  # 0 = the whole split
    c.sample_ids = ml_collections.ConfigDict({"gsm8k": ("gsm8k-test-0", "gsm8k-test-1", "gsm8k-test-2")})
    return c
