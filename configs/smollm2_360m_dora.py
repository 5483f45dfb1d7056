"""smollm2-360m, dora: the same config as `--config=configs/experiment.py:smollm2-360m,dora`."""

from configs.experiment import get_config as experiment


def get_config():
    return experiment("smollm2-360m,dora")
