"""olmo-1b, dora: the same config as `--config=configs/experiment.py:olmo-1b,dora`."""

from configs.experiment import get_config as experiment


def get_config():
    return experiment("olmo-1b,dora")
