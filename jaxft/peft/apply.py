"""Choose target linear layers by HF module name and swap them for adapters in place."""

from __future__ import annotations

import re
from typing import Any, Iterable, Sequence

import jax
from flax import nnx

from jaxft.errors import ConfigError
from jaxft.models.transformer import Linear
from jaxft.peft.adapters import ADAPTERS, DoRALinear, LoRALinear
from jaxft.peft.methods import METHODS, TARGETS, UNADAPTED

DEFAULT_TARGETS = TARGETS  # apply_peft's default: every projection of every layer
_PLAIN = re.compile(r"[A-Za-z0-9_.]+")

Targets = str | Sequence[str]


def module_name(path: tuple) -> str:
    return ".".join(str(p) for p in path)


def linear_layers(model: Any) -> dict[str, Linear]:
    """{'model.layers.0.self_attn.q_proj': module, ...} for every Linear, adapted or not."""
    return {module_name(p): m for p, m in nnx.iter_modules(model) if isinstance(m, Linear)}


def is_plain(pattern: str) -> bool:
    return _PLAIN.fullmatch(pattern) is not None


def matches(pattern: str, name: str) -> bool:
    """PEFT's list semantics for plain names (the name or a dotted suffix of it), fullmatch otherwise."""
    if is_plain(pattern) and (name == pattern or name.endswith("." + pattern)):
        return True
    return re.fullmatch(pattern, name) is not None


def adaptable_layers(model: Any) -> list[str]:
    """Sorted names of the Linear layers an adapter may replace: all but the head and embeddings (UNADAPTED)."""
    return sorted(n for n in linear_layers(model) if n not in UNADAPTED)


def _valid_targets(names: list[str]) -> str:
    return f"valid targets: {', '.join(leaf_targets(names))} (or a regex over full names such as {names[0]!r})"


def resolve_targets(model: Any, targets: Targets, *, strict: bool = True) -> list[str]:
    """Sorted names of the decoder-layer Linear layers `targets` selects.

    A single string is one full-name regex (as PEFT treats a string `target_modules`); a list holds
    plain names (matched against the last dotted components) or regexes. `strict`: every pattern
    must select a layer (typos fail loudly); otherwise, as in PEFT, only the union must be non-empty.
    A pattern that selects the LM head or the embeddings is refused whatever `strict` says: the model
    reads those weights directly, so an adapter there would have no effect.
    """
    patterns = [targets] if isinstance(targets, str) else list(targets)
    names = adaptable_layers(model)
    if not patterns:
        raise ConfigError(f"peft targets: the list is empty; {_valid_targets(names)}")
    chosen, unmatched = set(), []
    for pattern in patterns:
        try:
            hit = [n for n in names if matches(pattern, n)]
            refused = [n for n in UNADAPTED if matches(pattern, n)]
        except re.error as e:
            raise ConfigError(f"peft target {pattern!r} is not a valid regex: {e}") from e
        if refused:
            raise ConfigError(f"peft target {pattern!r} selects {refused[0]!r}, which jaxft does not adapt (the "
                              f"model reads the head and embedding weights directly; train them with "
                              f"method=full); {_valid_targets(names)}")
        if not hit:
            unmatched.append(pattern)
        chosen.update(hit)
    if unmatched and (strict or not chosen):
        raise ConfigError(f"peft target {unmatched[0]!r} matches no linear layer of the decoder layers; "
                          f"{_valid_targets(names)} (a plain name matches the last component, a regex the full name)")
    return sorted(chosen)


def _child(node: Any, key: Any) -> Any:
    return node[key] if isinstance(key, int) else getattr(node, key)


def replace_module(model: Any, path: tuple, new: Any) -> None:
    parent = model
    for key in path[:-1]:
        parent = _child(parent, key)
    if isinstance(path[-1], int):
        parent[path[-1]] = new
    else:
        setattr(parent, path[-1], new)


def check_hparams(method: str, r: int, alpha: float, dropout: float) -> None:
    if method not in METHODS:
        raise ConfigError(f"peft method {method!r} is not supported; allowed: {list(METHODS)}")
    if method == "full":
        return
    if not isinstance(r, int) or r <= 0:
        raise ConfigError(f"lora rank r={r!r} must be a positive integer")
    if not alpha > 0:
        raise ConfigError(f"lora alpha={alpha!r} must be positive")
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"lora dropout={dropout!r} must lie in [0, 1)")


def apply_peft(model: Any, method: str, *, targets: Targets = DEFAULT_TARGETS, r: int = 8, alpha: float = 32,
               dropout: float = 0.05, rslora: bool = False, seed: int = 0, strict: bool = True) -> Any:
    """Swap the targeted Linear layers of `model` for LoRA/DoRA adapters, in place; returns `model`.

    "full" leaves the model untouched; `strict` is `resolve_targets`'s. Works on abstract models
    (`abstract_model`) too, giving shape-only adapters. Each layer's A draws from
    fold_in(key(seed), index in sorted name order), so the init does not depend on traversal order.
    """
    check_hparams(method, r, alpha, dropout)
    if method == "full":
        return model
    layers = linear_layers(model)
    paths = {module_name(p): p for p, m in nnx.iter_modules(model) if isinstance(m, Linear)}
    names = resolve_targets(model, targets, strict=strict)
    done = [n for n in names if isinstance(layers[n], LoRALinear)]
    if done:  # checked before any swap, so a failure leaves the model as it was
        raise ConfigError(f"layer {done[0]!r} already carries an adapter; apply_peft once per model")
    key = jax.random.key(seed)
    for i, name in enumerate(names):
        new = ADAPTERS[method](layers[name], r=r, alpha=alpha, dropout=dropout, rslora=rslora, key=key, index=i)
        replace_module(model, paths[name], new)
    return model


def adapted_layers(model: Any) -> dict[str, LoRALinear]:
    return {n: m for n, m in linear_layers(model).items() if isinstance(m, LoRALinear)}


def peft_method(model: Any) -> str:
    """'dora', 'lora' or 'full' (no adapters), from the layers themselves."""
    kinds = {isinstance(m, DoRALinear) for m in adapted_layers(model).values()}
    if not kinds:
        return "full"
    if len(kinds) > 1:
        raise ConfigError("model mixes LoRA and DoRA layers; jaxft exports one method per model")
    return "dora" if kinds.pop() else "lora"


def leaf_targets(names: Iterable[str]) -> list[str]:
    return sorted({n.rsplit(".", 1)[-1] for n in names})
