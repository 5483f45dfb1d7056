"""GGUF files (llama.cpp): metadata -> ModelConfig, dequantised tensors -> HF-named parameters."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from jaxft.errors import UnsupportedConfigError, WeightLoadError
from jaxft.models.config import ModelConfig, RopeScaling
from jaxft.models.params import build_from_tensors
from jaxft.models.transformer import Transformer

SUPPORTED_ARCHITECTURES = ("llama", "qwen2", "olmo", "gemma", "gemma3", "qwen3")
# llama.cpp's "normal" rotary embedding rotates adjacent pairs, so these families store q/k rows
# interleaved (convert_hf_to_gguf.py permutes them); qwen2/3 and gemma/gemma3 use NEOX rope and HF's order.
QK_PERMUTED = ("llama", "olmo")
NORM_PLUS_ONE = ("gemma", "gemma3")  # llama.cpp's gemma files store every norm weight as 1 + w
ROPE_FREQS = "rope_freqs.weight"  # llama.cpp's llama3 rope scaling: one divisor per frequency
# llama.cpp's gemma3 (llama-model.cpp): every 6th layer global, sliding layers at rope base 10000,
# unless the file says otherwise (attention.sliding_window_pattern, rope.freq_base_swa).
GEMMA3_PATTERN, GEMMA3_LOCAL_THETA = 6, 10000.0

_LAYER_NAMES = {
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj", "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
    "attn_q_norm": "self_attn.q_norm", "attn_k_norm": "self_attn.k_norm",
}
# Gemma 3's four norms per layer: llama.cpp's ffn_norm is the one before the MLP.
_SANDWICH_NAMES = dict(_LAYER_NAMES, ffn_norm="pre_feedforward_layernorm",
                       post_attention_norm="post_attention_layernorm", post_ffw_norm="post_feedforward_layernorm")
_TOP_NAMES = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
              "output.weight": "lm_head.weight"}


def _layer_names(family: str | None) -> dict[str, str]:
    return _SANDWICH_NAMES if family == "gemma3" else _LAYER_NAMES


def _field(reader, key: str, default: Any = None) -> Any:
    f = reader.fields.get(key)
    if f is None:
        return default
    return f.contents()


def gguf_name(name: str, family: str | None = None) -> str | None:
    """The llama.cpp name of an HF-named tensor (the inverse of hf_name)."""
    top = {v: k for k, v in _TOP_NAMES.items()}
    if name in top:
        return top[name]
    parts = name.split(".")
    layer = {v: k for k, v in _layer_names(family).items()}.get(".".join(parts[3:-1]))
    if len(parts) >= 5 and parts[:2] == ["model", "layers"] and layer:
        return f"blk.{parts[2]}.{layer}.{parts[-1]}"
    return None


def hf_name(gguf_name: str, family: str | None = None) -> str | None:
    if gguf_name in _TOP_NAMES:
        return _TOP_NAMES[gguf_name]
    parts = gguf_name.split(".")
    names = _layer_names(family)
    if len(parts) == 4 and parts[0] == "blk" and parts[2] in names:
        return f"model.layers.{parts[1]}.{names[parts[2]]}.{parts[3]}"
    return None


def llama3_freq_factors(head_dim: int, theta: float, scaling: RopeScaling) -> np.ndarray:
    """llama.cpp's rope_freqs for HF's llama3 scaling (convert_hf_to_gguf.py): the divisor of each
    inverse frequency, float32."""
    inv = 1.0 / theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    wavelen = 2 * np.pi / inv
    old, low, high, factor = (scaling.original_max_position_embeddings, scaling.low_freq_factor,
                              scaling.high_freq_factor, scaling.factor)
    smooth = (old / wavelen - low) / (high - low)
    out = np.where(wavelen < old / high, 1.0,
                   np.where(wavelen > old / low, factor, 1.0 / ((1 - smooth) / factor + smooth)))
    return out.astype(np.float32)


def llama3_scaling_from_factors(factors: np.ndarray, head_dim: int, theta: float, where: str) -> RopeScaling:
    """Recover HF's llama3 parameters from llama.cpp's per-frequency divisors. Only
    original_max / (high - low) and low / (high - low) show in the divisors, so low_freq_factor is
    taken as 1 (every Llama 3.x) unless Meta's own (1, 4, 8192) fits; refused if nothing fits."""
    factors = np.asarray(factors, np.float64).reshape(-1)
    if factors.shape != (head_dim // 2,):
        raise UnsupportedConfigError(f"{where}: tensor {ROPE_FREQS!r} has {factors.size} values, expected "
                                     f"head_dim / 2 = {head_dim // 2}")
    factor = float(np.float32(factors.max()))
    wavelen = 2 * np.pi * theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    medium = (factors > 1 + 1e-6) & (factors < factor * (1 - 1e-6))
    candidates = [(1.0, 4.0, 8192)]
    s = (1 / factors[medium] - 1 / factor) / (1 - 1 / factor)  # = a / wavelen - b
    if medium.sum() >= 2:
        a, b = np.polyfit(1 / wavelen[medium], s, 1) * np.array([1.0, -1.0])
        if b > 0:
            candidates.append((1.0, float(round(1 + 1 / b, 4)), int(round(a / b))))
    elif medium.sum() == 1:
        candidates.append((1.0, 4.0, int(round((s[0] + 1 / 3) * wavelen[medium][0] * 3))))
    for low, high, old in candidates:
        scaling = RopeScaling("llama3", factor, low, high, old)
        if np.allclose(llama3_freq_factors(head_dim, theta, scaling), factors, rtol=1e-4, atol=0):
            return scaling
    raise UnsupportedConfigError(f"{where}: tensor {ROPE_FREQS!r} holds rope divisors that no llama3 "
                                 f"scaling reproduces ({np.round(factors, 4).tolist()})")


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
    scaling = None
    if a("rope.scaling.type") == "linear":
        scaling = RopeScaling("linear", float(a("rope.scaling.factor")))
    elif a("rope.scaling.type") not in (None, "none"):
        raise UnsupportedConfigError(f"{path}: GGUF field {arch}.rope.scaling.type="
                                     f"{a('rope.scaling.type')!r} is not supported; supported: none, linear "
                                     f"(and llama3 scaling as the {ROPE_FREQS} tensor)")
    for key in ("final_logit_softcapping", "attn_logit_softcapping"):
        if a(key):
            raise UnsupportedConfigError(f"{path}: GGUF field {arch}.{key}={a(key)}: logit softcapping is "
                                         f"not implemented")
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
    theta = float(a("rope.freq_base", 10000.0))
    if ROPE_FREQS in names:
        if arch != "llama" or scaling is not None:
            raise UnsupportedConfigError(f"{path}: tensor {ROPE_FREQS!r} is read for llama files without "
                                         f"another rope scaling only")
        t = next(t for t in reader.tensors if t.name == ROPE_FREQS)
        scaling = llama3_scaling_from_factors(np.asarray(t.data, np.float32), head_dim, theta, path)
    if arch == "llama":  # llama.cpp's llama reads optional attention and MLP biases
        family_kw = dict(attention_bias="blk.0.attn_q.bias" in names, mlp_bias="blk.0.ffn_gate.bias" in names)
    elif arch == "qwen2":
        family_kw = dict(qkv_bias=True)
    elif arch == "qwen3":  # plain RMSNorm on q/k per head, no biases
        family_kw = dict(qk_norm=True)
    elif arch == "gemma3":
        family_kw = dict(norm_type="rmsnorm_plus_one", scale_embeddings=True, hidden_act="gelu_pytorch_tanh",
                         qk_norm=True, sandwich_norms=True, **_gemma3_attention(a, head_dim, hidden, heads))
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
        rope_theta=theta,
        rope_scaling=scaling,
        tie_word_embeddings="output.weight" not in names,
        max_position_embeddings=int(a("context_length", 2048)),
        bos_token_id=_field(reader, "tokenizer.ggml.bos_token_id"),
        eos_token_id=_field(reader, "tokenizer.ggml.eos_token_id"),
        pad_token_id=_field(reader, "tokenizer.ggml.padding_token_id"),
        **family_kw,
    )


def _gemma3_attention(a, head_dim: int, hidden: int, heads: int) -> dict:
    """Gemma 3's window, layer kinds, local rope base and score scale as llama.cpp reads a gemma3 file:
    no window key = every layer global; the pattern key (an int n: every n-th layer global, or one bool
    per layer: True = sliding) defaults to 6; the 62-layer 27B scales by hidden/heads, the rest by
    head_dim (llama-model.cpp)."""
    n = int(a("block_count"))
    window = a("attention.sliding_window")
    kw: dict[str, Any] = dict(query_pre_attn_scalar=float(hidden // heads if n == 62 else head_dim))
    if window:
        pattern = a("attention.sliding_window_pattern", GEMMA3_PATTERN)
        if isinstance(pattern, (list, tuple)):
            local = [bool(x) for x in pattern]
        else:
            local = [bool((i + 1) % int(pattern)) for i in range(n)]
        kw.update(sliding_window=int(window), rope_local_theta=float(a("rope.freq_base_swa", GEMMA3_LOCAL_THETA)),
                  layer_types=tuple("sliding_attention" if x else "full_attention" for x in local))
    return kw


def load_gguf(path: str, *, dtype: Any, param_dtype: Any, **options: Any) -> Transformer:
    from gguf import GGUFReader

    from jaxft.models.gguf_quants import dequantize

    if not os.path.isfile(path):
        raise WeightLoadError(f"{path}: no such GGUF file")
    reader = GGUFReader(path)
    cfg = gguf_config(path, reader)
    tensors = {}
    for t in reader.tensors:
        if t.name == ROPE_FREQS:  # read into the config's rope scaling
            continue
        name = hf_name(t.name, cfg.family)
        if name is None:
            raise WeightLoadError(f"{path}: unexpected GGUF tensor {t.name!r}")
        tensors[name] = t

    def get(name: str) -> np.ndarray:
        t = tensors[name]
        w = dequantize(t.data, t.tensor_type, where=f"{path}: tensor {t.name!r}")
        w = w.reshape(tuple(int(x) for x in reversed(t.shape)))
        if cfg.family in QK_PERMUTED and ".self_attn.q_proj." in name:
            w = unpermute_qk(w, cfg.num_attention_heads)
        elif cfg.family in QK_PERMUTED and ".self_attn.k_proj." in name:
            w = unpermute_qk(w, cfg.num_key_value_heads)
        elif cfg.family in NORM_PLUS_ONE and name.endswith("norm.weight"):
            w = w - np.float32(1.0)  # llama.cpp's gemma files store 1 + w (convert_hf_to_gguf.py)
        return w

    return build_from_tensors(cfg, get, set(tensors), dtype=dtype, param_dtype=param_dtype, source=path,
                              **options)


def gguf_tokenizer(path: str):
    """The tokenizer the GGUF metadata describes (vocabulary, merges, special tokens, chat template)."""
    from jaxft.models.tokenizer import Tokenizer

    return Tokenizer.from_gguf(path)
