"""Figures for the analyses, built on matplotlib's object API.

No pyplot and no global backend switch: a `Figure` saves to PNG through the Agg canvas by itself
(so the CLI needs no display), and notebooks can still show the returned figures inline.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure


def _axes(ax, size=(6.0, 4.0)):
    if ax is not None:
        return ax.figure, ax
    fig = Figure(figsize=size, layout="constrained")
    return fig, fig.add_subplot()


def plot_density(grid: Sequence[float], density: Sequence[float], *, ax=None, log: bool = True,
                 title: str = "Hessian eigenvalue density (SLQ)"):
    """Log scale by default: Hessian spectra are a bulk near zero plus a few outliers."""
    fig, ax = _axes(ax)
    d = np.asarray(density, float)
    if log:
        floor = max(d.max() * 1e-8, 1e-300)
        ax.semilogy(grid, np.maximum(d, floor))
    else:
        ax.plot(grid, d)
    ax.set_xlabel("eigenvalue")
    ax.set_ylabel("density")
    ax.set_title(title)
    return fig


def plot_top_eigenvalues(series: Mapping[str, Sequence[float]], *, ax=None,
                         title: str = "Top Hessian eigenvalues"):
    """One stem series per method (e.g. Lanczos vs power iteration), index i = i-th largest."""
    fig, ax = _axes(ax)
    n = max((len(v) for v in series.values()), default=0)
    width = 0.8 / max(len(series), 1)
    for j, (label, values) in enumerate(series.items()):
        x = np.arange(1, len(values) + 1) + (j - (len(series) - 1) / 2) * width
        ax.stem(x, np.asarray(values, float), label=label, linefmt=f"C{j}-", markerfmt=f"C{j}o", basefmt="k-")
    ax.set_xticks(np.arange(1, n + 1))
    ax.set_xlabel("rank")
    ax.set_ylabel("eigenvalue")
    ax.set_title(title)
    ax.legend()
    return fig


def plot_per_layer(rows: Sequence[dict], key: str, *, ax=None, title: str = "", ylabel: str | None = None,
                   bound_key: str | None = None):
    """Stacked bars per layer, one colour per projection type; `bound_key` marks the summed bounds."""
    fig, ax = _axes(ax, (7.0, 4.0))
    layers = sorted({r["layer"] for r in rows})
    projs = sorted({r["proj"] for r in rows})
    value = {(r["layer"], r["proj"]): r[key] for r in rows}
    bottom = np.zeros(len(layers))
    for j, proj in enumerate(projs):
        h = np.array([value.get((layer, proj), 0.0) for layer in layers], float)
        ax.bar(layers, h, bottom=bottom, label=proj, color=f"C{j}")
        bottom += h
    if bound_key is not None:
        per_layer: dict[int, float] = {}
        for r in rows:
            if r.get(bound_key) is not None:
                per_layer[r["layer"]] = per_layer.get(r["layer"], 0.0) + r[bound_key]
        if per_layer:  # the sum of per-matrix bounds bounds the stacked bar (the sum of norms)
            bx, by = zip(*sorted(per_layer.items()))
            ax.scatter(bx, by, marker="_", s=300, color="k", label="LoRA bound (eq. 3)", zorder=3)
    ax.set_xticks(layers)
    ax.set_xlabel("layer")
    ax.set_ylabel(ylabel or key)
    ax.set_title(title)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def plot_curves(histories: Mapping[str, Mapping[str, Sequence[float]]], key: str, *, ax=None,
                log: bool = False, title: str | None = None, x: str | None = None):
    """One line per run (e.g. {"full": history, "lora": history}) of metric `key` against step, or
    against the history's column `x` (e.g. "epoch": runs with different steps per epoch line up)."""
    fig, ax = _axes(ax)
    for label, hist in histories.items():
        y = np.asarray(hist[key], float)
        ax.plot(np.arange(1, len(y) + 1) if x is None else np.asarray(hist[x], float), y, marker=".", label=label)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel(x or "step")
    ax.set_ylabel(key)
    ax.set_title(title or key)
    ax.legend()
    return fig


def save(fig, path: str) -> str:
    fig.savefig(path, dpi=100)
    return path
