"""`python -m jaxft.report --runs=RUNS --out=OUT`: every table, figure and sample of a study.

Options: `--compare=paper` puts the study's Table 2 and Table 3 (jaxft/report/paper.py) beside
ours and its values on the figures; `--price_per_hour=4.00` prices a device-hour for the cost
figure and column; `--fits_devices=rtx4090x1[,t4x1]` adds the memory planner's table of the
study's configs on those devices (`python -m jaxft.plan --fits`); `--keep_inputs` copies what
the report read to OUT/inputs/, from which `--runs=OUT/inputs` rebuilds it (jaxft/report/keep.py).

Everything is read and rendered in memory first, so a malformed input file stops the report
before anything is written; each output is then written to a temporary name in OUT and renamed,
so a reader never sees a half-written file.
"""

from __future__ import annotations

import datetime
import math
import os
import re
import sys
from typing import Any

from jaxft.atomic import write_atomic
from jaxft.cli import ArgumentParser, entry_point
from jaxft.errors import ConfigError, JaxftError
from jaxft.report import cliff_cost, compare, figures, keep, tables
from jaxft.report.collect import collect
from jaxft.report.paper import PRICE_PER_HOUR, STUDY, PaperTables

EXIT_OK, EXIT_BAD_DATA, EXIT_USAGE = 0, 1, 2


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def _index_md(runs, figs: list[tuple[str, str]], missing: int,
              extra_tables: list[tuple[str, list[str]]], headline: str | None = None,
              kept: bool = False) -> str:
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    grid = len(runs.models) * len(runs.methods) * len(runs.benchmarks)
    lines = ["# jaxft study report", ""]
    if headline:
        lines += [f"**Beside the paper:** {headline} ([table](paper_table2.md))", ""]
    if runs.protocol:
        lines += [f"Protocol: {runs.protocol}", ""]
    rel = os.path.relpath(runs.root)
    lines += [f"- Runs directory: `{runs.root if rel.startswith('..') else rel}`",
             f"- Generated: {now}",
             f"- Models: {', '.join(runs.models) or '(none)'}",
             f"- Methods: {', '.join(runs.methods) or '(none)'}",
             f"- Benchmarks: {', '.join(runs.benchmarks) or '(none)'}",
             f"- Evaluated cells: {grid - missing} of {grid} (the rest are shown as —)"]
    if kept:
        lines.append(f"- Inputs kept in [{keep.INPUTS}/]({keep.INPUTS}): rebuild every table and "
                     f"figure with `python -m jaxft.report --runs=<this folder>/{keep.INPUTS} "
                     "--out=<this folder>` (add the `--compare` used)")
    lines += ["", "## Tables", ""]
    for title, stem in (("Exact match", "results"), ("Training throughput", "throughput")):
        links = " · ".join(f"[{ext}]({stem}.{ext})" for ext in ("md", "csv", "tex"))
        lines.append(f"- {title}: {links}")
    for title, names in extra_tables:
        links = " · ".join(f"[{name.rsplit('.', 1)[1]}]({name})" for name in names)
        lines.append(f"- {title}: {links}")
    lines += ["- Repetition and loop rate: [md](repetition.md)",
              "- Qualitative samples: [md](samples.md)", "", "## Figures", ""]
    if not figs:
        lines.append("_No figures: no training curves or evaluated cells._")
    for name, caption in figs:
        lines += [f"### {caption}", "", f"![{caption}]({name})", ""]
    return "\n".join(lines).rstrip() + "\n"


def _fits_files(devices: list[str], study_config: str | None) -> dict[str, str]:
    """fits.md / fits.csv: the planner's table of the study's configs on each device type."""
    from jaxft import plan
    from jaxft.train import memory as mem

    hws = [mem.parse_devices(d) for d in devices]
    sections, rows = [], []
    for hw in hws:
        these = plan.fits_rows(hw, study_config)
        sections.append(plan.render_fits(these, hw, study_config))
        rows += these
    md = ("# Does it fit? The study's configs on " + ", ".join(h.name for h in hws) + "\n\n"
          "The study (section 6.3) says PEFT trains on a 24 GB consumer GPU where Full FT does not. "
          "Made by `python -m jaxft.plan --fits` (the same rows).\n\n" + "\n".join(sections))
    columns = ("devices", "model", "method", "config", "params", "trainable_params", "seq_len",
               "micro_batch", "accum_steps", "remat", "attention", "peak", "usable_bytes", "fits",
               "largest_batch", "best_remat", "largest_batch_best_remat")
    return {"fits.md": md, "fits.csv": tables.csv_text(columns, rows)}


def build_report(runs_dir: str, out_dir: str, compare_with: str | None = None,
                 price_per_hour: float = PRICE_PER_HOUR, fits_devices: list[str] | None = None,
                 study_config: str | None = None, paper: PaperTables = STUDY,
                 keep_inputs: bool = False) -> dict[str, Any]:
    """Render the report of RUNS into OUT; returns the written paths and the parsed tables.

    compare_with="paper" adds the study's tables beside ours (`paper`, by default the values
    typed in jaxft/report/paper.py) and its values on the cliff and cost figures. keep_inputs
    copies the files the report read to OUT/inputs (`keep.keep_inputs`).
    """
    if compare_with not in (None, "paper"):
        raise ConfigError(f"--compare={compare_with!r}; allowed: paper")
    if not (isinstance(price_per_hour, (int, float)) and math.isfinite(price_per_hour)
            and price_per_hour > 0):
        raise ConfigError(f"--price_per_hour={price_per_hour!r}: must be a positive number")
    against = paper if compare_with == "paper" else None
    runs = collect(runs_dir)
    results = tables.result_rows(runs)
    throughput = tables.throughput_rows(runs)
    files: dict[str, str | bytes] = {
        "results.md": tables.results_md(runs, results),
        "results.csv": tables.results_csv(results),
        "results.tex": tables.results_tex(runs, results),
        "throughput.md": tables.throughput_md(throughput),
        "throughput.csv": tables.throughput_csv(throughput),
        "throughput.tex": tables.throughput_tex(throughput),
        "repetition.md": tables.repetition_md(runs, results),
        "samples.md": tables.samples_md(runs),
    }
    extra_tables: list[tuple[str, list[str]]] = []
    table2 = table3 = headline = None
    if against is not None:
        table2 = compare.table2_rows(runs, results, against)
        table3 = compare.table3_rows(runs, throughput, against, price_per_hour)
        headline = compare.table2_headline(table2)
        files.update({
            "paper_table2.md": compare.table2_md(table2, against, runs.protocol),
            "paper_table2.csv": compare.table2_csv(table2),
            "paper_table2.tex": compare.table2_tex(table2, against),
            "paper_table3.md": compare.table3_md(table3, against, price_per_hour),
            "paper_table3.csv": compare.table3_csv(table3),
            "paper_table3.tex": compare.table3_tex(table3, against, price_per_hour),
        })
        extra_tables += [
            ("Exact match beside the study's Table 2",
             [f"paper_table2.{e}" for e in ("md", "csv", "tex")]),
            ("Training cost beside the study's Table 3",
             [f"paper_table3.{e}" for e in ("md", "csv", "tex")])]
    if fits_devices:
        files.update(_fits_files(fits_devices, study_config))
        extra_tables.append(("Memory fit of the study's configs", ["fits.md", "fits.csv"]))
    figs: list[tuple[str, str]] = []
    for model in runs.models:
        for key, label, stem in (("loss", "training loss", "loss"),
                                 ("grad_norm", "gradient norm", "grad_norm")):
            png = figures.curve_png(runs, model, key, label)
            if png is not None:
                name = f"{stem}_{_slug(model)}.png"
                files[name] = png
                figs.append((name, f"{label.capitalize()}: {model}"))
    for bench in runs.benchmarks:
        png = figures.exact_match_png(runs, bench, results)
        if png is not None:
            name = f"exact_match_{_slug(bench)}.png"
            files[name] = png
            figs.append((name, f"Exact match: {bench}"))
    params = cliff_cost.model_params(runs, against)
    benches = list(runs.benchmarks) + [b for b in (against.benchmarks if against else ())
                                       if b not in runs.benchmarks]
    for bench in benches:
        for stem, caption, fig in (
                ("cliff", "Exact match against model size",
                 cliff_cost.cliff_figure(runs, bench, results, params, against)),
                ("cost", "Exact match against training cost",
                 cliff_cost.cost_figure(runs, bench, results, price_per_hour, against))):
            if fig is not None:
                name = f"{stem}_{_slug(bench)}.png"
                files[name] = figures.png_bytes(fig)
                figs.append((name, f"{caption}: {bench}"))
    missing = [(m, meth, b) for m in runs.models for meth in runs.methods
               for b in runs.benchmarks if runs.cell(m, meth, b) is None]
    kept = keep_inputs or os.path.realpath(runs.root) == os.path.realpath(keep.inputs_dir(out_dir))
    files["index.md"] = _index_md(runs, figs, len(missing), extra_tables, headline, kept)

    os.makedirs(out_dir, exist_ok=True)
    if keep_inputs:
        keep.keep_inputs(runs, out_dir)
    paths = {}
    for name, data in files.items():
        paths[name] = os.path.join(out_dir, name)
        write_atomic(paths[name], data)
    return {"out_dir": os.path.abspath(out_dir), "paths": paths, "results": results,
            "headline": headline, "inputs": runs.inputs,
            "throughput": throughput, "missing": missing, "figures": [n for n, _ in figs],
            "models": runs.models, "methods": runs.methods, "benchmarks": runs.benchmarks,
            "paper_table2": table2, "paper_table3": table3, "params": params}


@entry_point(codes=((ConfigError, EXIT_USAGE), (JaxftError, EXIT_BAD_DATA)))
def main(argv: list[str]) -> int:
    """Exit codes: 0 written, 1 a malformed input file, 2 bad arguments or no runs directory."""
    parser = ArgumentParser(prog="python -m jaxft.report",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--runs", required=True, help="runs directory written by jaxft.study")
    parser.add_argument("--out", required=True, help="folder for tables, figures and index.md")
    parser.add_argument("--compare", choices=["paper"], default=None,
                        help="put the study's published Table 2/3 beside ours")
    parser.add_argument("--price_per_hour", type=float, default=PRICE_PER_HOUR,
                        help="dollars per device-hour for the cost figure and column "
                             f"(default {PRICE_PER_HOUR:.2f}, the study's H100 price)")
    parser.add_argument("--fits_devices", default="",
                        help="comma-separated device types (e.g. rtx4090x1,t4x1): add fits.md")
    parser.add_argument("--study_config", default=None,
                        help="study config for --fits_devices (default: configs/study.py)")
    parser.add_argument("--keep_inputs", action="store_true",
                        help="copy the files the report read to OUT/inputs, so that "
                             "--runs=OUT/inputs rebuilds it without the workdirs")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.runs):
        raise ConfigError(f"runs directory not found: {args.runs}")
    devices = [d for d in args.fits_devices.split(",") if d]
    from jaxft.train.memory import parse_devices

    for d in devices:  # a typo in a device name is a usage error, found before any work
        parse_devices(d)
    if not (math.isfinite(args.price_per_hour) and args.price_per_hour > 0):
        raise ConfigError(f"--price_per_hour={args.price_per_hour}: must be a positive number")
    try:
        report = build_report(args.runs, args.out, args.compare, args.price_per_hour, devices,
                              args.study_config, keep_inputs=args.keep_inputs)
    except OSError as e:
        print(f"error: cannot write the report: {e}", file=sys.stderr)
        return EXIT_BAD_DATA
    print(f"wrote {len(report['paths'])} files to {report['out_dir']} "
          f"(start at {report['paths']['index.md']})")
    if report["headline"]:
        print(f"beside the paper: {report['headline']}")
    return EXIT_OK
