"""GGUF files (llama.cpp): metadata -> ModelConfig, dequantised tensors -> HF-named parameters."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from jaxft.errors import UnsupportedConfigError, WeightLoadError
from jaxft.models.config import ModelConfig
from jaxft.models.params import build_from_tensors
from jaxft.models.transformer import Transformer

SUPPORTED_ARCHITECTURES = ("llama", "qwen2", "olmo", "gemma")
# llama.cpp's "normal" rotary embedding rotates adjacent pairs, so these families store q/k rows
# interleaved (convert_hf_to_gguf.py permutes them); qwen2 and gemma use NEOX rope and HF's order.
QK_PERMUTED = ("llama", "olmo")

_LAYER_NAMES = {
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj", "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
}
_TOP_NAMES = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
              "output.weight": "lm_head.weight"}


def _field(reader, key: str, default: Any = None) -> Any:
    f = reader.fields.get(key)
    if f is None:
        return default
    return f.contents()


def gguf_name(name: str) -> str | None:
    """The llama.cpp name of an HF-named tensor (the inverse of hf_name)."""
    top = {v: k for k, v in _TOP_NAMES.items()}
    if name in top:
        return top[name]
    parts = name.split(".")
    layer = {v: k for k, v in _LAYER_NAMES.items()}.get(".".join(parts[3:-1]))
    if len(parts) >= 5 and parts[:2] == ["model", "layers"] and layer:
        return f"blk.{parts[2]}.{layer}.{parts[-1]}"
    return None


def hf_name(gguf_name: str) -> str | None:
    if gguf_name in _TOP_NAMES:
        return _TOP_NAMES[gguf_name]
    parts = gguf_name.split(".")
    if len(parts) == 4 and parts[0] == "blk" and parts[2] in _LAYER_NAMES:
        return f"model.layers.{parts[1]}.{_LAYER_NAMES[parts[2]]}.{parts[3]}"
    return None


def unpermute_qk(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Undo llama.cpp's q/k row permutation (interleaved rotary pairs back to HF's rotate_half)."""
    out, rest = w.shape[0], w.shape[1:]
    return w.reshape(n_heads, out // n_heads // 2, 2, *rest).swapaxes(1, 2).reshape(w.shape)


def permute_qk(w: np.ndarray, n_heads: int) -> np.ndarray:
    """HF's rotate_half q/k rows (weights or biases) in llama.cpp's interleaved order."""
    out, rest = w.shape[0], w.shape[1:]
    return w.reshape(n_heads, 2, out // n_heads // 2, *rest).swapaxes(1, 2).reshape(w.shape)


def gguf_config(path: str, reader=None) -> ModelConfig:
    from gguf import GGUFReader

    reader = reader or GGUFReader(path)
    arch = _field(reader, "general.architecture")
    if arch not in SUPPORTED_ARCHITECTURES:
        raise UnsupportedConfigError(f"{path}: GGUF architecture {arch!r} is not supported; "
                                     f"supported: {list(SUPPORTED_ARCHITECTURES)}")
    a = lambda k, d=None: _field(reader, f"{arch}.{k}", d)  # noqa: E731
    if a("rope.scaling.type") not in (None, "none"):
        raise UnsupportedConfigError(f"{path}: GGUF field {arch}.rope.scaling.type="
                                     f"{a('rope.scaling.type')!r} is not supported")
    heads = int(a("attention.head_count"))
    hidden = int(a("embedding_length"))
    names = {t.name for t in reader.tensors}
    vocab = a("vocab_size")
    if vocab is None:
        vocab = len(reader.fields["tokenizer.ggml.tokens"].data)
    head_dim = int(a("attention.key_length") or hidden // heads)
    if int(a("rope.dimension_count", head_dim)) != head_dim:
        raise UnsupportedConfigError(f"{path}: GGUF field {arch}.rope.dimension_count="
                                     f"{a('rope.dimension_count')} (partial rotary) is not supported")
    if arch == "llama":  # llama.cpp's llama reads optional attention and MLP biases
        family_kw = dict(attention_bias="blk.0.attn_q.bias" in names, mlp_bias="blk.0.ffn_gate.bias" in names)
    elif arch == "qwen2":
        family_kw = dict(qkv_bias=True)
    elif arch == "olmo":  # non-parametric LayerNorm, optional clamp of q/k/v
        clamp = a("attention.clamp_kqv")
        family_kw = dict(norm_type="layernorm_nonparam", clip_qkv=None if clamp is None else float(clamp),
                         norm_eps=float(a("attention.layer_norm_epsilon", 1e-5)))
    else:  # gemma: (1 + w) RMSNorm, sqrt(hidden)-scaled embeddings, tanh GELU, tied head
        family_kw = dict(norm_type="rmsnorm_plus_one", scale_embeddings=True, hidden_act="gelu_pytorch_tanh")
    family_kw.setdefault("norm_eps", float(a("attention.layer_norm_rms_epsilon", 1e-6)))
    return ModelConfig(
        family=arch,
        vocab_size=int(vocab), hidden_size=hidden,
        intermediate_size=int(a("feed_forward_length")),
        num_hidden_layers=int(a("block_count")),
        num_attention_heads=heads,
        num_key_value_heads=int(a("attention.head_count_kv", heads)),
        head_dim=head_dim,
        rope_theta=float(a("rope.freq_base", 10000.0)),
        tie_word_embeddings="output.weight" not in names,
        max_position_embeddings=int(a("context_length", 2048)),
        bos_token_id=_field(reader, "tokenizer.ggml.bos_token_id"),
        eos_token_id=_field(reader, "tokenizer.ggml.eos_token_id"),
        pad_token_id=_field(reader, "tokenizer.ggml.padding_token_id"),
        **family_kw,
    )


def load_gguf(path: str, *, dtype: Any, param_dtype: Any, **options: Any) -> Transformer:
    from gguf import GGUFReader
    from gguf.quants import dequantize

    if not os.path.isfile(path):
        raise WeightLoadError(f"{path}: no such GGUF file")
    reader = GGUFReader(path)
    cfg = gguf_config(path, reader)
    tensors = {}
    for t in reader.tensors:
        name = hf_name(t.name)
        if name is None:
            raise WeightLoadError(f"{path}: unexpected GGUF tensor {t.name!r}")
        tensors[name] = t

    def get(name: str) -> np.ndarray:
        t = tensors[name]
        w = np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32)
        w = w.reshape(tuple(int(x) for x in reversed(t.shape)))
        if cfg.family in QK_PERMUTED and ".self_attn.q_proj." in name:
            w = unpermute_qk(w, cfg.num_attention_heads)
        elif cfg.family in QK_PERMUTED and ".self_attn.k_proj." in name:
            w = unpermute_qk(w, cfg.num_key_value_heads)
        elif cfg.family == "gemma" and name.endswith("norm.weight"):
            w = w - np.float32(1.0)  # llama.cpp's gemma files store 1 + w (convert_hf_to_gguf.py)
        return w

    return build_from_tensors(cfg, get, set(tensors), dtype=dtype, param_dtype=param_dtype, source=path,
                              **options)


def gguf_tokenizer(path: str):
    """The tokenizer the GGUF metadata describes (vocabulary, merges, special tokens, chat template)."""
    from jaxft.models.tokenizer import Tokenizer

    return Tokenizer.from_gguf(path)
