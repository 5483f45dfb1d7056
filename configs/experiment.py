"""One experiment of the study: a model x fine-tuning method under the protocol (configs/base.py) on 10k
OrcaMath examples. `--config=configs/experiment.py:MODEL,METHOD`, e.g. `:smollm2-135m,lora`; the 15 files
configs/{model}_{method}.py name the same configs.

The per-device micro-batch is the base config's "auto": picked for the method (after any
`--config.method=` override) and the device's memory when the run starts, accumulation filling the
global batch of 64. What differs per model is, for Gemma-2B Full FT, the sharding and remat that make
it fit a v5e-8.
"""

from configs.base import get_base_config
from jaxft.errors import ConfigError
from jaxft.peft.methods import METHODS

# registry names: the study's five, then newer sub-1B models (not in the study) under the same protocol
MODELS = ("smollm2-135m", "smollm2-360m", "qwen2.5-0.5b", "olmo-1b", "gemma-2b",
          "gemma-3-270m", "gemma-3-270m-it", "qwen3-0.6b", "gemma-3-1b-pt", "llama-3.2-1b")


def get_config(arg: str = "smollm2-135m,lora"):
    model, _, method = arg.partition(",")
    if model not in MODELS or method not in METHODS:
        raise ConfigError(f"configs/experiment.py:{arg}: expected MODEL,METHOD with MODEL one of "
                          f"{', '.join(MODELS)} and METHOD one of {', '.join(METHODS)}")
    c = get_base_config(model=model, method=method)
    if (model, method) == ("gemma-2b", "full"):
        # Fits v5e-8 (8 x 16 GB): parameters, gradients and AdamW state sharded over all devices (fsdp)
        # and matmul outputs kept for the backward pass (remat "dots"): `python -m jaxft.plan
        # --config=configs/gemma2b_full.py --devices=v5e-8` gives 10.8 GiB per device.
        c.mesh_shape.data, c.mesh_shape.fsdp = 1, -1
        c.remat = "dots"
    return c
