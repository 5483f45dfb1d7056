"""qwen2.5-0.5b, full: the same config as `--config=configs/experiment.py:qwen2.5-0.5b,full`."""

from configs.experiment import get_config as experiment


def get_config():
    return experiment("qwen2.5-0.5b,full")
