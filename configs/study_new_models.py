"""The study's grid for the newer sub-1B models (Gemma 3 270M and 1B, Qwen3 0.6B, Llama 3.2 1B), each
trained under the study's protocol through configs/experiment.py:MODEL,METHOD. Everything else is
configs/study.py's, so `python -m jaxft.plan --fits --devices=rtx4090x1 --study_config=configs/study_new_models.py`
and `python -m jaxft.study --config=configs/study_new_models.py` read the same settings."""

import ml_collections

from configs.study import get_config as get_study_config

# study key (ConfigDict keys take no dots) -> registry name
MODELS = {"gemma-3-270m": "gemma-3-270m", "qwen3-06b": "qwen3-0.6b", "gemma-3-1b": "gemma-3-1b-pt",
          "llama-32-1b": "llama-3.2-1b"}


def get_config():
    c = get_study_config()
    c.models = tuple(MODELS)
    c.model_configs = ml_collections.ConfigDict(
        {key: f"configs/experiment.py:{name},{{method}}" for key, name in MODELS.items()})
    return c
