"""`export_gguf`: a jaxft model, adapters merged in float32, as one llama.cpp GGUF file.

Tensor names, layouts and metadata follow llama.cpp's convert_hf_to_gguf.py for the six families
(q/k rows interleaved for llama and olmo, gemma's and gemma3's norm weights stored as 1 + w, llama3
rope scaling as the rope_freqs tensor, linear scaling as rope.scaling.*), so the file runs in
llama.cpp and reads back with jaxft's and transformers' GGUF readers. The file is written beside
its destination and renamed into place: a failure leaves nothing behind.
"""

from __future__ import annotations

import os
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxft.atomic import atomic_path
from jaxft.errors import ConfigError, UnsupportedConfigError, WeightLoadError
from jaxft.gguf_vocab import gguf_vocab, write_vocab
from jaxft.models.config import ModelConfig
from jaxft.models.gguf_loader import (GEMMA3_LOCAL_THETA, GEMMA3_PATTERN, NORM_PLUS_ONE, QK_PERMUTED, ROPE_FREQS,
                                      gguf_name, llama3_freq_factors, permute_qk)
from jaxft.models.params import cast_params, flat_params
from jaxft.peft.apply import adapted_layers
from jaxft.peft.export import merge_adapters

QUANT_TYPES = ("f32", "f16", "q8_0")
Q8_0_BLOCK = 32  # values per Q8_0 block: a row must divide into whole blocks


def check_export_args(out_path: str, quant: str, overwrite: bool) -> None:
    """The checks that need no model, so a CLI can fail before loading one."""
    if quant not in QUANT_TYPES:
        raise ConfigError(f"--quant={quant!r} is not supported; allowed: {', '.join(QUANT_TYPES)}")
    if os.path.isdir(out_path):
        raise ConfigError(f"--out={out_path!r} is a directory; a GGUF export is one file (e.g. model.gguf)")
    if os.path.exists(out_path) and not overwrite:
        raise ConfigError(f"--out={out_path!r} exists; pass --overwrite to replace it")


def check_architecture(cfg: ModelConfig) -> None:
    """Refuse what llama.cpp's graph for the family would load but compute differently."""
    fam = cfg.family
    act = "gelu_pytorch_tanh" if fam in ("gemma", "gemma3") else "silu"
    if cfg.hidden_act != act:
        raise UnsupportedConfigError(f"{fam} model with hidden_act={cfg.hidden_act!r}: llama.cpp's {fam} "
                                     f"uses {act!r} only")
    if fam in ("gemma", "gemma3") and not cfg.tie_word_embeddings:
        raise UnsupportedConfigError(f"{fam} model with tie_word_embeddings=False: llama.cpp's {fam} reads no "
                                     "output.weight (its head is token_embd)")
    if fam in ("olmo", "gemma", "gemma3", "qwen3") and cfg.attention_bias:
        raise UnsupportedConfigError(f"{fam} model with attention_bias=True: llama.cpp's {fam} has no "
                                     "attention bias tensors")
    if fam != "llama" and cfg.mlp_bias:
        raise UnsupportedConfigError(f"{fam} model with mlp_bias=True: llama.cpp's {fam} has no MLP biases")
    scaling = cfg.rope_scaling
    if scaling is not None and scaling.rope_type == "llama3" and fam != "llama":
        raise UnsupportedConfigError(f"{fam} model with llama3 rope scaling: llama.cpp reads its {ROPE_FREQS} "
                                     f"tensor for llama files")
    if fam == "gemma3":
        _check_gemma3(cfg)


def _check_gemma3(cfg: ModelConfig) -> None:
    """llama.cpp's gemma3 fixes what Gemma 3 configs may vary: the layer pattern, the local rope base
    and the score scale (llama-model.cpp), so a model outside them is refused, not exported wrong."""
    want = tuple(bool((i + 1) % GEMMA3_PATTERN) for i in range(cfg.num_hidden_layers))
    if any(cfg.local_layers) and cfg.local_layers != want:
        raise UnsupportedConfigError(f"gemma3 model with layer_types={list(cfg.layer_types)}: llama.cpp's "
                                     f"gemma3 makes every {GEMMA3_PATTERN}th layer global and the rest sliding")
    if any(cfg.local_layers) and cfg.rope_local_theta not in (None, GEMMA3_LOCAL_THETA):
        raise UnsupportedConfigError(f"gemma3 model with rope_local_theta={cfg.rope_local_theta}: llama.cpp's "
                                     f"gemma3 uses {GEMMA3_LOCAL_THETA} in sliding layers")
    scalar = cfg.hidden_size // cfg.num_attention_heads if cfg.num_hidden_layers == 62 else cfg.head_dim
    if (cfg.query_pre_attn_scalar or cfg.head_dim) != scalar:
        raise UnsupportedConfigError(f"gemma3 model with query_pre_attn_scalar={cfg.query_pre_attn_scalar}: "
                                     f"llama.cpp's gemma3 with {cfg.num_hidden_layers} layers uses {scalar}")


def _order(name: str) -> tuple:
    """token_embd, then the blocks in numeric order, then output_norm and output (llama.cpp's order)."""
    parts = name.split(".")
    if parts[:2] == ["model", "layers"]:
        return (1, int(parts[2]), name)
    return (0 if "embed_tokens" in name else 2, 0, name)


def gguf_tensors(model: Any) -> list[tuple[str, np.ndarray]]:
    """(llama.cpp name, float32 array in llama.cpp's layout) for every parameter of a plain model."""
    cfg = model.config
    out = []
    if cfg.rope_scaling is not None and cfg.rope_scaling.rope_type == "llama3":
        out.append((ROPE_FREQS, llama3_freq_factors(cfg.head_dim, cfg.rope_theta, cfg.rope_scaling)))
    for name, value in sorted(flat_params(model).items(), key=lambda kv: _order(kv[0])):
        gname = gguf_name(name, cfg.family)
        if gname is None:
            raise WeightLoadError(f"parameter {name!r} has no llama.cpp tensor name")
        w = np.asarray(value, dtype=np.float32)
        if cfg.family in QK_PERMUTED and ".self_attn.q_proj." in name:
            w = permute_qk(w, cfg.num_attention_heads)
        elif cfg.family in QK_PERMUTED and ".self_attn.k_proj." in name:
            w = permute_qk(w, cfg.num_key_value_heads)
        elif cfg.family in NORM_PLUS_ONE and name.endswith("norm.weight"):
            w = w + np.float32(1.0)  # llama.cpp's gemma multiplies by the stored weight itself
        out.append((gname, w))
    return out


def encode_tensor(w: np.ndarray, quant: str):
    """(data, GGML type) for one tensor: vectors stay F32; Q8_0 falls back to F16 for rows that are
    not whole blocks of 32, as llama.cpp's converter does."""
    from gguf import GGMLQuantizationType as T
    from gguf.quants import quantize

    if w.ndim == 1 or quant == "f32":
        return w.astype(np.float32), T.F32
    if quant == "q8_0" and w.shape[-1] % Q8_0_BLOCK == 0:
        return quantize(w, T.Q8_0), T.Q8_0
    return w.astype(np.float16), T.F16


def _write_metadata(writer: Any, cfg: ModelConfig, name: str, quant: str) -> None:
    from gguf import GGML_QUANT_VERSION, LlamaFileType, RopeScalingType

    writer.add_type("model")
    writer.add_name(name)
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_key_length(cfg.head_dim)
    writer.add_value_length(cfg.head_dim)
    writer.add_rope_dimension_count(cfg.head_dim)
    writer.add_rope_freq_base(cfg.rope_theta)
    if cfg.rope_scaling is not None and cfg.rope_scaling.rope_type == "linear":
        writer.add_rope_scaling_type(RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(cfg.rope_scaling.factor)
    if any(cfg.local_layers):  # gemma3 (checked): llama.cpp's pattern and local base go with the window
        writer.add_sliding_window(cfg.sliding_window)
    if cfg.family == "olmo":
        writer.add_layer_norm_eps(cfg.norm_eps)
        if cfg.clip_qkv is not None:
            writer.add_clamp_kqv(cfg.clip_qkv)
    else:
        writer.add_layer_norm_rms_eps(cfg.norm_eps)
    writer.add_vocab_size(cfg.vocab_size)
    writer.add_file_type({"f32": LlamaFileType.ALL_F32, "f16": LlamaFileType.MOSTLY_F16,
                          "q8_0": LlamaFileType.MOSTLY_Q8_0}[quant])
    writer.add_quantization_version(GGML_QUANT_VERSION)


def _float32_plain(model: Any) -> Any:
    """A float32 copy with every adapter folded in (the merge itself runs at the weights' dtype)."""
    if any(np.dtype(v.dtype) != np.float32 for v in flat_params(model).values()):
        graphdef, state = nnx.split(model)
        model = nnx.merge(graphdef, state)  # new Variables: casting the copy leaves `model` as it was
        cast_params(model, jnp.float32)
    return merge_adapters(model) if adapted_layers(model) else model


def export_gguf(model: Any, tokenizer: Any, out_path: str, *, quant: str = "f16", overwrite: bool = False,
                name: str | None = None, source: str = "the checkpoint") -> str:
    """Write `model` (LoRA/DoRA merged first, in float32) and `tokenizer` as one GGUF file.

    quant: "f32", "f16" or "q8_0" (matrices whose rows are not whole Q8_0 blocks go F16); vectors
    are F32 in every type. `source` names the checkpoint in error messages.
    """
    from gguf import GGUFWriter

    check_export_args(out_path, quant, overwrite)
    if tokenizer is None:
        raise ConfigError(f"{source} has no tokenizer; a GGUF file carries its tokenizer, so export needs one "
                          f"(an HF directory's tokenizer.json, or the workdir config's model/tokenizer)")
    cfg = model.config
    check_architecture(cfg)
    eos = cfg.eos_token_ids[0] if cfg.eos_token_ids else None
    vocab = gguf_vocab(tokenizer, cfg.vocab_size, where=f"{source}'s tokenizer",
                       fallback_ids={"bos": cfg.bos_token_id, "eos": eos, "pad": cfg.pad_token_id})
    plain = _float32_plain(model)

    out_path = os.path.abspath(out_path)
    with atomic_path(out_path) as tmp:
        writer = GGUFWriter(tmp, cfg.family)
        _write_metadata(writer, cfg, name or os.path.splitext(os.path.basename(out_path))[0], quant)
        write_vocab(writer, vocab)
        for gname, w in gguf_tensors(plain):
            data, qtype = encode_tensor(w, quant)
            writer.add_tensor(gname, data, raw_dtype=qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file(progress=False)
        writer.close()
    return out_path
