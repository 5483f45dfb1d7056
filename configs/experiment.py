"""One experiment of the study: a model x fine-tuning method under the protocol (configs/base.py) on 10k
OrcaMath examples. `--config=configs/experiment.py:MODEL,METHOD`, e.g. `:smollm2-135m,lora`; the 15 files
configs/{model}_{method}.py name the same configs.

What differs per model is the per-device micro-batch (accumulation fills the global batch of 64) and,
for Gemma-2B Full FT, the sharding and remat that make it fit a v5e-8.
"""

from configs.base import get_base_config
from jaxft.errors import ConfigError
from jaxft.peft.methods import METHODS

# model (registry name) -> per-device micro-batch for (Full FT, LoRA/DoRA)
MICRO_BATCH = {"smollm2-135m": (16, 32), "smollm2-360m": (8, 16), "qwen2.5-0.5b": (8, 16),
               "olmo-1b": (4, 8), "gemma-2b": (2, 4)}


def get_config(arg: str = "smollm2-135m,lora"):
    model, _, method = arg.partition(",")
    if model not in MICRO_BATCH or method not in METHODS:
        raise ConfigError(f"configs/experiment.py:{arg}: expected MODEL,METHOD with MODEL one of "
                          f"{', '.join(MICRO_BATCH)} and METHOD one of {', '.join(METHODS)}")
    c = get_base_config(model=model, method=method)
    c.micro_batch_size = MICRO_BATCH[model][method != "full"]
    if (model, method) == ("gemma-2b", "full"):
        # Fits v5e-8 (8 x 16 GB): parameters, gradients and AdamW state sharded over all devices (fsdp)
        # and matmul outputs kept for the backward pass (remat "dots"): `python -m jaxft.plan
        # --config=configs/gemma2b_full.py --devices=v5e-8` gives 10.8 GiB per device.
        c.mesh_shape.data, c.mesh_shape.fsdp = 1, -1
        c.remat = "dots"
    return c
