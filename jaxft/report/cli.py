"""`python -m jaxft.report --runs=RUNS --out=OUT`: every table, figure and sample of a study.

Everything is read and rendered in memory first, so a malformed input file stops the report
before anything is written; each output is then written to a temporary name in OUT and renamed,
so a reader never sees a half-written file.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import sys
from typing import Any

from jaxft.atomic import write_atomic
from jaxft.errors import JaxftError
from jaxft.report import figures, tables
from jaxft.report.collect import collect

EXIT_OK, EXIT_BAD_DATA, EXIT_USAGE = 0, 1, 2


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def _index_md(runs, figs: list[tuple[str, str]], missing: int) -> str:
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    grid = len(runs.models) * len(runs.methods) * len(runs.benchmarks)
    lines = ["# jaxft study report", "",
             f"- Runs directory: `{runs.root}`",
             f"- Generated: {now}",
             f"- Models: {', '.join(runs.models) or '(none)'}",
             f"- Methods: {', '.join(runs.methods) or '(none)'}",
             f"- Benchmarks: {', '.join(runs.benchmarks) or '(none)'}",
             f"- Evaluated cells: {grid - missing} of {grid} (the rest are shown as —)", "",
             "## Tables", ""]
    for title, stem in (("Exact match", "results"), ("Training throughput", "throughput")):
        links = " · ".join(f"[{ext}]({stem}.{ext})" for ext in ("md", "csv", "tex"))
        lines.append(f"- {title}: {links}")
    lines += ["- Repetition and loop rate: [md](repetition.md)",
              "- Qualitative samples: [md](samples.md)", "", "## Figures", ""]
    if not figs:
        lines.append("_No figures: no training curves or evaluated cells._")
    for name, caption in figs:
        lines += [f"### {caption}", "", f"![{caption}]({name})", ""]
    return "\n".join(lines).rstrip() + "\n"


def build_report(runs_dir: str, out_dir: str) -> dict[str, Any]:
    """Render the report of RUNS into OUT; returns the written paths and the parsed tables."""
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
    missing = [(m, meth, b) for m in runs.models for meth in runs.methods
               for b in runs.benchmarks if runs.cell(m, meth, b) is None]
    files["index.md"] = _index_md(runs, figs, len(missing))

    os.makedirs(out_dir, exist_ok=True)
    paths = {}
    for name, data in files.items():
        paths[name] = os.path.join(out_dir, name)
        write_atomic(paths[name], data)
    return {"out_dir": os.path.abspath(out_dir), "paths": paths, "results": results,
            "throughput": throughput, "missing": missing, "figures": [n for n, _ in figs],
            "models": runs.models, "methods": runs.methods, "benchmarks": runs.benchmarks}


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 written, 1 a malformed input file, 2 bad arguments or no runs directory."""
    parser = argparse.ArgumentParser(prog="python -m jaxft.report",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--runs", required=True, help="runs directory written by jaxft.study")
    parser.add_argument("--out", required=True, help="folder for tables, figures and index.md")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.runs):
        print(f"error: runs directory not found: {args.runs}", file=sys.stderr)
        return EXIT_USAGE
    try:
        report = build_report(args.runs, args.out)
    except JaxftError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_DATA
    except OSError as e:
        print(f"error: cannot write the report: {e}", file=sys.stderr)
        return EXIT_BAD_DATA
    print(f"wrote {len(report['paths'])} files to {report['out_dir']} "
          f"(start at {report['paths']['index.md']})")
    return EXIT_OK
