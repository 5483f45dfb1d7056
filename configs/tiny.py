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
    # "auto" plans against a fixed 1 GiB per device, not what the machine has free at that moment, so a
    # test's micro-batch pick does not depend on what else runs beside it (a loaded CI host once had
    # 155 MiB available and refused the 8-device run).
    c.memory_limit_bytes = 2 ** 30
    return c
