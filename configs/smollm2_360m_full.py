"""smollm2-360m, full: the same config as `--config=configs/experiment.py:smollm2-360m,full`."""

from configs.experiment import get_config as experiment


def get_config():
    return experiment("smollm2-360m,full")
