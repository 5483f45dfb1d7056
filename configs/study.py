"""The study's grid: five models x (zero-shot, 5-shot, Full FT, LoRA, DoRA) x four benchmarks."""

import ml_collections

from jaxft.data.tasks import TASKS
from jaxft.eval.settings import DECODING_KEYS, eval_section
from jaxft.peft.methods import METHODS


def get_config():
    c = ml_collections.ConfigDict()
    c.models = ("smollm2-135m", "smollm2-360m", "qwen25-05b", "olmo-1b", "gemma-2b")
    # Training config per model; {method} is filled with full, lora or dora.
    c.model_configs = ml_collections.ConfigDict({
        "smollm2-135m": "configs/smollm2_135m_{method}.py", "smollm2-360m": "configs/smollm2_360m_{method}.py",
        "qwen25-05b": "configs/qwen25_05b_{method}.py", "olmo-1b": "configs/olmo1b_{method}.py",
        "gemma-2b": "configs/gemma2b_{method}.py"})
    c.methods = ("zero-shot", "5-shot", *METHODS)
    c.benchmarks = ("orcamath", "gsm8k", "math", "svamp")
    c.train_overrides = ml_collections.ConfigDict()  # dotted config key -> value, applied to every run
    c.learning_rates = ml_collections.ConfigDict()  # method -> peak learning rate (default: the config's)
    # How answers are generated (template, max_new_tokens, batch_size, refill; task, shots and limit are
    # per cell): jaxft.eval.settings' defaults except the grid's 512 new tokens and 32 rows decoded at once.
    c.eval = eval_section(DECODING_KEYS, max_new_tokens=512, batch_size=32,
                          limits=ml_collections.ConfigDict({t: 0 for t in TASKS}))  # problems per task; 0 = all
    c.sample_ids = ml_collections.ConfigDict()  # benchmark -> problem ids shown side by side in the report
    c.data_dir = ""
    c.progress = True
    c.config_root = ""  # set by the CLI: the repository root that model_configs paths are relative to
    return c
