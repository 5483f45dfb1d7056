"""One config for every supported family; the family differences are flags, not subclasses."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from jaxft.errors import UnsupportedConfigError

NORM_TYPES = ("rmsnorm", "rmsnorm_plus_one", "layernorm_nonparam")
ACTIVATIONS = ("silu", "gelu_pytorch_tanh")
FAMILIES = ("llama", "qwen2", "olmo", "gemma")


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

    @property
    def eos_token_ids(self) -> tuple[int, ...]:
        if self.eos_token_id is None:
            return ()
        if isinstance(self.eos_token_id, int):
            return (self.eos_token_id,)
        return tuple(self.eos_token_id)

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
        norms = 0 if self.norm_type == "layernorm_nonparam" else 2 * h
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
