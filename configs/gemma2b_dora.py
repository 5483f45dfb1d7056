"""gemma-2b, dora: the same config as `--config=configs/experiment.py:gemma-2b,dora`."""

from configs.experiment import get_config as experiment


def get_config():
    return experiment("gemma-2b,dora")
