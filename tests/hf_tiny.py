"""Tiny random HF checkpoints built with transformers' own config classes (test helper)."""

from __future__ import annotations

import os

import torch

FAMILY_VARIANTS = {
    # GQA ratio, tied/untied embeddings, rope_theta, norm eps and bias vary across variants.
    "llama": [
        dict(num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True, rope_theta=10000.0,
             rms_norm_eps=1e-5),
        dict(num_attention_heads=4, num_key_value_heads=4, tie_word_embeddings=False, rope_theta=100000.0,
             rms_norm_eps=1e-6, attention_bias=True, mlp_bias=True),
    ],
    "qwen2": [
        dict(num_attention_heads=4, num_key_value_heads=1, tie_word_embeddings=True, rope_theta=1e6,
             rms_norm_eps=1e-6),
        dict(num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False, rope_theta=10000.0,
             rms_norm_eps=1e-5),
    ],
    "olmo": [
        dict(num_attention_heads=4, num_key_value_heads=4, tie_word_embeddings=True, rope_theta=10000.0),
        dict(num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False, rope_theta=50000.0,
             clip_qkv=0.03, attention_bias=True),
    ],
    "gemma": [
        dict(num_attention_heads=4, num_key_value_heads=1, head_dim=16, tie_word_embeddings=True,
             rope_theta=10000.0, rms_norm_eps=1e-6),
        dict(num_attention_heads=4, num_key_value_heads=2, head_dim=8, tie_word_embeddings=False,
             rope_theta=20000.0, rms_norm_eps=1e-5, hidden_act="gelu_pytorch_tanh"),
    ],
}

# The newer families, one tiny config each (tests/test_new_families.py; kept out of FAMILY_VARIANTS
# so the per-family grid of test_models.py stays as cheap as it was). Every feature is switched on
# and set away from its default: head_dim apart from hidden/heads, a window shorter than the test
# sequences, distinct local/global rope bases, a linear-scaled global rope, query_pre_attn_scalar
# apart from head_dim, llama3 scaling with two blended frequencies (wavelengths 19.9 and 62.8
# between 64/4 and 64/1).
NEW_FAMILIES = {
    "gemma3": dict(num_attention_heads=4, num_key_value_heads=2, head_dim=16, tie_word_embeddings=True,
                   rms_norm_eps=1e-6, query_pre_attn_scalar=24, sliding_window=4,
                   layer_types=["sliding_attention", "full_attention", "sliding_attention"], num_hidden_layers=3,
                   rope_parameters={"full_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": 100000.0},
                                    "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}}),
    "qwen3": dict(num_attention_heads=4, num_key_value_heads=2, head_dim=16, tie_word_embeddings=False,
                  rms_norm_eps=1e-6, rope_theta=1e6),
    "llama3": dict(num_attention_heads=4, num_key_value_heads=2, head_dim=16, tie_word_embeddings=True,
                   rms_norm_eps=1e-5, rope_parameters={"rope_type": "llama3", "rope_theta": 10000.0, "factor": 4.0,
                                                       "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                                       "original_max_position_embeddings": 64}),
}


def hf_config(family: str, variant: int = 0, **overrides):
    from transformers import GemmaConfig, Gemma3TextConfig, LlamaConfig, OlmoConfig, Qwen2Config, Qwen3Config

    cls = {"llama": LlamaConfig, "qwen2": Qwen2Config, "olmo": OlmoConfig, "gemma": GemmaConfig,
           "gemma3": Gemma3TextConfig, "qwen3": Qwen3Config, "llama3": LlamaConfig}[family]
    kw = dict(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
              max_position_embeddings=128, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    kw.update(NEW_FAMILIES[family] if family in NEW_FAMILIES else FAMILY_VARIANTS[family][variant])
    kw.update(overrides)
    return cls(**kw)


def make_hf_model(family: str, variant: int, out_dir: str, seed: int = 0, weight_scale: float = 1.0,
                  **overrides):
    """Save a randomly initialised HF model (float32) to out_dir; returns the torch model.

    `weight_scale` > 1 makes greedy decoding of a random model wander instead of repeating one token.
    """
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    cfg = hf_config(family, variant, **overrides)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    with torch.no_grad():  # non-trivial norm weights and biases, so they are really tested
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or name.endswith(".bias"):
                p.add_(0.1 * torch.randn_like(p))
            elif p.ndim == 2:
                p.mul_(weight_scale)
    model.eval()
    os.makedirs(out_dir, exist_ok=True)
    model.save_pretrained(out_dir)
    return model
