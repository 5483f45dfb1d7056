"""The study's Table 2 and Table 3 beside ours (`python -m jaxft.report --compare=paper`).

Table 2: one row per cell of the paper's table (benchmark x paper model x method), run or not,
with the paper's own 95% interval at its implied sample size next to ours; a cell we have no
value for says why ("not run: ..."; `coverage`), one computed at a smaller size than the paper's
says how much smaller. Each paper model we have runs for also gets a 5-shot row: the paper has no
5-shot column, so those rows have nothing to compare with and are not counted in the headline.
A run directory's model is paired with a paper model by name (`PaperTables.match`); a paper
benchmark with a run benchmark by `coverage.STANDS_FOR` (MATH by MATH-500 when only that ran).

Table 3: rows for the model the paper's table covers (attributed as `paper.TABLE3_ATTRIBUTION`
says, wherever it is shown) and for every paper model we trained. Costs: device-hours = runtime x
devices (summary.json's `device_count`, else 1; the paper's: runtime x its 8 GPUs);
dollars = device-hours x the price per device-hour.
"""

from __future__ import annotations

from typing import Any

from jaxft.report import coverage
from jaxft.report.collect import Runs
from jaxft.report.paper import TABLE2_METHODS, TABLE3_METHODS, PaperTables
from jaxft.report.tables import (MISSING_MD, MISSING_TEX, csv_text, md_table, tex_escape,
                                 tex_table)

UNKNOWN = "?"  # the paper's table has no value in this cell
NOT_IN_TABLE3 = "n/a"  # a model that the paper's Table 3 does not cover
NO_COLUMN = "no column"  # 5-shot: Table 2 has none
FIVE_SHOT = "5-shot"
COMPUTED, NOT_RUN = "computed", "not run"
PAPER_SCALE, SMALLER = "paper's", "smaller"
TABLE2_COLUMNS = ("paper_model", "model", "method", "benchmark", "jaxft_benchmark",
                  "paper_exact_match", "paper_n", "paper_correct", "paper_ci_low", "paper_ci_high",
                  "exact_match", "correct", "n", "ci_low", "ci_high", "difference", "paper_in_ci",
                  "intervals_overlap", "empty_generations", "checkpoint", "template", "status",
                  "scale", "note")
TABLE3_COLUMNS = ("paper_model", "model", "method", "paper_runtime_seconds", "runtime_seconds",
                  "paper_samples_per_second", "samples_per_second", "samples_per_second_ratio",
                  "paper_speedup", "speedup_vs_full", "device_count", "device_hours", "cost",
                  "price_per_hour", "paper_devices", "paper_device_hours", "paper_cost",
                  "paper_price_per_hour")


def matched_runs(runs: Runs, paper: PaperTables) -> dict[str, list[str]]:
    """paper model -> the run models standing for it, in the report's order (may be empty)."""
    out: dict[str, list[str]] = {key: [] for key in paper.models}
    for model in runs.models:
        key = paper.match(model)
        if key is not None:
            out[key].append(model)
    return out


def device_count(runs: Runs, model: str, method: str) -> int:
    run = runs.train.get((model, method))
    n = (run.summary or {}).get("device_count") if run else None
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1


def device_hours(runtime_seconds: float | None, devices: int = 1) -> float | None:
    return None if runtime_seconds is None else runtime_seconds * devices / 3600.0


def _pairs(runs: Runs, paper: PaperTables, keys=None):
    for key, models in matched_runs(runs, paper).items():
        if keys is None or key in keys:
            for model in models or [None]:
                yield key, model


# ---------------------------------------------------------------------------------------------
# Table 2
# ---------------------------------------------------------------------------------------------

def table2_rows(runs: Runs, results: list[dict[str, Any]], paper: PaperTables) -> list[dict]:
    """One row per paper cell (benchmark, model, method) and our 5-shot rows, each with a status."""
    ours = {(r["model"], r["method"], r["benchmark"]): r for r in results}
    rows = []
    for bench in paper.benchmarks:
        for key, model in _pairs(runs, paper):
            methods = list(TABLE2_METHODS)
            if model is not None:  # prompting rows first, as in the study's grid
                methods.insert(methods.index("zero-shot") + 1, FIVE_SHOT)
            for method in methods:
                rows.append(_table2_row(runs, ours, paper, key, model, method, bench))
    return rows


def _table2_row(runs: Runs, ours: dict, paper: PaperTables, key: str, model: str | None,
                method: str, bench: str) -> dict:
    p = paper.exact_match(key, method, bench) if method != FIVE_SHOT else None
    interval = paper.interval(key, method, bench) if p is not None else None
    have = {b for (m, meth, b) in ours if m == model and meth == method}
    run_bench = coverage.run_benchmark(bench, have) if model is not None else None
    r = ours.get((model, method, run_bench)) if run_bench else None
    row = {"paper_model": key, "model": model, "method": method, "benchmark": bench,
           "jaxft_benchmark": run_bench, "paper_exact_match": p,
           "paper_n": paper.sample_size(bench) if p is not None else None,
           "paper_correct": paper.implied_count(key, method, bench) if p is not None else None,
           "paper_ci_low": interval[0] if interval else None,
           "paper_ci_high": interval[1] if interval else None,
           "exact_match": None, "correct": None, "n": None, "ci_low": None, "ci_high": None,
           "difference": None, "paper_in_ci": None, "intervals_overlap": None,
           "empty_generations": None, "checkpoint": None, "template": None,
           "status": NOT_RUN, "scale": None, "note": ""}
    if r is None:
        trained = model is not None and (model, method) in runs.train
        in_grid = (model is not None and method in runs.methods
                   and coverage.run_benchmark(bench, runs.benchmarks) is not None)
        row["note"] = "; ".join(coverage.not_run_reasons(paper, key, trained, method, bench,
                                                         in_grid))
        return row
    cell = runs.cell(model, method, run_bench)
    train = runs.train.get((model, method))
    examples = (train.summary or {}).get("examples") if train else None
    notes = coverage.scale_notes(paper, bench, run_bench, r["n"], method,
                                 examples if isinstance(examples, int) else None,
                                 train.train_task if train else None)
    row.update({k: r[k] for k in ("exact_match", "correct", "n", "ci_low", "ci_high",
                                  "empty_generations")})
    row.update({"checkpoint": cell.checkpoint, "template": cell.template, "status": COMPUTED,
                "scale": SMALLER if notes else PAPER_SCALE, "note": "; ".join(notes)})
    if p is not None:
        row["difference"] = r["exact_match"] - p
        row["paper_in_ci"] = r["ci_low"] <= p <= r["ci_high"]
        if interval is not None:
            row["intervals_overlap"] = r["ci_low"] <= interval[1] and interval[0] <= r["ci_high"]
    return row


def table2_headline(rows: list[dict]) -> str:
    """How many of the paper's cells we computed, at which scale, and how many agree."""
    cells = [r for r in rows if r["method"] != FIVE_SHOT]
    done = [r for r in cells if r["status"] == COMPUTED and r["paper_exact_match"] is not None]
    full = sum(r["scale"] == PAPER_SCALE for r in done)
    inside = sum(bool(r["paper_in_ci"]) for r in done)
    five = sum(r["status"] == COMPUTED for r in rows if r["method"] == FIVE_SHOT)
    size = f"{full} at the paper's sample size"
    if len(done) - full:
        size += f", {len(done) - full} at a smaller protocol"
    text = (f"{len(done)} of the paper's {len(cells)} Table 2 cells computed ({size}); the "
            f"paper's value lies inside our 95% interval in {inside} of {len(done)}.")
    if five:
        text += f" 5-shot: {five} cell{'s' if five != 1 else ''} of ours (Table 2 has no 5-shot column)."
    return text


def _paper_cells(row: dict, missing: str) -> list[str]:
    p = row["paper_exact_match"]
    if row["method"] == FIVE_SHOT:
        return [NO_COLUMN, missing]
    if p is None:
        return [UNKNOWN, missing]
    if row["paper_ci_low"] is None:
        return [f"{p:.2f}", missing]
    approx = "" if row["paper_correct"] is not None else "≈"
    count = (f"{row['paper_correct']}/{row['paper_n']:,}" if row["paper_correct"] is not None
             else f"{p * row['paper_n'] / 100:.1f}/{row['paper_n']:,}")
    return [f"{p:.2f}", f"{approx}[{row['paper_ci_low']:.2f}, {row['paper_ci_high']:.2f}] ({count})"]


def _t2_cells(row: dict, missing: str) -> list[str]:
    if row["status"] != COMPUTED:
        ours = NOT_RUN
    else:
        ours = (f"{row['exact_match']:.2f} [{row['ci_low']:.2f}, {row['ci_high']:.2f}] "
                f"({row['correct']}/{row['n']:,})")
    diff = missing if row["difference"] is None else f"{row['difference']:+.2f}"
    inside = {True: "yes", False: "no", None: missing}[row["paper_in_ci"]]
    empty = missing if row["empty_generations"] is None else str(row["empty_generations"])
    return _paper_cells(row, missing) + [ours, diff, inside, empty, row["note"] or missing]


_T2_HEADERS = ["paper", "paper 95% CI (k/n)", "jaxft [95% CI] (k/n)", "jaxft − paper",
               "paper inside jaxft CI", "empty generations", "scale / why not run"]


def _source(paper: PaperTables, table: str) -> str:
    return paper.sources.get(table) or f"{paper.citation}, {table.replace('table', 'Table ')}"


def _t2_legend(paper: PaperTables, missing: str) -> list[str]:
    sizes = paper.sources.get("sample_sizes")
    return [f"- Source: {_source(paper, 'table2')}.",
            f"- The paper's sample sizes: {sizes}." if sizes else
            "- The paper's sample sizes: not given (no paper interval drawn).",
            "- Intervals: 95% Wilson score intervals, with k correct of n problems. ≈ marks a "
            "paper value that is no whole number of the paper's problems: its interval is drawn "
            "at that share and is approximate.",
            "- jaxft − paper: percentage points. \"paper inside jaxft CI\": the paper's value lies "
            "inside our 95% interval. Empty generations: answers with no text at all (the model "
            "ended its turn at once); they count as wrong.",
            "- 5-shot rows are jaxft's alone: the paper's Table 2 has no 5-shot column (its "
            "5-shot appears only as an example output, appendix A.1).",
            f"- {UNKNOWN} = the paper's table has no value; {missing} = nothing to show."]


def _evaluated(rows: list[dict]) -> str:
    pairs = sorted({(r["checkpoint"] or "unrecorded", r["template"] or "unrecorded")
                    for r in rows if r["status"] == COMPUTED})
    return "; ".join(f"`{c}` with the {t} template" for c, t in pairs)


def table2_md(rows: list[dict], paper: PaperTables, protocol: str = "") -> str:
    out = ["# Exact match: the study (Table 2) beside jaxft", "",
           f"**{table2_headline(rows)}**", "", *_t2_legend(paper, MISSING_MD), ""]
    if protocol:
        out += [f"This study's protocol: {protocol}", ""]
    evaluated = _evaluated(rows)
    if evaluated:
        out += [f"jaxft evaluated: {evaluated}.", ""]
    headers = ["model", "jaxft run", "method"] + _T2_HEADERS
    for bench in paper.benchmarks:
        n = paper.sample_size(bench)
        title = coverage.name(bench) + (f" (the paper's n = {n:,})" if n else "")
        body = [[paper.model_name(r["paper_model"]), r["model"] or MISSING_MD, r["method"]]
                + _t2_cells(r, MISSING_MD) for r in rows if r["benchmark"] == bench]
        out += [f"## {title}", "", md_table(headers, body, "lll" + "r" * 6 + "l").rstrip(), ""]
    out += _notes_md(paper)
    return "\n".join(out).rstrip() + "\n"


def _approximate(paper: PaperTables) -> list[tuple[str, str, str]]:
    """Paper values that are no whole number of the paper's problems (marked ≈)."""
    return [k for k in paper.table2 if paper.sample_size(k[2]) is not None
            and paper.implied_count(*k) is None]


def _notes_md(paper: PaperTables) -> list[str]:
    out = []
    odd = _approximate(paper)
    if odd:
        models = ", ".join(dict.fromkeys(paper.model_name(k[0]) for k in odd))
        m, meth, b = min(odd, key=lambda k: paper.sample_size(k[2]))  # the smallest sample
        v, n = paper.exact_match(m, meth, b), paper.sample_size(b)
        out += ["## ≈: paper values that are no whole number of problems", "",
                f"{len(odd)} of the paper's {len(paper.table2)} Table 2 values ({models}) are no "
                f"whole number of the implied problems; for example {paper.model_name(m)} {meth} "
                f"{coverage.name(b)}: {v:.2f}% of {n:,} is {v * n / 100:.2f} problems. Those "
                "values were rounded differently or come from other samples; their intervals "
                "are approximate.", ""]
    notes = [(k, text) for k, text in paper.notes.items() if k[0] == "table2"]
    if notes:
        out += ["## Notes on single paper values", ""]
        out += [f"- {paper.model_name(k[1])} / {k[2]} / {coverage.name(k[3])}: {text}"
                for k, text in notes]
    return out


def table2_tex(rows: list[dict], paper: PaperTables) -> str:
    body = [[tex_escape(c) for c in
             [coverage.name(r["benchmark"]), paper.model_name(r["paper_model"]),
              r["model"] or MISSING_TEX, r["method"]] + _t2_cells(r, MISSING_TEX)] for r in rows]
    headers = ["benchmark", "model", "jaxft run", "method"] + [
        tex_escape(h).replace("−", "$-$") for h in _T2_HEADERS]
    legend = "\n".join(f"% {tex_escape(line.lstrip('- '))}"
                       for line in [table2_headline(rows), *_t2_legend(paper, MISSING_TEX)])
    return tex_table(headers, [[c.replace("−", "$-$").replace("≈", r"$\approx$") for c in r]
                               for r in body], "llll" + "r" * 6 + "l", legend)


def table2_csv(rows: list[dict]) -> str:
    return csv_text(TABLE2_COLUMNS, rows)


# ---------------------------------------------------------------------------------------------
# Table 3
# ---------------------------------------------------------------------------------------------

def table3_rows(runs: Runs, throughput: list[dict[str, Any]], paper: PaperTables,
                price_per_hour: float) -> list[dict]:
    """Rows per (model, method) for the models of the paper's Table 3 and those we trained."""
    ours = {(r["model"], r["method"]): r for r in throughput}
    covered = set(paper.table3_models)
    trained = {paper.match(m) for (m, _), r in ours.items() if r["runtime_seconds"] is not None}
    rows = []
    for key, model in _pairs(runs, paper, covered | trained):
        for method in TABLE3_METHODS:
            rows.append(_table3_row(runs, ours, paper, key, model, method, price_per_hour,
                                    key in covered))
    return rows


def _table3_row(runs, ours, paper, key, model, method, price_per_hour, covered) -> dict:
    p_runtime = paper.throughput(key, method, "runtime_seconds")
    p_sps = paper.throughput(key, method, "samples_per_second")
    p_hours = device_hours(p_runtime, paper.table3_devices)
    r = ours.get((model, method)) if model else None
    row = {"paper_model": key, "model": model, "method": method, "covered": covered,
           "paper_runtime_seconds": p_runtime, "runtime_seconds": None,
           "paper_samples_per_second": p_sps, "samples_per_second": None,
           "samples_per_second_ratio": None,
           "paper_speedup": paper.throughput(key, method, "speedup"),
           "speedup_vs_full": None, "device_count": None, "device_hours": None,
           "cost": None, "price_per_hour": price_per_hour,
           "paper_devices": paper.table3_devices if covered else None,
           "paper_device_hours": p_hours,
           "paper_cost": None if p_hours is None else p_hours * paper.price_per_hour,
           "paper_price_per_hour": paper.price_per_hour}
    if r is not None and r["runtime_seconds"] is not None:
        devices = device_count(runs, model, method)
        hours = device_hours(r["runtime_seconds"], devices)
        row.update({"runtime_seconds": r["runtime_seconds"],
                    "samples_per_second": r["samples_per_second"],
                    "speedup_vs_full": r["speedup_vs_full"], "device_count": devices,
                    "device_hours": hours, "cost": hours * price_per_hour})
        if p_sps and r["samples_per_second"] is not None:
            row["samples_per_second_ratio"] = r["samples_per_second"] / p_sps
    return row


def _num(v, spec: str, missing: str) -> str:
    return missing if v is None else format(v, spec)


def _money(v: float) -> str:
    """Cents for real runs; four decimals for the tiny CPU runs, which would all read 0.00."""
    return f"{v:,.2f}" if v >= 1 else f"{v:.4f}"


def _t3_cells(row: dict, missing: str, times: str) -> list[str]:
    def paper(v, fmt):
        if not row["covered"]:
            return NOT_IN_TABLE3
        return UNKNOWN if v is None else fmt(v)

    def speed(v):
        return format(v, ".2f") + times
    return [paper(row["paper_runtime_seconds"], lambda v: format(v, ",.0f")),
            _num(row["runtime_seconds"], ",.1f", missing),
            paper(row["paper_samples_per_second"], lambda v: format(v, ".2f")),
            _num(row["samples_per_second"], ".2f", missing),
            _num(row["samples_per_second_ratio"], ".2f", missing),
            paper(row["paper_speedup"], speed),
            missing if row["speedup_vs_full"] is None else speed(row["speedup_vs_full"]),
            _num(row["device_hours"], ".4f", missing),
            missing if row["cost"] is None else _money(row["cost"]),
            paper(row["paper_cost"], _money)]


def _t3_headers(price: float, paper_price: float, dollar: str) -> list[str]:
    return ["paper runtime (s)", "jaxft runtime (s)", "paper samples/s", "jaxft samples/s",
            "jaxft / paper samples/s", "paper speedup", "jaxft speedup", "jaxft device-hours",
            f"jaxft cost ({dollar}{price:.2f}/h)", f"paper cost ({dollar}{paper_price:.2f}/H100-h)"]


def _t3_legend(paper: PaperTables, price_per_hour: float, missing: str) -> str:
    gpus = paper.table3_devices
    model = (f"The table's model: {paper.table3_attribution}. " if paper.table3_attribution
             else "")
    return (f"Source: {_source(paper, 'table3')}. {model}Speedup = "
            "samples/s of the method / samples/s of Full FT of the same model. jaxft "
            "device-hours = runtime x devices (summary.json `device_count`, else 1); cost = "
            f"device-hours x ${price_per_hour:.2f} (`--price_per_hour`). The paper's cost = its "
            f"runtime x {gpus} GPU{'s' if gpus != 1 else ''} at ${paper.price_per_hour:.2f} per "
            f"H100-hour. {NOT_IN_TABLE3} = a model the paper's Table 3 does not cover; "
            f"{UNKNOWN} = no value in the paper's table; {missing} = no jaxft run.")


def table3_md(rows: list[dict], paper: PaperTables, price_per_hour: float) -> str:
    headers = ["model", "jaxft run", "method"] + _t3_headers(price_per_hour, paper.price_per_hour, "$")
    body = [[paper.model_name(r["paper_model"], "table3"), r["model"] or MISSING_MD, r["method"]]
            + _t3_cells(r, MISSING_MD, "×") for r in rows]
    return "\n".join(
        ["# Training cost: the study (Table 3) beside jaxft", "",
         _t3_legend(paper, price_per_hour, MISSING_MD), "",
         md_table(headers, body, "lll" + "r" * 10).rstrip()]).rstrip() + "\n"


def table3_tex(rows: list[dict], paper: PaperTables, price_per_hour: float) -> str:
    headers = ["model", "jaxft run", "method"] + [
        tex_escape(h) for h in _t3_headers(price_per_hour, paper.price_per_hour, "$")]
    body = [[tex_escape(c).replace("×", r"$\times$") for c in
             [paper.model_name(r["paper_model"], "table3"), r["model"] or MISSING_TEX, r["method"]]
             + _t3_cells(r, MISSING_TEX, "×")] for r in rows]
    return tex_table(headers, body, "lll" + "r" * 10,
                     f"% {tex_escape(_t3_legend(paper, price_per_hour, MISSING_TEX))}")


def table3_csv(rows: list[dict]) -> str:
    return csv_text(TABLE3_COLUMNS, rows)
