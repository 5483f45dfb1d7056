"""gemma-2b, full: the study's protocol (see configs/base.py) on 10k OrcaMath examples."""

from configs.base import get_base_config


def get_config():
    c = get_base_config(model="gemma-2b", method="full")
    c.micro_batch_size = 2  # per device; accumulation fills the global batch of 64
    return c
