"""Two figures that carry the study's argument: the cliff and cost against exact match.

The cliff: exact match against parameter count (log axis), one line per fine-tuning method,
zero-shot and 5-shot as dashed reference lines; the study's Table 2 values as hollow markers
of the same colours when a `PaperTables` is given. Cost: exact match against training
device-hours and dollars (two panels: the dollar axis is ours at `price_per_hour` and the
study's at its own $/H100-hour, so one shared axis would mislead when the prices differ).

Builders return a matplotlib Figure (tests read the plotted data back from it) or None when
there is nothing to draw; `figures.png_bytes` renders it.
"""

from __future__ import annotations

import math
import textwrap
from typing import Any

from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter, NullLocator

from jaxft.report.collect import FINE_TUNED, Runs
from jaxft.report.compare import device_count, device_hours, matched_runs
from jaxft.report.figures import method_color
from jaxft.report.paper import TABLE2_METHODS, PaperTables

REFERENCE_STYLE = {"zero-shot": ("--", "x"), "5-shot": (":", "+")}
MODEL_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h")
PAPER_LABEL = "hollow: the study (arXiv 2606.06920)"
DODGE = 0.015  # log10 units between neighbouring fine-tuned methods (3.5%)


def model_params(runs: Runs, paper: PaperTables | None = None) -> dict[str, float]:
    """Parameters per run model: the smallest total_params of its training runs (Full FT's;
    adapters add a little), else the nominal size of the paper model it stands for."""
    out: dict[str, float] = {}
    for (model, _), run in runs.train.items():
        total = (run.summary or {}).get("total_params")
        if isinstance(total, (int, float)) and not isinstance(total, bool) and total > 0:
            out[model] = min(out.get(model, math.inf), float(total))
    if paper is not None:
        for model in runs.models:
            key = paper.match(model)
            if model not in out and key is not None:
                out[model] = float(paper.models[key]["nominal_params"])
    return out


def format_count(n: float) -> str:
    """135000000 -> '135M', 1.7e9 -> '1.7B'."""
    for scale, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.3g}"


def _paper_points(runs: Runs, paper: PaperTables, bench: str, params: dict[str, float]):
    """method -> [(x, exact match)] of the study's Table 2, at the size of our matching run."""
    matched = matched_runs(runs, paper)
    points: dict[str, list[tuple[float, float]]] = {}
    for key, info in paper.models.items():
        x = next((params[m] for m in matched[key] if m in params), info["nominal_params"])
        for method in TABLE2_METHODS:
            v = paper.exact_match(key, method, bench)
            if v is not None:
                points.setdefault(method, []).append((float(x), float(v)))
    return {m: sorted(p) for m, p in points.items()}


def _log_ticks(ax, xs: list[float]) -> None:
    """Ticks exactly at the model sizes, labelled 135M / 1B: readable on a short log axis."""
    xs = sorted(set(xs))
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(xs))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: format_count(v)))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlim(xs[0] / 1.6, xs[-1] * 1.6)


def dodge(method: str, methods: list[str]) -> float:
    """x factor that spreads the fine-tuned methods by a few percent around the true size, so
    their error bars (and the study's marker of the same method) do not sit on one another."""
    tuned = [m for m in methods if m not in REFERENCE_STYLE]
    if method not in tuned:
        return 1.0
    return 10 ** (DODGE * (tuned.index(method) - (len(tuned) - 1) / 2))


def cliff_figure(runs: Runs, bench: str, rows: list[dict[str, Any]], params: dict[str, float],
                 paper: PaperTables | None = None) -> Figure | None:
    """axes[0]: every size; axes[1] (when the paper covers sizes we did not run): a zoom on ours,
    whose few points would otherwise sit unreadably low beside the paper's larger models."""
    cells = {(r["model"], r["method"]): r for r in rows if r["benchmark"] == bench}
    ours: dict[str, list[dict]] = {}
    for method in runs.methods:
        pts = [dict(cells[(m, method)], x=params[m]) for m in runs.models
               if m in params and (m, method) in cells]
        if pts:
            ours[method] = sorted(pts, key=lambda p: p["x"])
    theirs = _paper_points(runs, paper, bench, params) if paper is not None else {}
    if not ours and not theirs:
        return None
    sizes = {p["x"] for pts in ours.values() for p in pts}
    zoom = bool(sizes) and any(x not in sizes for pts in theirs.values() for x, _ in pts)
    fig = Figure(figsize=(12.0 if zoom else 8.8, 5.0))
    if zoom:
        ax, zoom_ax = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3.0, 1.0]})
    else:
        ax, zoom_ax = fig.add_subplot(), None
    methods = list(dict.fromkeys(list(ours) + list(theirs)))
    _draw_cliff(ax, runs, ours, theirs, methods)
    ax.set_xlabel("parameters (log scale)")
    ax.set_ylabel("exact match (%)")
    sub = "solid: jaxft fine-tuning, bars = 95% Wilson interval; dashed/dotted: prompting"
    if paper is not None:
        sub += ("\nhollow: the study's Table 2" if theirs
                else "\nthe study: no Table 2 value typed for this benchmark")
    ax.set_title(f"Exact match against model size — {bench}\n{sub}", fontsize=9.5)
    handles, _ = ax.get_legend_handles_labels()
    if paper is not None and theirs:
        handles.append(Line2D([], [], linestyle="none", marker="o", markersize=9,
                              markerfacecolor="none", markeredgecolor="0.2", label=PAPER_LABEL))
    if zoom_ax is not None:
        _draw_cliff(zoom_ax, runs, ours, theirs, methods, keep=sizes, prefix="zoom:")
        zoom_ax.set_xlabel("parameters")
        zoom_ax.set_title("zoom: the sizes jaxft ran", fontsize=9.5)
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0),
              borderaxespad=0.0)
    fig.tight_layout()
    return fig


def _draw_cliff(ax, runs: Runs, ours: dict, theirs: dict, methods: list[str],
                keep: set[float] | None = None, prefix: str = "") -> None:
    """Our series and the paper's hollow markers on `ax`; only sizes in `keep` when given."""
    xs, tops = [], [5.0 if keep is None else 1.0]
    for method, pts in ours.items():
        pts = [p for p in pts if keep is None or p["x"] in keep]
        if not pts:
            continue
        color = method_color(method, runs.methods)
        xs += [p["x"] for p in pts]
        x = [p["x"] * dodge(method, methods) for p in pts]
        y = [p["exact_match"] for p in pts]
        tops += [p["ci_high"] for p in pts]
        if method in REFERENCE_STYLE:
            style, marker = REFERENCE_STYLE[method]
            ax.plot(x, y, linestyle=style, marker=marker, color=color, linewidth=1.4,
                    markersize=7, label=f"{method} (reference)", gid=f"{prefix}jaxft:{method}")
            continue
        ax.errorbar(x, y, yerr=[[max(0.0, p["exact_match"] - p["ci_low"]) for p in pts],
                                [max(0.0, p["ci_high"] - p["exact_match"]) for p in pts]],
                    fmt="none", ecolor=color, elinewidth=1.0, capsize=3, alpha=0.7)
        ax.plot(x, y, linestyle="-", marker="o", color=color, linewidth=2.0, markersize=6,
                label=method, gid=f"{prefix}jaxft:{method}")
    for method, pts in theirs.items():
        pts = [p for p in pts if keep is None or p[0] in keep]
        if not pts:
            continue
        x, y = [p[0] * dodge(method, methods) for p in pts], [p[1] for p in pts]
        xs += [p[0] for p in pts]
        tops += y
        ax.plot(x, y, linestyle="none", marker="o", markersize=11, markerfacecolor="none",
                markeredgewidth=1.8, markeredgecolor=method_color(method, runs.methods),
                label="_nolegend_", gid=f"{prefix}paper:{method}")
    _log_ticks(ax, xs)
    ax.set_ylim(0, min(105.0, max(tops) * 1.15 + (2.0 if keep is None else 0.5)))
    ax.grid(True, alpha=0.3)


def cost_points(runs: Runs, bench: str, rows: list[dict[str, Any]],
                price_per_hour: float) -> list[dict[str, Any]]:
    """Fine-tuned runs with both a training summary and this benchmark scored."""
    cells = {(r["model"], r["method"]): r for r in rows if r["benchmark"] == bench}
    out = []
    for (model, method), run in runs.train.items():
        runtime = (run.summary or {}).get("runtime_seconds")
        if (model, method) not in cells or runtime is None or method not in FINE_TUNED:
            continue
        hours = device_hours(runtime, device_count(runs, model, method))
        out.append({"model": model, "method": method, "hours": hours,
                    "dollars": hours * price_per_hour,
                    "exact_match": cells[(model, method)]["exact_match"]})
    order = {m: i for i, m in enumerate(runs.models)}
    return sorted(out, key=lambda p: (order.get(p["model"], 0), p["method"]))


def _paper_cost_points(runs: Runs, paper: PaperTables, bench: str) -> list[dict[str, Any]]:
    out = []
    for key, info in paper.models.items():
        for method in FINE_TUNED:
            em = paper.exact_match(key, method, bench)
            runtime = paper.throughput(key, method, "runtime_seconds")
            if em is not None and runtime is not None:
                hours = device_hours(runtime, paper.table3_devices)
                out.append({"model": info["name"], "method": method, "hours": hours,
                            "dollars": hours * paper.price_per_hour, "exact_match": em})
    return out


def cost_figure(runs: Runs, bench: str, rows: list[dict[str, Any]], price_per_hour: float,
                paper: PaperTables | None = None) -> Figure | None:
    ours = cost_points(runs, bench, rows, price_per_hour)
    theirs = _paper_cost_points(runs, paper, bench) if paper is not None else []
    if not ours and not theirs:
        return None
    fig = Figure(figsize=(11.0, 4.8))
    axes = fig.subplots(1, 2, sharey=True)
    markers = {m: MODEL_MARKERS[i % len(MODEL_MARKERS)] for i, m in enumerate(runs.models)}
    for ax, key in zip(axes, ("hours", "dollars")):
        for p in ours:
            ax.plot([p[key]], [p["exact_match"]], linestyle="none", marker=markers[p["model"]],
                    markersize=8, color=method_color(p["method"], runs.methods),
                    gid=f"jaxft:{p['model']}:{p['method']}")
        for p in theirs:
            ax.plot([p[key]], [p["exact_match"]], linestyle="none", marker="o", markersize=11,
                    markerfacecolor="none", markeredgewidth=1.8,
                    markeredgecolor=method_color(p["method"], runs.methods),
                    gid=f"paper:{p['model']}:{p['method']}")
        values = [p[key] for p in ours + theirs if p[key] > 0]
        if values:
            ax.set_xscale("log")
            ax.set_xlim(min(values) / 3.0, max(values) * 3.0)  # at least one labelled decade
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.grid(True, which="both", alpha=0.25)
    top = max([5.0] + [p["exact_match"] for p in ours + theirs])
    axes[0].set_ylim(0, min(105.0, top * 1.15 + 2.0))
    axes[0].set_ylabel("exact match (%)")
    axes[0].set_xlabel("training device-hours\n(runtime × devices, log scale)")
    # "\\$": a bare pair of dollar signs would be read as mathtext.
    cost_label = f"training cost in \\$ (jaxft at \\${price_per_hour:.2f}/device-hour"
    if paper is not None:
        cost_label += f";\nthe study at \\${paper.price_per_hour:.2f}/H100-hour"
    axes[1].set_xlabel(cost_label + "; log scale)")
    shown = {p["method"] for p in ours + theirs}
    order = [m for m in dict.fromkeys([*runs.methods, *FINE_TUNED]) if m in shown]
    handles = [Line2D([], [], linestyle="none", marker="s", markersize=8,
                      color=method_color(m, runs.methods), label=m) for m in order]
    handles += [Line2D([], [], linestyle="none", marker=markers[m], markersize=8, color="0.35",
                       label=f"model: {m}") for m in dict.fromkeys(p["model"] for p in ours)]
    if theirs:
        label = PAPER_LABEL + ", Table 3 x Table 2"
        if paper.table3_attribution:
            label += "\nTable 3's model: " + textwrap.fill(paper.table3_attribution, 44)
        handles.append(Line2D([], [], linestyle="none", marker="o", markersize=9,
                              markerfacecolor="none", markeredgecolor="0.2", label=label))
    axes[1].legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0),
                   borderaxespad=0.0, title="colour = method, shape = model", title_fontsize=8)
    note = ("" if paper is None or theirs
            else " (the study: no cell with both runtime and exact match typed)")
    fig.suptitle(f"Exact match against training cost — {bench}{note}", fontsize=11)
    fig.tight_layout()
    return fig
