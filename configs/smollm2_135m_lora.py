"""smollm2-135m, lora: the same config as `--config=configs/experiment.py:smollm2-135m,lora`."""

from configs.experiment import get_config as experiment


def get_config():
    return experiment("smollm2-135m,lora")
