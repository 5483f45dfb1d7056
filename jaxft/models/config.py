"""One config for every supported family; the family differences are flags, not subclasses."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from jaxft.errors import UnsupportedConfigError

NORM_TYPES = ("rmsnorm", "rmsnorm_plus_one", "layernorm_nonparam")
ACTIVATIONS = ("silu", "gelu_pytorch_tanh")
FAMILIES = ("llama", "qwen2", "olmo", "gemma", "gemma3", "qwen3")
LAYER_TYPES = ("full_attention", "sliding_attention")  # HF's names
ROPE_SCALING_TYPES = ("linear", "llama3")


@dataclasses.dataclass(frozen=True)
class RopeScaling:
    """HF's `rope_scaling` for the types the supported checkpoints use: "linear" (Gemma 3 4B+ global
    layers) divides every frequency by `factor`; "llama3" (Llama 3.1/3.2) divides the low frequencies by
    `factor`, keeps the high ones and blends in between (HF's _compute_llama3_parameters)."""

    rope_type: str
    factor: float
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position_embeddings: int = 8192

    def __post_init__(self):
        if self.rope_type not in ROPE_SCALING_TYPES:
            raise UnsupportedConfigError(f"rope scaling type {self.rope_type!r}; allowed: {ROPE_SCALING_TYPES}")
        if self.rope_type == "llama3" and not self.high_freq_factor > self.low_freq_factor > 0:
            raise UnsupportedConfigError(f"llama3 rope scaling needs high_freq_factor > low_freq_factor > 0; "
                                         f"got {self.high_freq_factor} and {self.low_freq_factor}")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    family: str = "llama"
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    norm_type: str = "rmsnorm"
    hidden_act: str = "silu"
    attention_bias: bool = False  # q/k/v/o bias (Llama style: all four)
    qkv_bias: bool = False  # q/k/v bias only (Qwen2)
    mlp_bias: bool = False
    tie_word_embeddings: bool = False
    scale_embeddings: bool = False  # Gemma: multiply embeddings by sqrt(hidden)
    clip_qkv: float | None = None  # OLMo
    max_position_embeddings: int = 2048
    bos_token_id: int | None = None
    eos_token_id: int | tuple[int, ...] | None = None
    pad_token_id: int | None = None
    # Gemma 3 / Qwen3: RMSNorm (of `norm_type`) over head_dim on q and k before rope
    # (HF self_attn.q_norm / k_norm).
    qk_norm: bool = False
    # Gemma 3: four norms per layer; post_attention_layernorm then normalises the attention output
    # and pre_/post_feedforward_layernorm wrap the MLP.
    sandwich_norms: bool = False
    # Per layer "full_attention" or "sliding_attention" (HF's layer_types); () = all full attention.
    layer_types: tuple[str, ...] = ()
    sliding_window: int | None = None  # a query sees keys at most sliding_window - 1 tokens back
    rope_local_theta: float | None = None  # rope base of sliding layers (Gemma 3's rope_local_base_freq)
    rope_scaling: RopeScaling | None = None  # of the full-attention layers
    query_pre_attn_scalar: float | None = None  # Gemma 3: scores scaled by this ** -0.5, not head_dim's

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise UnsupportedConfigError(f"family={self.family!r}; allowed: {FAMILIES}")
        if self.norm_type not in NORM_TYPES:
            raise UnsupportedConfigError(f"norm_type={self.norm_type!r}; allowed: {NORM_TYPES}")
        if self.hidden_act not in ACTIVATIONS:
            raise UnsupportedConfigError(f"hidden_act={self.hidden_act!r}; allowed: {ACTIVATIONS}")
        if self.num_attention_heads % self.num_key_value_heads:
            raise UnsupportedConfigError(
                f"num_attention_heads={self.num_attention_heads} is not a multiple of "
                f"num_key_value_heads={self.num_key_value_heads}"
            )
        if self.layer_types:
            if len(self.layer_types) != self.num_hidden_layers:
                raise UnsupportedConfigError(f"layer_types has {len(self.layer_types)} entries for "
                                             f"num_hidden_layers={self.num_hidden_layers}")
            bad = sorted(set(self.layer_types) - set(LAYER_TYPES))
            if bad:
                raise UnsupportedConfigError(f"layer_types {bad}; allowed: {LAYER_TYPES}")
        if any(self.local_layers) and not (self.sliding_window or 0) > 0:
            raise UnsupportedConfigError(f"sliding_attention layers need sliding_window >= 1; got "
                                         f"sliding_window={self.sliding_window}")
        if isinstance(self.rope_scaling, dict):  # from to_dict() / a JSON config
            object.__setattr__(self, "rope_scaling", RopeScaling(**self.rope_scaling))
        if isinstance(self.layer_types, list):
            object.__setattr__(self, "layer_types", tuple(self.layer_types))

    @property
    def eos_token_ids(self) -> tuple[int, ...]:
        if self.eos_token_id is None:
            return ()
        if isinstance(self.eos_token_id, int):
            return (self.eos_token_id,)
        return tuple(self.eos_token_id)

    @property
    def local_layers(self) -> tuple[bool, ...]:
        """Per layer: True for a sliding-window layer."""
        if not self.layer_types:
            return (False,) * self.num_hidden_layers
        return tuple(t == "sliding_attention" for t in self.layer_types)

    @property
    def attn_scale(self) -> float:
        return (self.query_pre_attn_scalar or self.head_dim) ** -0.5

    def replace(self, **kw: Any) -> "ModelConfig":
        return dataclasses.replace(self, **kw)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def num_params(self) -> int:
        """Closed-form count, used by the planner and MFU; tests check it against eval_shape."""
        h, i, v, L = self.hidden_size, self.intermediate_size, self.vocab_size, self.num_hidden_layers
        q = self.num_attention_heads * self.head_dim
        kv = self.num_key_value_heads * self.head_dim
        attn = h * q + 2 * h * kv + q * h
        if self.attention_bias:
            attn += q + 2 * kv + h
        elif self.qkv_bias:
            attn += q + 2 * kv
        mlp = 3 * h * i + ((2 * i + h) if self.mlp_bias else 0)
        norms = 0 if self.norm_type == "layernorm_nonparam" else (4 if self.sandwich_norms else 2) * h
        if self.qk_norm:
            norms += 2 * self.head_dim
        final_norm = 0 if self.norm_type == "layernorm_nonparam" else h
        head = 0 if self.tie_word_embeddings else v * h
        return v * h + L * (attn + mlp + norms) + final_norm + head

    def flops_per_token(self, seq_len: int) -> float:
        """Forward+backward FLOPs per token (6N plus the attention score terms)."""
        # The embedding lookup is no matmul; a tied embedding still does the lm_head matmul.
        n_matmul = self.num_params() - (0 if self.tie_word_embeddings else self.vocab_size * self.hidden_size)
        attn = 12 * self.num_hidden_layers * self.num_attention_heads * self.head_dim * seq_len
        return 6.0 * n_matmul + attn

    @property
    def embed_scale(self) -> float:
        return math.sqrt(self.hidden_size) if self.scale_embeddings else 1.0
