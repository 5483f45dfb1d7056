"""HF config.json -> ModelConfig, refusing every field that would change the math unseen."""

from __future__ import annotations

from typing import Any

from jaxft.errors import UnsupportedConfigError
from jaxft.models.config import ModelConfig, RopeScaling

SUPPORTED_MODEL_TYPES = {"llama": "llama", "qwen2": "qwen2", "olmo": "olmo", "gemma": "gemma",
                         "gemma3_text": "gemma3", "qwen3": "qwen3"}
HF_MODEL_TYPES = {family: model_type for model_type, family in SUPPORTED_MODEL_TYPES.items()}
ROPE_TYPES = ("default", "linear", "llama3")  # what the supported checkpoints use
_LLAMA3_KEYS = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")
_ACT_ALIASES = {"silu": "silu", "swish": "silu", "gelu_pytorch_tanh": "gelu_pytorch_tanh",
                "gelu_tanh": "gelu_pytorch_tanh"}


def _fail(where: str, field: str, value: Any, why: str) -> None:
    raise UnsupportedConfigError(f"{where}: config field {field!r}={value!r} is not supported: {why}")


def _scaling(params: Any, where: str, field: str) -> RopeScaling | None:
    """HF's rope type and its parameters (one `rope_parameters` / `rope_scaling` dict) -> RopeScaling."""
    if params is None:
        return None
    if not isinstance(params, dict):
        _fail(where, field, params, "expected a dict with rope_type")
    rtype = params.get("rope_type", params.get("type", "default"))
    if rtype not in ROPE_TYPES and rtype is not None:
        _fail(where, f"{field}.rope_type", rtype, f"supported rope types: {', '.join(ROPE_TYPES)}")
    if params.get("partial_rotary_factor", 1.0) != 1.0:
        _fail(where, f"{field}.partial_rotary_factor", params["partial_rotary_factor"],
              "only full rotary embeddings are implemented")
    if rtype in (None, "default"):
        return None
    if "factor" not in params:
        _fail(where, field, params, f"rope_type {rtype!r} needs a factor")
    if rtype == "linear":
        return RopeScaling("linear", float(params["factor"]))
    missing = [k for k in _LLAMA3_KEYS if params.get(k) is None]
    if missing:
        _fail(where, field, params, f"rope_type 'llama3' needs {', '.join(missing)}")
    return RopeScaling("llama3", float(params["factor"]), float(params["low_freq_factor"]),
                       float(params["high_freq_factor"]), int(params["original_max_position_embeddings"]))


def _rope(d: dict, where: str, default: float) -> tuple[float, RopeScaling | None]:
    """(rope_theta, scaling) from transformers 5's `rope_parameters` or the hub's legacy
    `rope_theta` + `rope_scaling`."""
    params = d.get("rope_parameters")
    legacy = d.get("rope_scaling")
    if d.get("partial_rotary_factor", 1.0) != 1.0:
        _fail(where, "partial_rotary_factor", d["partial_rotary_factor"], "only full rotary embeddings")
    if isinstance(params, dict):
        scaling = _scaling(params, where, "rope_parameters")
        theta = params.get("rope_theta", d.get("rope_theta", default))
        if legacy is not None and scaling is None:
            scaling = _scaling(legacy, where, "rope_scaling")
    else:
        theta = d.get("rope_theta", default)
        scaling = _scaling(legacy, where, "rope_scaling")
    return float(theta), scaling


def _gemma3_rope(d: dict, where: str) -> tuple[float, RopeScaling | None, float]:
    """Gemma 3's two rope bases: (global theta, global scaling, local theta). transformers 5 writes
    `rope_parameters` per layer type; hub configs have rope_theta, rope_scaling, rope_local_base_freq."""
    params = d.get("rope_parameters")
    if isinstance(params, dict) and ("full_attention" in params or "sliding_attention" in params):
        full = params.get("full_attention") or {}
        local = params.get("sliding_attention") or {}
        if _scaling(local, where, "rope_parameters.sliding_attention") is not None:
            _fail(where, "rope_parameters.sliding_attention.rope_type", local.get("rope_type"),
                  "sliding layers use the default rotary embedding in Gemma 3")
        return (float(full.get("rope_theta", 1e6)), _scaling(full, where, "rope_parameters.full_attention"),
                float(local.get("rope_theta", 1e4)))
    theta, scaling = _rope(d, where, 1e6)  # Gemma3TextConfig's defaults: 1e6 global, 1e4 local
    return theta, scaling, float(d.get("rope_local_base_freq", 1e4))


def _gemma3_layers(d: dict, where: str, n_layers: int) -> dict:
    """layer_types (or HF's fallback: every sliding_window_pattern-th layer global), the window."""
    types = d.get("layer_types")
    if types is None:
        pattern = int(d.get("sliding_window_pattern", 6))
        types = ["sliding_attention" if (i + 1) % pattern else "full_attention" for i in range(n_layers)]
    bad = sorted(set(types) - {"sliding_attention", "full_attention"})
    if bad:
        _fail(where, "layer_types", bad, "allowed: full_attention, sliding_attention")
    if len(types) != n_layers:
        _fail(where, "layer_types", f"{len(types)} entries", f"num_hidden_layers is {n_layers}")
    window = d.get("sliding_window", 4096)
    if "sliding_attention" in types and not (window or 0) > 0:
        _fail(where, "sliding_window", window, "sliding_attention layers need a window >= 1")
    return dict(layer_types=tuple(types), sliding_window=int(window) if window else None)


def config_from_hf(d: dict, where: str = "config.json") -> ModelConfig:
    """Translate a config.json dict; `where` names the file in error messages."""
    model_type = d.get("model_type")
    if model_type == "gemma3":
        _fail(where, "model_type", model_type, "the multimodal Gemma 3 (4B and larger) is not supported; "
              "the text-only gemma3_text checkpoints (270M, 1B) are")
    if model_type not in SUPPORTED_MODEL_TYPES:
        _fail(where, "model_type", model_type, f"supported model types: {sorted(SUPPORTED_MODEL_TYPES)}")
    family = SUPPORTED_MODEL_TYPES[model_type]

    act = d.get("hidden_act", "silu")
    if family == "gemma3":
        act = d.get("hidden_activation") or "gelu_pytorch_tanh"
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
    if family != "gemma3" and layer_types and any(t != "full_attention" for t in layer_types):
        _fail(where, "layer_types", sorted(set(layer_types)), "sliding-window layers are implemented for "
              "gemma3_text only")
    if family in ("llama", "olmo", "gemma") and d.get("sliding_window"):
        _fail(where, "sliding_window", d["sliding_window"], "sliding-window attention is implemented for "
              "gemma3_text only")
    if d.get("use_bidirectional_attention"):
        _fail(where, "use_bidirectional_attention", True, "only causal attention is implemented")
    for field in ("attn_logit_softcapping", "final_logit_softcapping"):  # null in every Gemma 3 config
        if d.get(field) is not None:
            _fail(where, field, d[field], "logit softcapping is not implemented")
    if family != "gemma3" and d.get("query_pre_attn_scalar") is not None:
        _fail(where, "query_pre_attn_scalar", d["query_pre_attn_scalar"], "used by gemma3_text only")

    heads = int(d["num_attention_heads"])
    hidden = int(d["hidden_size"])
    kv = int(d.get("num_key_value_heads") or heads)
    head_dim = int(d.get("head_dim") or hidden // heads)
    rope_theta, rope_scaling = _rope(d, where, 10000.0) if family != "gemma3" else (None, None)
    if rope_scaling is not None and family not in ("llama", "qwen2", "qwen3"):
        _fail(where, "rope_scaling", rope_scaling.rope_type, f"no {model_type} checkpoint scales its rope")
    common = dict(
        family=family,
        vocab_size=int(d["vocab_size"]),
        hidden_size=hidden,
        intermediate_size=int(d["intermediate_size"]),
        num_hidden_layers=int(d["num_hidden_layers"]),
        num_attention_heads=heads,
        num_key_value_heads=kv,
        head_dim=head_dim,
        rope_theta=rope_theta,
        rope_scaling=rope_scaling,
        hidden_act=act,
        tie_word_embeddings=bool(d.get("tie_word_embeddings", family in ("gemma", "gemma3"))),
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
    if family == "qwen3":  # plain RMSNorm on q/k per head, no q/k/v bias
        return ModelConfig(**common, norm_eps=float(d.get("rms_norm_eps", 1e-6)), norm_type="rmsnorm",
                           attention_bias=bool(d.get("attention_bias", False)), qk_norm=True)
    if family == "gemma3":
        theta, scaling, local_theta = _gemma3_rope(d, where)
        common.update(rope_theta=theta, rope_scaling=scaling)
        return ModelConfig(**common, norm_eps=float(d.get("rms_norm_eps", 1e-6)), norm_type="rmsnorm_plus_one",
                           attention_bias=bool(d.get("attention_bias", False)), scale_embeddings=True,
                           qk_norm=True, sandwich_norms=True, rope_local_theta=local_theta,
                           query_pre_attn_scalar=float(d.get("query_pre_attn_scalar", 256)),
                           **_gemma3_layers(d, where, common["num_hidden_layers"]))
    if family == "olmo":
        return ModelConfig(**common, norm_eps=1e-5, norm_type="layernorm_nonparam",  # eps fixed in HF OLMo
                           attention_bias=bool(d.get("attention_bias", False)),
                           clip_qkv=None if d.get("clip_qkv") is None else float(d["clip_qkv"]))
    return ModelConfig(**common, norm_eps=float(d.get("rms_norm_eps", 1e-6)), norm_type="rmsnorm_plus_one",
                       attention_bias=bool(d.get("attention_bias", False)), scale_embeddings=True)


def config_to_hf(cfg: ModelConfig) -> dict:
    """The inverse, for export: a config.json transformers loads into the same architecture."""
    arch = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "olmo": "OlmoForCausalLM",
            "gemma": "GemmaForCausalLM", "gemma3": "Gemma3ForCausalLM", "qwen3": "Qwen3ForCausalLM"}[cfg.family]
    d = {
        "architectures": [arch], "model_type": HF_MODEL_TYPES[cfg.family],
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
    if cfg.family in ("llama", "olmo", "gemma", "gemma3", "qwen3"):
        d["attention_bias"] = cfg.attention_bias
    if cfg.rope_scaling is not None:  # the hub's legacy key: transformers 4 and 5 both read it
        r = cfg.rope_scaling
        d["rope_scaling"] = {"rope_type": r.rope_type, "factor": r.factor}
        if r.rope_type == "llama3":
            d["rope_scaling"].update(low_freq_factor=r.low_freq_factor, high_freq_factor=r.high_freq_factor,
                                     original_max_position_embeddings=r.original_max_position_embeddings)
    if cfg.family == "gemma3":
        scalar = cfg.query_pre_attn_scalar
        d.update(hidden_activation=cfg.hidden_act,  # an int in HF's (strict) Gemma3TextConfig
                 query_pre_attn_scalar=int(scalar) if scalar is not None and float(scalar).is_integer() else scalar,
                 rope_local_base_freq=cfg.rope_local_theta, sliding_window=cfg.sliding_window,
                 layer_types=list(cfg.layer_types) or ["full_attention"] * cfg.num_hidden_layers)
    if cfg.family == "llama":
        d["mlp_bias"] = cfg.mlp_bias
    if cfg.family == "olmo":
        d["clip_qkv"] = cfg.clip_qkv
    return d
