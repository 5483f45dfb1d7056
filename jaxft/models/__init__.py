"""Model ports: one Transformer for the Llama (2/3.x), Qwen2, Qwen3, OLMo, Gemma and Gemma 3 families."""

from jaxft.models.config import ModelConfig
from jaxft.models.load import load_model, load_tokenizer, resolve_source
from jaxft.models.params import abstract_model, count_params, flat_params, set_params
from jaxft.models.registry import HF_CONFIGS, HUB_IDS, KNOWN, registry_config
from jaxft.models.transformer import Transformer, init_cache

__all__ = ["ModelConfig", "Transformer", "init_cache", "load_model", "load_tokenizer", "resolve_source", "abstract_model",
           "count_params", "flat_params", "set_params", "HF_CONFIGS", "HUB_IDS", "KNOWN", "registry_config"]
