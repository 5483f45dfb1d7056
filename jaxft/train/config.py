"""Experiment configs: `--config=configs/X.py[:arg]` (a get_config() file) plus `--config.a.b=v` overrides.

Unknown keys are refused with the closest known key, so a typo never trains the wrong experiment.
`parse_command_line` is the one reading of such a command line (train, plan and study use it).
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import inspect
import json
import os
import sys
from typing import Iterable, NamedTuple

import ml_collections

from jaxft.errors import ConfigError
from jaxft.peft.methods import METHODS

# The protocol's peak learning rate per method (our choice: the study does not print its values).
# A config's optim.learning_rate 0.0 means "this": finalize() fills it after every override.
LEARNING_RATES = {"full": 2e-5, "lora": 2e-4, "dora": 2e-4}
SCHEDULES = ("cosine", "constant")  # jaxft.train.loop.make_schedule: after the warmup


def split_spec(spec: str) -> tuple[str, str | None]:
    """`path[:arg]` -> (path, arg); as ml_collections' config_flags, the text after ':' goes to get_config."""
    if os.path.isfile(spec) or ":" not in spec:
        return spec, None
    path, arg = spec.split(":", 1)
    return path, arg


def read_config(spec: str) -> ml_collections.ConfigDict:
    """The ConfigDict that get_config() or get_config(arg) of `path[:arg]` returns, as written."""
    path, arg = split_spec(spec)
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path!r} does not exist")
    root = os.path.dirname(os.path.dirname(os.path.abspath(path)))
    if root not in sys.path:  # so that `from configs.base import ...` works from any cwd
        sys.path.insert(0, root)
    module_spec = importlib.util.spec_from_file_location(f"_jaxft_config_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"{path}: defines no get_config()")
    if arg is None:
        return module.get_config()
    if not inspect.signature(module.get_config).parameters:
        raise ConfigError(f"{path}: get_config() takes no argument, got {spec!r}; drop ':{arg}'")
    return module.get_config(arg)


def load_config_file(spec: str, overrides: Iterable[tuple[str, str]] = ()) -> ml_collections.ConfigDict:
    """The config `path[:arg]` names, `--config.` overrides (dotted key, text) applied, then finalized."""
    c = read_config(spec)
    for dotted, raw in overrides:
        apply_override(c, dotted, raw)
    finalize(c)
    return c


def _all_keys(c: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    keys = []
    for k, v in c.items():
        keys.append(prefix + k)
        if isinstance(v, ml_collections.ConfigDict):
            keys.extend(_all_keys(v, prefix + k + "."))
    return keys


# Keys that hold "auto" or an integer: ConfigDict's type check would refuse the switch between the two.
AUTO_OR_INT = ("micro_batch_size",)


def set_value(node: ml_collections.ConfigDict, key: str, value) -> None:
    """node[key] = value, also across "auto" <-> int for AUTO_OR_INT keys (a copied ConfigDict fixes a
    field's type to its value's)."""
    try:
        node[key] = value
    except TypeError:
        if key not in AUTO_OR_INT:
            raise
        with node.unlocked():
            del node[key]
            node[key] = value


def auto_or_int(value, key: str):
    """"auto" or a non-negative integer (an override's text "4" too), else a ConfigError naming the key."""
    if value == "auto":
        return value
    n = None
    if isinstance(value, str) and value.strip().isdigit():
        n = int(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        n = value
    if n is None or n < 0:
        raise ConfigError(f"config.{key}={value!r}; allowed: auto or an integer >= 0")
    return n


def _parse_value(raw: str, current, key: str):
    if key.rsplit(".", 1)[-1] in AUTO_OR_INT:
        return auto_or_int(raw, key)
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
    set_value(node, parts[-1], _parse_value(raw, node[parts[-1]], dotted))


def finalize(c: ml_collections.ConfigDict) -> None:
    """What a config leaves to its method, filled after the overrides: optim.learning_rate 0.0 becomes the
    method's rate, so `--config.method=full` on a LoRA file trains at the Full-FT rate, while
    `--config.optim.learning_rate=X` always wins. Configs without these keys (a study's) are left alone."""
    optim = c.get("optim")
    if isinstance(optim, ml_collections.ConfigDict) and optim.get("learning_rate") == 0.0:
        if c.get("method") in LEARNING_RATES:
            optim.learning_rate = LEARNING_RATES[c.method]


def validate(c: ml_collections.ConfigDict) -> None:
    for key in ("method", "total_steps", "checkpoint_every_steps", "model", "global_batch_size"):
        if key not in c:
            raise ConfigError(f"config lacks required key {key!r}")
    if c.method not in METHODS:
        raise ConfigError(f"config.method={c.method!r}; allowed: {', '.join(METHODS)}")
    if c.global_batch_size <= 0:
        raise ConfigError(f"config.global_batch_size={c.global_batch_size} must be positive")
    if "micro_batch_size" in c:
        set_value(c, "micro_batch_size", auto_or_int(c.micro_batch_size, "micro_batch_size"))
    if not isinstance(c.get("memory_limit_bytes", 0), int) or c.get("memory_limit_bytes", 0) < 0:
        raise ConfigError(f"config.memory_limit_bytes={c.memory_limit_bytes!r} must be an integer >= 0 "
                          "(0: the device's own memory)")
    if c.compute_dtype not in ("float32", "bfloat16"):
        raise ConfigError(f"config.compute_dtype={c.compute_dtype!r}; allowed: float32, bfloat16")
    if "optim" in c and c.optim.get("schedule", "cosine") not in SCHEDULES:
        raise ConfigError(f"config.optim.schedule={c.optim.schedule!r}; allowed: {', '.join(SCHEDULES)}")
    if "optim" in c and not c.optim.learning_rate > 0:
        raise ConfigError(f"config.optim.learning_rate={c.optim.learning_rate} must be positive "
                          "(0.0 means the method's rate: load the config with load_config_file)")
    from jaxft.train.lm_head_loss import DEFAULT_CHUNK, check_loss_settings

    check_loss_settings(c.get("loss_impl", "chunked"), c.get("loss_chunk", DEFAULT_CHUNK))
    from jaxft.train.wandb_logger import check_wandb_config

    check_wandb_config(c)  # logging.wandb without the extra installed: refused with the install hint


class CommandLine(NamedTuple):
    config: ml_collections.ConfigDict
    config_path: str  # as given, `path[:arg]`
    flags: dict[str, str]  # every other --name=value (--workdir among them)
    switches: frozenset[str]  # the bare --name arguments given


def parse_command_line(argv: Iterable[str], *, usage: str = "expected --name=value",
                       flags: Iterable[str] | None = None, switches: Iterable[str] = (),
                       required: dict[str, str] | None = None, training: bool = True) -> CommandLine:
    """`--config=path[:arg] [--config.a.b=v ...] [--name=value ...] [--switch ...]` -> the loaded config.

    flags: the --name=value names allowed besides --config (None: any, passed on); switches: the bare
    --name arguments allowed; required: flag name -> placeholder, checked before the config loads;
    usage: what a refused argument is told. training: validate the config (a study's is not a training config).
    """
    switches, allowed = frozenset(switches), None if flags is None else set(flags)
    spec, overrides, given, on = None, [], {}, set()
    for arg in argv:
        name, eq, value = arg[2:].partition("=") if arg.startswith("--") else ("", "", "")
        if not eq and name in switches:
            on.add(name)
        elif not name or not eq:
            raise ConfigError(f"argument {arg!r}: {usage}")
        elif name == "config":
            spec = value
        elif name.startswith("config."):
            overrides.append((name[len("config."):], value))
        elif allowed is None or name in allowed:
            given[name] = value
        else:
            raise ConfigError(f"argument {arg!r}: {usage}")
    if spec is None:
        raise ConfigError("missing --config=path/to/config.py")
    for name, placeholder in (required or {}).items():
        if not given.get(name):
            raise ConfigError(f"missing --{name}={placeholder}")
    c = load_config_file(spec, overrides)
    if training:
        validate(c)
    return CommandLine(c, spec, given, frozenset(on))


def parse_args(argv: list[str]) -> tuple[ml_collections.ConfigDict, str, dict]:
    """argv like ['--config=configs/tiny.py', '--workdir=runs/x', '--config.total_steps=5']."""
    cl = parse_command_line(argv, required={"workdir": "DIR"})
    extra = dict(cl.flags)
    return cl.config, extra.pop("workdir"), extra


def config_to_json(c: ml_collections.ConfigDict) -> str:
    return json.dumps(c.to_dict(), indent=2, sort_keys=True, default=list)


def weights_fingerprint(c: ml_collections.ConfigDict) -> str:
    """sha256 of the config without its eval and logging settings: what decides the trained weights (an
    evaluation output resumes only over the same weights; turning W&B on changes no weight)."""
    weights = {k: v for k, v in c.to_dict().items() if k not in ("eval", "logging")}
    return _sha256_of(weights)


def untrained_fingerprint(c: ml_collections.ConfigDict) -> str:
    """sha256 of what decides an untrained model's weights and ids (model, tokenizer, storage dtype; a
    random model's shape and seed too): a zero- or 5-shot cell resumes across changes to the training
    settings, which never touch the weights it evaluates."""
    keys = {"model": c.model, "tokenizer": c.get("tokenizer", ""), "param_dtype": c.get("param_dtype")}
    if c.model == "random":
        keys.update(random_model=c.random_model.to_dict(), seed=c.seed)
    return _sha256_of(keys)


def _sha256_of(value: dict) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(value, sort_keys=True, default=list).encode("utf-8")).hexdigest()
