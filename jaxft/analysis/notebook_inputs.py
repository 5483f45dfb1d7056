"""What the analysis notebooks take as input: settings from JAXFT_NOTEBOOK_* environment variables, and
the fine-tuning workdirs of a study's runs directory.

Environment variables because a notebook has no command line: `jupyter execute` runs the committed
notebooks on the real study grid with the defaults, CI on tiny workdirs by setting a few variables.
"""

from __future__ import annotations

import os
from typing import Sequence

from jaxft.errors import ConfigError, DataError
from jaxft.rundir import StudyCell


def env_param(name: str, default):
    """os.environ[name] parsed as the type of `default` (int, float or str), else `default`."""
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if isinstance(default, str):
        return raw
    try:
        return type(default)(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name}={raw!r} must be a{'n' if type(default) is int else ''} "
                          f"{type(default).__name__} (default {default!r})") from None


def train_workdirs(runs: str, methods: Sequence[str], model: str | None = None) -> tuple[str, dict[str, str]]:
    """(model, {method: training workdir}) of a study's runs directory (`python -m jaxft.study` layout:
    <runs>/<model>/<method>/train/), each holding metrics.jsonl.

    `model` None picks the one model of the directory that has a training workdir for every method.
    """
    if not os.path.isdir(runs):
        raise DataError(f"runs directory {runs!r} (JAXFT_NOTEBOOK_RUNS) does not exist; it is the --workdir "
                        f"of `python -m jaxft.study`")
    if not methods:
        raise ConfigError("no method given (JAXFT_NOTEBOOK_METHODS, e.g. 'full,lora,dora')")

    def missing(m: str) -> list[str]:
        return [x for x in methods if not os.path.isfile(StudyCell(runs, m, x).train.metrics)]

    models = sorted(e.name for e in os.scandir(runs) if e.is_dir() and not e.name.startswith("."))
    if model is None:
        complete = [m for m in models if not missing(m)]
        if len(complete) != 1:
            found = {m: [x for x in methods if x not in missing(m)] for m in models}
            raise DataError(f"{runs}: {'no model has' if not complete else 'several models have'} a training "
                            f"workdir (<model>/<method>/train/metrics.jsonl) for every method of {list(methods)}; "
                            f"found {found or 'no model directory'}; name one with JAXFT_NOTEBOOK_MODEL, or "
                            f"choose methods with JAXFT_NOTEBOOK_METHODS")
        model = complete[0]
    absent = missing(model)
    if absent:
        raise DataError(f"{runs}: model {model!r} has no training workdir with metrics.jsonl for "
                        f"{absent} (expected {StudyCell(runs, model, absent[0]).train.root}); models here: {models}")
    return model, {x: StudyCell(runs, model, x).train.root for x in methods}
