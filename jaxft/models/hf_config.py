"""HF config.json -> ModelConfig, refusing every field that would change the math unseen."""

from __future__ import annotations

from typing import Any

from jaxft.errors import UnsupportedConfigError
from jaxft.models.config import ModelConfig

SUPPORTED_MODEL_TYPES = {"llama": "llama", "qwen2": "qwen2", "olmo": "olmo", "gemma": "gemma"}
_ACT_ALIASES = {"silu": "silu", "swish": "silu", "gelu_pytorch_tanh": "gelu_pytorch_tanh",
                "gelu_tanh": "gelu_pytorch_tanh"}


def _fail(where: str, field: str, value: Any, why: str) -> None:
    raise UnsupportedConfigError(f"{where}: config field {field!r}={value!r} is not supported: {why}")


def _rope_theta(d: dict, where: str, default: float) -> float:
    params = d.get("rope_parameters")
    legacy = d.get("rope_scaling")
    if isinstance(params, dict):
        rtype = params.get("rope_type", params.get("type", "default"))
        if rtype not in (None, "default"):
            _fail(where, "rope_parameters.rope_type", rtype, "only the default rotary embedding is implemented")
        if params.get("partial_rotary_factor", 1.0) != 1.0:
            _fail(where, "rope_parameters.partial_rotary_factor", params["partial_rotary_factor"],
                  "only full rotary embeddings are implemented")
        theta = params.get("rope_theta", d.get("rope_theta", default))
    else:
        theta = d.get("rope_theta", default)
    if legacy is not None:
        rtype = legacy.get("rope_type", legacy.get("type")) if isinstance(legacy, dict) else legacy
        if rtype not in (None, "default"):
            _fail(where, "rope_scaling", legacy, "only the default rotary embedding is implemented")
    if d.get("partial_rotary_factor", 1.0) != 1.0:
        _fail(where, "partial_rotary_factor", d["partial_rotary_factor"], "only full rotary embeddings")
    return float(theta)


def config_from_hf(d: dict, where: str = "config.json") -> ModelConfig:
    """Translate a config.json dict; `where` names the file in error messages."""
    model_type = d.get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        _fail(where, "model_type", model_type, f"supported model types: {sorted(SUPPORTED_MODEL_TYPES)}")
    family = SUPPORTED_MODEL_TYPES[model_type]

    act = d.get("hidden_act", "silu")
    if family == "gemma":
        act = d.get("hidden_activation") or act
        if act == "gelu":  # legacy Gemma value; HF maps it to the tanh approximation too
            act = "gelu_pytorch_tanh"
    if act not in _ACT_ALIASES:
        _fail(where, "hidden_act", act, f"allowed: {sorted(_ACT_ALIASES)}")
    act = _ACT_ALIASES[act]

    if float(d.get("attention_dropout", 0.0) or 0.0) != 0.0:
        _fail(where, "attention_dropout", d["attention_dropout"], "attention dropout is not implemented")
    if d.get("use_sliding_window"):
        _fail(where, "use_sliding_window", True, "sliding-window attention is not implemented")
    layer_types = d.get("layer_types")
    if layer_types and any(t != "full_attention" for t in layer_types):
        _fail(where, "layer_types", sorted(set(layer_types)), "only full_attention layers are implemented")
    if family in ("llama", "olmo", "gemma") and d.get("sliding_window"):
        _fail(where, "sliding_window", d["sliding_window"], "sliding-window attention is not implemented")
    if d.get("use_bidirectional_attention"):
        _fail(where, "use_bidirectional_attention", True, "only causal attention is implemented")
    for field in ("attn_logit_softcapping", "final_logit_softcapping", "query_pre_attn_scalar"):
        if d.get(field) is not None:
            _fail(where, field, d[field], "not part of the supported architectures")

    heads = int(d["num_attention_heads"])
    hidden = int(d["hidden_size"])
    kv = int(d.get("num_key_value_heads") or heads)
    head_dim = int(d.get("head_dim") or hidden // heads)
    common = dict(
        family=family,
        vocab_size=int(d["vocab_size"]),
        hidden_size=hidden,
        intermediate_size=int(d["intermediate_size"]),
        num_hidden_layers=int(d["num_hidden_layers"]),
        num_attention_heads=heads,
        num_key_value_heads=kv,
        head_dim=head_dim,
        rope_theta=_rope_theta(d, where, 10000.0),
        hidden_act=act,
        tie_word_embeddings=bool(d.get("tie_word_embeddings", family == "gemma")),
        max_position_embeddings=int(d.get("max_position_embeddings", 2048)),
        bos_token_id=d.get("bos_token_id"),
        eos_token_id=tuple(d["eos_token_id"]) if isinstance(d.get("eos_token_id"), list) else d.get("eos_token_id"),
        pad_token_id=d.get("pad_token_id"),
    )
    if family == "llama":
        return ModelConfig(**common, norm_eps=float(d.get("rms_norm_eps", 1e-6)), norm_type="rmsnorm",
                           attention_bias=bool(d.get("attention_bias", False)),
                           mlp_bias=bool(d.get("mlp_bias", False)))
    if family == "qwen2":
        return ModelConfig(**common, norm_eps=float(d.get("rms_norm_eps", 1e-6)), norm_type="rmsnorm",
                           qkv_bias=True)
    if family == "olmo":
        return ModelConfig(**common, norm_eps=1e-5, norm_type="layernorm_nonparam",  # eps fixed in HF OLMo
                           attention_bias=bool(d.get("attention_bias", False)),
                           clip_qkv=None if d.get("clip_qkv") is None else float(d["clip_qkv"]))
    return ModelConfig(**common, norm_eps=float(d.get("rms_norm_eps", 1e-6)), norm_type="rmsnorm_plus_one",
                       attention_bias=bool(d.get("attention_bias", False)), scale_embeddings=True)


def config_to_hf(cfg: ModelConfig) -> dict:
    """The inverse, for export: a config.json transformers loads into the same architecture."""
    arch = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "olmo": "OlmoForCausalLM",
            "gemma": "GemmaForCausalLM"}[cfg.family]
    d = {
        "architectures": [arch], "model_type": cfg.family,
        "vocab_size": cfg.vocab_size, "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size, "num_hidden_layers": cfg.num_hidden_layers,
        "num_attention_heads": cfg.num_attention_heads, "num_key_value_heads": cfg.num_key_value_heads,
        "head_dim": cfg.head_dim, "hidden_act": cfg.hidden_act,
        "max_position_embeddings": cfg.max_position_embeddings,
        "rope_theta": cfg.rope_theta, "tie_word_embeddings": cfg.tie_word_embeddings,
        "bos_token_id": cfg.bos_token_id, "pad_token_id": cfg.pad_token_id,
        "eos_token_id": list(cfg.eos_token_id) if isinstance(cfg.eos_token_id, tuple) else cfg.eos_token_id,
    }
    if cfg.family != "olmo":
        d["rms_norm_eps"] = cfg.norm_eps
    if cfg.family in ("llama", "olmo", "gemma"):
        d["attention_bias"] = cfg.attention_bias
    if cfg.family == "llama":
        d["mlp_bias"] = cfg.mlp_bias
    if cfg.family == "olmo":
        d["clip_qkv"] = cfg.clip_qkv
    return d
