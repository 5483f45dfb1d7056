"""olmo-1b, lora: the same config as `--config=configs/experiment.py:olmo-1b,lora`."""

from configs.experiment import get_config as experiment


def get_config():
    return experiment("olmo-1b,lora")
