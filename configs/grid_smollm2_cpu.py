"""Fine-tuning cell of the CPU study grid (configs/study_smollm2_cpu.py): the real SmolLM2-135M-Instruct
(offline GGUF), one epoch over the first 1,000 GSM8K-train examples at the protocol's 64 examples per
step (16 steps, the last with 40), chat template (the instruct checkpoint's format), float32 on CPU.
"""

from configs.base import get_base_config


def get_config():
    c = get_base_config(model="smollm2-135m-instruct-q4", method="lora")
    c.compute_dtype = "float32"  # bfloat16 matmuls are slower than float32 on XLA:CPU
    c.data.task, c.data.split, c.data.limit = "gsm8k", "train", 1000
    c.data.template = "chat"
    c.data.seq_len = 512
    c.global_batch_size = 64
    # 64 examples pack into ~26 rows of 512; all at once the float32 activations need ~41 GB, so the step
    # accumulates micro-steps of 2 rows (~3 GB).
    c.micro_batch_size = 2
    c.total_steps = 0  # one epoch
    c.checkpoint_every_steps = 4
    c.eval.template = "chat"
    return c
