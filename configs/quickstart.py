"""README's main job: LoRA on the real SmolLM2-135M-Instruct (offline GGUF) with a GSM8K-train slice,
then exact match on a GSM8K-test slice; about 2.5 minutes on a 2-core CPU (README, measured).

CPU-sized on purpose: float32 compute (bfloat16 matmuls are emulated on CPU), a short sequence
length, a small batch and a higher learning rate than the study's so 12 steps visibly move.
"""

from configs.base import get_base_config


def get_config():
    c = get_base_config(model="smollm2-135m-instruct-q4", method="lora")
    c.compute_dtype = "float32"
    c.data.task, c.data.split, c.data.limit = "gsm8k", "train", 512
    c.data.seq_len, c.data.template = 256, "plain"
    c.global_batch_size = 4
    c.total_steps = 12
    c.checkpoint_every_steps = 6
    c.optim.learning_rate = 5e-4
    c.optim.warmup_ratio = 0.1
    c.eval.every_steps = 0
    c.eval.final_limit = 16
    c.eval.max_new_tokens = 128
    c.eval.batch_size = 8
    return c
