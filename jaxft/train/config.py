"""Experiment configs: `--config=configs/X.py` (a get_config() file) plus `--config.a.b=v` overrides.

Unknown keys are refused with the closest known key, so a typo never trains the wrong experiment.
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import json
import os
import sys

import ml_collections

from jaxft.errors import ConfigError

METHODS = ("full", "lora", "dora")


def load_config_file(path: str) -> ml_collections.ConfigDict:
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path!r} does not exist")
    root = os.path.dirname(os.path.dirname(os.path.abspath(path)))
    if root not in sys.path:  # so that `from configs.base import ...` works from any cwd
        sys.path.insert(0, root)
    spec = importlib.util.spec_from_file_location(f"_jaxft_config_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"{path}: defines no get_config()")
    return module.get_config()


def _all_keys(c: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    keys = []
    for k, v in c.items():
        keys.append(prefix + k)
        if isinstance(v, ml_collections.ConfigDict):
            keys.extend(_all_keys(v, prefix + k + "."))
    return keys


def _parse_value(raw: str, current, key: str):
    if isinstance(current, bool):
        if raw.lower() in ("true", "1", "yes"):
            return True
        if raw.lower() in ("false", "0", "no"):
            return False
        raise ConfigError(f"--config.{key}={raw!r}: expected a boolean (true/false)")
    if isinstance(current, int) and not isinstance(current, bool):
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"--config.{key}={raw!r}: expected an integer") from None
    if isinstance(current, float):
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"--config.{key}={raw!r}: expected a number") from None
    if isinstance(current, (tuple, list)):
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = [s for s in raw.split(",") if s]
        return tuple(value) if isinstance(value, (tuple, list)) else (value,)
    return raw


def apply_override(c: ml_collections.ConfigDict, dotted: str, raw: str) -> None:
    parts = dotted.split(".")
    node = c
    for i, part in enumerate(parts):
        if not isinstance(node, ml_collections.ConfigDict) or part not in node:
            known = _all_keys(c)
            close = difflib.get_close_matches(dotted, known, n=1)
            hint = f"; did you mean --config.{close[0]}?" if close else ""
            raise ConfigError(f"unknown config key {dotted!r}{hint}")
        if i < len(parts) - 1:
            node = node[part]
    node[parts[-1]] = _parse_value(raw, node[parts[-1]], dotted)


def validate(c: ml_collections.ConfigDict) -> None:
    for key in ("method", "total_steps", "checkpoint_every_steps", "model", "global_batch_size"):
        if key not in c:
            raise ConfigError(f"config lacks required key {key!r}")
    if c.method not in METHODS:
        raise ConfigError(f"config.method={c.method!r}; allowed: {', '.join(METHODS)}")
    if c.global_batch_size <= 0:
        raise ConfigError(f"config.global_batch_size={c.global_batch_size} must be positive")
    if c.compute_dtype not in ("float32", "bfloat16"):
        raise ConfigError(f"config.compute_dtype={c.compute_dtype!r}; allowed: float32, bfloat16")
    from jaxft.train.lm_head_loss import DEFAULT_CHUNK, check_loss_settings

    check_loss_settings(c.get("loss_impl", "chunked"), c.get("loss_chunk", DEFAULT_CHUNK))


def parse_args(argv: list[str]) -> tuple[ml_collections.ConfigDict, str, dict]:
    """argv like ['--config=configs/tiny.py', '--workdir=runs/x', '--config.total_steps=5']."""
    config_path, workdir, overrides, extra = None, None, [], {}
    for arg in argv:
        if not arg.startswith("--") or "=" not in arg:
            raise ConfigError(f"argument {arg!r}: expected --name=value")
        name, value = arg[2:].split("=", 1)
        if name == "config":
            config_path = value
        elif name == "workdir":
            workdir = value
        elif name.startswith("config."):
            overrides.append((name[len("config."):], value))
        else:
            extra[name] = value
    if config_path is None:
        raise ConfigError("missing --config=path/to/config.py")
    if workdir is None:
        raise ConfigError("missing --workdir=DIR")
    c = load_config_file(config_path)
    for dotted, raw in overrides:
        apply_override(c, dotted, raw)
    validate(c)
    return c, workdir, extra


def config_to_json(c: ml_collections.ConfigDict) -> str:
    return json.dumps(c.to_dict(), indent=2, sort_keys=True, default=list)


def weights_fingerprint(c: ml_collections.ConfigDict) -> str:
    """sha256 of the config without its eval settings: what decides the trained weights (an evaluation
    output resumes only over the same weights)."""
    import hashlib

    return hashlib.sha256(json.dumps({k: v for k, v in c.to_dict().items() if k != "eval"}, sort_keys=True,
                                     default=list).encode("utf-8")).hexdigest()
