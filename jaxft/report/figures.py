"""PNG figures of a study, rendered off-screen to bytes so the caller can write them atomically.

Figures use `matplotlib.figure.Figure` with the Agg canvas directly (no pyplot): no global state,
no display needed, the same on a laptop and a headless runner.
"""

from __future__ import annotations

import io
import math
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from jaxft.report.collect import BASELINE, Runs

# Fixed colours per method so every figure reads the same way.
METHOD_COLORS = {"zero-shot": "#8c8c8c", "5-shot": "#b5a33a", "full": "#1f77b4",
                 "lora": "#ff7f0e", "dora": "#2ca02c"}
_EXTRA_COLORS = ("#9467bd", "#8c564b", "#e377c2", "#17becf", "#d62728")
DPI = 120
# Curves longer than this get a moving average drawn over the raw (faint) per-step values.
SMOOTH_FROM = 40


def method_color(method: str, methods: list[str]) -> str:
    if method in METHOD_COLORS:
        return METHOD_COLORS[method]
    extra = [m for m in methods if m not in METHOD_COLORS]
    return _EXTRA_COLORS[extra.index(method) % len(_EXTRA_COLORS)] if method in extra else "k"


def png_bytes(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def _series(steps: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """(step, value) pairs where the value is a finite number (null/NaN steps are gaps)."""
    xs, ys = [], []
    for row in steps:
        v = row.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            xs.append(float(row["step"]))
            ys.append(float(v))
    return xs, ys


def _moving_average(ys: list[float], window: int) -> list[float]:
    """Trailing mean (shorter at the start), so the smoothed curve never looks ahead."""
    out, total = [], 0.0
    for i, y in enumerate(ys):
        total += y
        if i >= window:
            total -= ys[i - window]
        out.append(total / min(i + 1, window))
    return out


def _minor_log_label(v: float, _pos) -> str:
    """Label only the 2x and 5x minor ticks of a log axis: enough to read, not a smear."""
    if v <= 0:
        return ""
    mantissa = round(v / 10 ** math.floor(math.log10(v)), 6)
    return f"{v:g}" if mantissa in (2.0, 5.0) else ""


def curve_png(runs: Runs, model: str, key: str, label: str) -> bytes | None:
    """`key` vs step for every fine-tuning run of `model`, overlaid; None when nothing to draw."""
    series = []
    for method in runs.methods:
        run = runs.train.get((model, method))
        if run is not None:
            xs, ys = _series(run.steps, key)
            if xs:
                series.append((method, xs, ys))
    if not series:
        return None
    fig = Figure(figsize=(7.5, 4.5))
    ax = fig.add_subplot()
    smoothed_any = False
    for method, xs, ys in series:
        color = method_color(method, runs.methods)
        if len(ys) >= SMOOTH_FROM:
            window = max(2, len(ys) // 25)
            ax.plot(xs, ys, color=color, alpha=0.25, linewidth=0.8)
            ax.plot(xs, _moving_average(ys, window), color=color, linewidth=2.0, label=method)
            smoothed_any = True
        else:
            ax.plot(xs, ys, color=color, linewidth=1.8, marker="o", markersize=3, label=method)
    if key == "grad_norm" and all(y > 0 for _, _, ys in series for y in ys):
        ax.set_yscale("log")  # full FT and adapters differ by orders of magnitude
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # 0.1, not 10^-1
        ax.yaxis.set_minor_formatter(FuncFormatter(_minor_log_label))
        ax.tick_params(axis="y", which="minor", labelsize=7)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(label)
    title = f"{label} — {model}"
    if smoothed_any:
        title += "\n(faint: per step, bold: trailing moving average)"
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(title="method")
    fig.tight_layout()
    return png_bytes(fig)


def exact_match_png(runs: Runs, bench: str, rows: list[dict[str, Any]]) -> bytes | None:
    """Bars per model x method with Wilson CIs; dashed line = that model's zero-shot baseline."""
    cells = {(r["model"], r["method"]): r for r in rows if r["benchmark"] == bench}
    if not cells:
        return None
    models = [m for m in runs.models if any(k[0] == m for k in cells)]
    methods = [m for m in runs.methods if any(k[1] == m for k in cells)]
    width = 0.8 / len(methods)
    fig = Figure(figsize=(max(7.5, 2.5 + 0.45 * len(models) * len(methods)), 4.8))
    ax = fig.add_subplot()
    top = max(r["ci_high"] for r in cells.values())
    ymax = max(5.0, min(110.0, top * 1.1 + 2.0))  # room for the value labels above the caps
    for j, method in enumerate(methods):
        xs, ys, lo, hi = [], [], [], []
        for i, model in enumerate(models):
            x = i - 0.4 + width * (j + 0.5)
            r = cells.get((model, method))
            if r is None:
                ax.text(x, ymax * 0.01, "n/a", ha="center", va="bottom", fontsize=7,
                        rotation=90, color="0.45")
                continue
            xs.append(x)
            ys.append(r["exact_match"])
            lo.append(max(0.0, r["exact_match"] - r["ci_low"]))  # float dust at 0 or n correct
            hi.append(max(0.0, r["ci_high"] - r["exact_match"]))
        if xs:
            bars = ax.bar(xs, ys, width * 0.92, yerr=[lo, hi], capsize=2,
                          color=method_color(method, runs.methods), label=method,
                          error_kw={"elinewidth": 0.8, "ecolor": "0.25"})
            # Values above the upper error cap, clear of the bar lines; also tells a 0% bar
            # from a missing one.
            for bar, y, up in zip(bars, ys, hi):
                ax.text(bar.get_x() + bar.get_width() / 2, y + up + ymax * 0.01, f"{y:.1f}",
                        ha="center", va="bottom", fontsize=7, color="0.15")
    labelled = False
    for i, model in enumerate(models):
        base = cells.get((model, BASELINE))
        if base is not None:
            ax.hlines(base["exact_match"], i - 0.45, i + 0.45, colors="black", linestyles="--",
                      linewidth=1.2, label=None if labelled else "zero-shot baseline")
            labelled = True
    ax.set_xticks(range(len(models)))
    ax.set_xticklabels(models)
    ax.set_xlim(-0.6, len(models) - 0.4)
    ax.set_ylim(0, ymax)
    ax.set_yticks([t for t in ax.get_yticks() if 0 <= t <= min(100.0, ymax)])
    ax.set_xlabel("model")
    ax.set_ylabel("exact match (%)")
    ax.set_title(f"Exact match on {bench} (error bars: 95% Wilson interval)")
    ax.grid(True, axis="y", alpha=0.3)
    # Outside the axes: bars can reach 100% and must never hide behind the legend.
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    return png_bytes(fig)
