"""README's main job: LoRA on the real SmolLM2-135M-Instruct (offline GGUF) with a GSM8K-train slice,
then exact match on a GSM8K-test slice; about 2.5 minutes on a 2-core CPU (README, measured).

CPU-sized on purpose: float32 compute (bfloat16 matmuls are emulated on CPU), a short sequence
length, a small batch and a higher learning rate than the study's so 12 steps visibly move.
"""

from configs.base import get_cpu_config


def get_config():
    c = get_cpu_config("smollm2-135m-instruct-q4", examples=512, seq_len=256, steps=12)
    c.data.template = "plain"
    c.optim.learning_rate = 5e-4
    c.eval.final_limit = 16
    c.eval.max_new_tokens = 128
    c.eval.batch_size = 8
    return c
