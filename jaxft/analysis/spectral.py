"""What fine-tuning did to each weight matrix: intruder dimensions and weight displacement.

Intruder dimensions follow Shuttleworth et al. 2024 ("LoRA vs Full Fine-tuning: An Illusion of
Equivalence"): take the SVDs of the base matrix W0 and the fine-tuned W; for each of the top-k left
singular vectors u_i of W, compute max_j |cos(u_i, u0_j)| over the left singular vectors of W0 (all
of them by default, the first `base_k` if given). u_i is an intruder when that maximum is below
epsilon: a high-ranking direction of W with no counterpart in W0.

Displacement is ||W - W0||_F, absolute and relative to ||W0||_F. For a LoRA update ΔW = s·B·A the
study's equation 3 bounds it by the adapter norms:

    ||ΔW||_F = s·||B·A||_F <= s·||B||_F·||A||_F     (s = alpha/r, or alpha/sqrt(r) with rsLoRA)

by submultiplicativity of the Frobenius norm; it is reported beside each LoRA matrix. DoRA's
row-wise rescaling by m/||W + sBA|| has no such bound, so none is reported for DoRA.

Inputs are flat {hf_name: array} dicts (`jaxft.models.flat_params`). An adapted dict carries
`<module>.lora_A`, `<module>.lora_B` (and `<module>.lora_magnitude_vector`) beside
`<module>.weight`; `merge_adapters_flat` folds them into plain weights. All numerics are numpy
float64 on the host: per-matrix SVDs are small next to the model, and float32 SVD error would
otherwise show up as spurious small displacements.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import numpy as np

from jaxft.errors import ConfigError
from jaxft.peft.adapters import lora_scaling
from jaxft.peft.apply import DEFAULT_TARGETS

_MATRIX = re.compile(r"^(?:.*\.)?layers\.(\d+)\.(?:self_attn|mlp)\.(" + "|".join(DEFAULT_TARGETS) + r")\.weight$")
_ADAPTER_SUFFIXES = (".lora_A", ".lora_B", ".lora_magnitude_vector")


def matrix_names(flat: Mapping[str, Any]) -> list[str]:
    """The projection weights of every layer (the 7 types PEFT adapts by default), sorted by layer."""
    names = [n for n in flat if _MATRIX.match(n)]
    return sorted(names, key=lambda n: (int(_MATRIX.match(n).group(1)), n))


def describe(name: str) -> tuple[int, str]:
    """(layer index, projection type) of a projection weight name."""
    m = _MATRIX.match(name)
    if m is None:
        raise ConfigError(f"{name!r} is not a per-layer projection weight")
    return int(m.group(1)), m.group(2)


def _strip(name: str) -> str:
    """PEFT files name adapters `...lora_A.weight`; jaxft's own states `...lora_A`."""
    return name[: -len(".weight")] if name.endswith((".lora_A.weight", ".lora_B.weight")) else name


def adapter_modules(flat: Mapping[str, Any]) -> list[str]:
    return sorted({_strip(n)[: -len(".lora_A")] for n in flat if _strip(n).endswith(".lora_A")})


def has_adapters(flat: Mapping[str, Any]) -> bool:
    return bool(adapter_modules(flat))


def _f64(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _adapter(flat: Mapping[str, Any], module: str) -> dict[str, np.ndarray]:
    out = {}
    for n, v in flat.items():
        n = _strip(n)
        if n.startswith(module + ".") and n[len(module):] in _ADAPTER_SUFFIXES:
            out[n[len(module) + 1:]] = _f64(v)
    if "lora_B" not in out:
        raise ConfigError(f"adapter {module!r} has lora_A but no lora_B")
    return out


def _scaling(module: str, r: int, scaling: float | Mapping[str, float] | None, alpha: float | None,
             rslora: bool) -> float:
    if isinstance(scaling, Mapping):
        if module not in scaling:
            raise ConfigError(f"no LoRA scaling given for adapter {module!r}")
        return float(scaling[module])
    if scaling is not None:
        return float(scaling)
    if alpha is None:
        raise ConfigError("merging LoRA/DoRA adapters needs `alpha` (or `scaling`): s = alpha/r scales B·A")
    return lora_scaling(r, alpha, rslora)


def merge_adapters_flat(flat: Mapping[str, Any], *, alpha: float | None = None, r: int | None = None,
                        rslora: bool = False, scaling: float | Mapping[str, float] | None = None
                        ) -> dict[str, np.ndarray]:
    """Plain weights: W + s·B·A (LoRA) or m / ||W + s·B·A||_row · (W + s·B·A) (DoRA), adapters removed.

    s comes from `scaling` (one number, or {module: s}), else alpha/r (alpha/sqrt(r) with rslora),
    with r read from lora_A's shape unless given (then checked). DoRA is recognised by the presence
    of `lora_magnitude_vector`.
    """
    out = {n: _f64(v) for n, v in flat.items() if not _strip(n).endswith(_ADAPTER_SUFFIXES)}
    for module in adapter_modules(flat):
        ad = _adapter(flat, module)
        rank = ad["lora_A"].shape[0]
        if r is not None and r != rank:
            raise ConfigError(f"adapter {module!r} has rank {rank}, but r={r} was given")
        key = module + ".weight"
        if key not in out:
            raise ConfigError(f"adapter {module!r} has no base weight {key!r} in the parameters")
        s = _scaling(module, rank, scaling, alpha, rslora)
        merged = out[key] + s * ad["lora_B"] @ ad["lora_A"]
        if "lora_magnitude_vector" in ad:
            merged = (ad["lora_magnitude_vector"] / np.linalg.norm(merged, axis=1))[:, None] * merged
        out[key] = merged
    return out


def lora_bounds(flat: Mapping[str, Any], *, alpha: float | None = None, rslora: bool = False,
                scaling: float | Mapping[str, float] | None = None) -> dict[str, float]:
    """{weight name: s·||B||_F·||A||_F} for every LoRA (not DoRA) adapter: the equation-3 bound."""
    bounds = {}
    for module in adapter_modules(flat):
        ad = _adapter(flat, module)
        if "lora_magnitude_vector" in ad:
            continue
        s = _scaling(module, ad["lora_A"].shape[0], scaling, alpha, rslora)
        bounds[module + ".weight"] = abs(s) * float(np.linalg.norm(ad["lora_B"]) * np.linalg.norm(ad["lora_A"]))
    return bounds


def _pairs(base: Mapping[str, Any], tuned: Mapping[str, Any], names: list[str] | None) -> list[str]:
    if has_adapters(base) or has_adapters(tuned):
        raise ConfigError("the parameters still carry LoRA/DoRA adapters; merge them first "
                          "(merge_adapters_flat)")
    names = matrix_names(tuned) if names is None else list(names)
    if not names:
        raise ConfigError("no per-layer projection weights (q/k/v/o/gate/up/down_proj) found to compare")
    for n in names:
        if n not in base:
            raise ConfigError(f"base parameters have no {n!r}; are base and fine-tuned the same architecture?")
        if n not in tuned:
            raise ConfigError(f"fine-tuned parameters have no {n!r}")
        if np.shape(base[n]) != np.shape(tuned[n]):
            raise ConfigError(f"{n!r} has shape {np.shape(base[n])} in the base but {np.shape(tuned[n])} "
                              "fine-tuned")
    return names


def max_cosines(w0: Any, w: Any, k: int = 10, base_k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(max_j |<u_i, u0_j>|, σ_i) for the top-k left singular vectors u_i of W (unit vectors: cos = dot)."""
    u0 = np.linalg.svd(_f64(w0), full_matrices=False)[0]
    u, sv, _ = np.linalg.svd(_f64(w), full_matrices=False)
    k = min(k, u.shape[1])
    if base_k is not None:
        u0 = u0[:, :base_k]
    cos = np.abs(u[:, :k].T @ u0)
    return cos.max(axis=1), sv[:k]


def intruder_dimensions(base: Mapping[str, Any], tuned: Mapping[str, Any], *, k: int = 10,
                        epsilon: float = 0.5, base_k: int | None = None,
                        names: list[str] | None = None) -> dict:
    """Per matrix: how many of W's top-k singular vectors have max |cos| < epsilon against W0's.

    Returns {"k", "epsilon", "base_k", "matrices": [{name, layer, proj, count, max_cos, singular_values}],
    "per_layer": {layer: count}, "per_proj": {proj: count}, "total"}.
    """
    if not 0.0 < epsilon <= 1.0:
        raise ConfigError(f"epsilon={epsilon!r} must lie in (0, 1]")
    if k < 1:
        raise ConfigError(f"k must be >= 1, got {k}")
    rows = []
    for n in _pairs(base, tuned, names):
        cos, sv = max_cosines(base[n], tuned[n], k, base_k)
        layer, proj = describe(n)
        rows.append({"name": n, "layer": layer, "proj": proj, "count": int(np.sum(cos < epsilon)),
                     "max_cos": cos.tolist(), "singular_values": sv.tolist()})
    return {"k": k, "epsilon": epsilon, "base_k": base_k, "matrices": rows, **_totals(rows, "count")}


def _totals(rows: list[dict], key: str) -> dict:
    per_layer: dict[int, float] = {}
    per_proj: dict[str, float] = {}
    for row in rows:
        per_layer[row["layer"]] = per_layer.get(row["layer"], 0) + row[key]
        per_proj[row["proj"]] = per_proj.get(row["proj"], 0) + row[key]
    return {"per_layer": per_layer, "per_proj": per_proj, "total": sum(r[key] for r in rows)}


def weight_displacement(base: Mapping[str, Any], tuned: Mapping[str, Any], *,
                        bounds: Mapping[str, float] | None = None, names: list[str] | None = None) -> dict:
    """Per matrix ||W - W0||_F (abs), /||W0||_F (rel) and, when given, the LoRA bound (`lora_bounds`).

    Returns {"matrices": [{name, layer, proj, abs, rel, base_norm, lora_bound}], "per_layer": {layer:
    sqrt(Σ abs²)}, "per_proj": likewise, "total": ||ΔW||_F over all compared matrices}.
    """
    rows = []
    for n in _pairs(base, tuned, names):
        w0 = _f64(base[n])
        diff = float(np.linalg.norm(_f64(tuned[n]) - w0))
        norm0 = float(np.linalg.norm(w0))
        layer, proj = describe(n)
        rows.append({"name": n, "layer": layer, "proj": proj, "abs": diff,
                     "rel": diff / norm0 if norm0 > 0 else float("inf") if diff else 0.0,
                     "base_norm": norm0, "lora_bound": None if bounds is None else bounds.get(n),
                     "abs_sq": diff * diff})
    totals = _totals(rows, "abs_sq")
    for row in rows:
        del row["abs_sq"]
    return {"matrices": rows, "per_layer": {k: float(np.sqrt(v)) for k, v in totals["per_layer"].items()},
            "per_proj": {k: float(np.sqrt(v)) for k, v in totals["per_proj"].items()},
            "total": float(np.sqrt(totals["total"]))}


def compare(base: Mapping[str, Any], tuned: Mapping[str, Any], *, alpha: float | None = None,
            rslora: bool = False, scaling: float | Mapping[str, float] | None = None, k: int = 10,
            epsilon: float = 0.5, base_k: int | None = None) -> dict:
    """Both analyses for a (possibly adapted) fine-tuned dict against its base: merges first."""
    bounds = None
    if has_adapters(tuned):
        bounds = lora_bounds(tuned, alpha=alpha, rslora=rslora, scaling=scaling)
        tuned = merge_adapters_flat(tuned, alpha=alpha, rslora=rslora, scaling=scaling)
    return {"intruders": intruder_dimensions(base, tuned, k=k, epsilon=epsilon, base_k=base_k),
            "displacement": weight_displacement(base, tuned, bounds=bounds)}


def model_flat(model: Any) -> tuple[dict[str, np.ndarray], dict[str, float] | None]:
    """(flat numpy params, {adapter module: its LoRA scaling} or None for a plain model)."""
    from jaxft.models.params import flat_params
    from jaxft.peft.apply import adapted_layers

    flat = {k: np.asarray(v) for k, v in flat_params(model).items()}
    layers = adapted_layers(model)
    return flat, ({n: float(m.scaling) for n, m in layers.items()} if layers else None)


def compare_models(base_model: Any, tuned_model: Any, *, k: int = 10, epsilon: float = 0.5,
                   base_k: int | None = None) -> dict:
    """`compare` for two jaxft models; adapter scalings are read from the adapted layers themselves."""
    base, base_scalings = model_flat(base_model)
    if base_scalings:
        base = merge_adapters_flat(base, scaling=base_scalings)
    tuned, scalings = model_flat(tuned_model)
    return compare(base, tuned, scaling=scalings, k=k, epsilon=epsilon, base_k=base_k)
