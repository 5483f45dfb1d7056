"""A tiny random Llama-family model on a GSM8K-train slice: 20 steps in well under a minute on CPU.

For tests and quick checks of the whole loop (data, step, checkpoints, telemetry, eval). The
tokenizer is SmolLM2's (from the offline GGUF), so the data path is the real one.
"""

from configs.base import get_base_config


def get_config():
    c = get_base_config(model="random", method="lora")
    c.tokenizer = "smollm2-135m-instruct-q4"
    c.compute_dtype = "float32"
    c.data.task, c.data.split, c.data.limit = "gsm8k", "train", 96
    c.data.seq_len = 128
    c.global_batch_size = 4
    c.total_steps = 20
    c.checkpoint_every_steps = 10
    c.optim.learning_rate = 3e-3
    c.optim.warmup_ratio = 0.1
    c.peft.dropout = 0.0
    c.eval.every_steps = 0
    c.eval.final = False
    c.eval.limit = 4
    c.eval.final_limit = 4
    c.eval.max_new_tokens = 16
    c.eval.batch_size = 4
    return c
