"""gemma-2b, full: the study's protocol (see configs/base.py) on 10k OrcaMath examples."""

from configs.base import get_base_config


def get_config():
    c = get_base_config(model="gemma-2b", method="full")
    c.micro_batch_size = 2  # per device; accumulation fills the global batch of 64
    # Fits v5e-8 (8 x 16 GB): parameters, gradients and AdamW state sharded over all devices (fsdp)
    # and matmul outputs kept for the backward pass (remat "dots"): `python -m jaxft.plan
    # --config=configs/gemma2b_full.py --devices=v5e-8` gives 10.8 GiB per device.
    c.mesh_shape.data, c.mesh_shape.fsdp = 1, -1
    c.remat = "dots"
    return c
