"""A tiny random Llama-family model on a GSM8K-train slice: 20 steps in well under a minute on CPU.

For tests and quick checks of the whole loop (data, step, checkpoints, telemetry, eval). The
tokenizer is SmolLM2's (from the offline GGUF), so the data path is the real one.
"""

from configs.base import get_cpu_config


def get_config():
    c = get_cpu_config("random", examples=96, seq_len=128, steps=20)
    c.tokenizer = "smollm2-135m-instruct-q4"
    c.optim.learning_rate = 3e-3
    c.peft.dropout = 0.0
    c.eval.final = False
    c.eval.limit = 4
    c.eval.final_limit = 4
    c.eval.max_new_tokens = 16
    c.eval.batch_size = 4
    return c
