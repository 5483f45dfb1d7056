"""GGUF files (llama.cpp): metadata -> ModelConfig, dequantised tensors -> HF-named parameters."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from jaxft.errors import UnsupportedConfigError, WeightLoadError
from jaxft.models.config import ModelConfig
from jaxft.models.params import build_from_tensors
from jaxft.models.transformer import Transformer

SUPPORTED_ARCHITECTURES = ("llama", "qwen2")

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
    return ModelConfig(
        family="llama" if arch == "llama" else "qwen2",
        vocab_size=int(vocab), hidden_size=hidden,
        intermediate_size=int(a("feed_forward_length")),
        num_hidden_layers=int(a("block_count")),
        num_attention_heads=heads,
        num_key_value_heads=int(a("attention.head_count_kv", heads)),
        head_dim=head_dim,
        rope_theta=float(a("rope.freq_base", 10000.0)),
        norm_eps=float(a("attention.layer_norm_rms_epsilon", 1e-6)),
        qkv_bias=arch == "qwen2",
        tie_word_embeddings="output.weight" not in names,
        max_position_embeddings=int(a("context_length", 2048)),
        bos_token_id=_field(reader, "tokenizer.ggml.bos_token_id"),
        eos_token_id=_field(reader, "tokenizer.ggml.eos_token_id"),
        pad_token_id=_field(reader, "tokenizer.ggml.padding_token_id"),
    )


def load_gguf(path: str, *, dtype: Any, param_dtype: Any) -> Transformer:
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
        if name.endswith("self_attn.q_proj.weight") and cfg.family == "llama":
            w = unpermute_qk(w, cfg.num_attention_heads)
        elif name.endswith("self_attn.k_proj.weight") and cfg.family == "llama":
            w = unpermute_qk(w, cfg.num_key_value_heads)
        return w

    return build_from_tensors(cfg, get, set(tensors), dtype=dtype, param_dtype=param_dtype, source=path)


def gguf_tokenizer(path: str):
    """A transformers tokenizer rebuilt from the GGUF metadata (vocab, merges, special tokens).

    The rebuild reads the whole file (~10 s for 135M), so the result is cached on disk under
    $JAXFT_CACHE (default ~/.cache/jaxft), keyed by the file's name, size and mtime.
    """
    import shutil
    import tempfile

    from transformers import AutoTokenizer

    st = os.stat(path)
    root = os.environ.get("JAXFT_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "jaxft"))
    cached = os.path.join(root, "gguf_tokenizers", f"{os.path.basename(path)}-{st.st_size}-{int(st.st_mtime)}")
    if os.path.isfile(os.path.join(cached, "tokenizer.json")):
        return AutoTokenizer.from_pretrained(cached)
    tok = AutoTokenizer.from_pretrained(os.path.dirname(os.path.abspath(path)), gguf_file=os.path.basename(path))
    try:  # write beside, then rename: a killed run never leaves a half-written cache entry
        os.makedirs(os.path.dirname(cached), exist_ok=True)
        tmp = tempfile.mkdtemp(dir=os.path.dirname(cached))
        tok.save_pretrained(tmp)
        os.replace(tmp, cached)
    except OSError:
        shutil.rmtree(locals().get("tmp", ""), ignore_errors=True)
    return tok
