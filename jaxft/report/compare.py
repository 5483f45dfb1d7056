"""The study's Table 2 and Table 3 beside ours (`python -m jaxft.report --compare=paper`).

A run directory's model is paired with a paper model by name (`PaperTables.match`); every cell
of the paper's grid gets a row, so a cell we have not run and a value the paper table lacks both
show, each with its own mark. Costs: device-hours = runtime x devices (summary.json's
`device_count`, else 1); dollars = device-hours x the price per device-hour. The paper's own
cost is its runtime at its price ($4.00 per H100-hour, one GPU).
"""

from __future__ import annotations

from typing import Any

from jaxft.report.collect import Runs
from jaxft.report.paper import TABLE2_METHODS, TABLE3_METHODS, PaperTables
from jaxft.report.tables import (MISSING_MD, MISSING_TEX, csv_text, md_table, tex_escape,
                                 tex_table)

UNKNOWN = "?"  # the paper's value was not typed (see jaxft/report/paper.py)
TABLE2_COLUMNS = ("paper_model", "model", "method", "benchmark", "paper_exact_match", "exact_match",
                  "ci_low", "ci_high", "n", "difference", "paper_in_ci")
TABLE3_COLUMNS = ("paper_model", "model", "method", "paper_runtime_seconds", "runtime_seconds",
                  "paper_samples_per_second", "samples_per_second", "samples_per_second_ratio",
                  "paper_speedup", "speedup_vs_full", "device_count", "device_hours", "cost",
                  "price_per_hour", "paper_device_hours", "paper_cost", "paper_price_per_hour")


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


def _pairs(runs: Runs, paper: PaperTables):
    for key, models in matched_runs(runs, paper).items():
        for model in models or [None]:
            yield key, model


def table2_rows(runs: Runs, results: list[dict[str, Any]], paper: PaperTables) -> list[dict]:
    """One row per paper cell (benchmark, model, method), with our run's numbers where present."""
    ours = {(r["model"], r["method"], r["benchmark"]): r for r in results}
    rows = []
    for bench in paper.benchmarks:
        for key, model in _pairs(runs, paper):
            for method in TABLE2_METHODS:
                p = paper.exact_match(key, method, bench)
                r = ours.get((model, method, bench)) if model else None
                row = {"paper_model": key, "model": model, "method": method, "benchmark": bench,
                       "paper_exact_match": p, "exact_match": None, "ci_low": None,
                       "ci_high": None, "n": None, "difference": None, "paper_in_ci": None}
                if r is not None:
                    row.update({k: r[k] for k in ("exact_match", "ci_low", "ci_high", "n")})
                    if p is not None:
                        row["difference"] = r["exact_match"] - p
                        row["paper_in_ci"] = r["ci_low"] <= p <= r["ci_high"]
                rows.append(row)
    return rows


def table3_rows(runs: Runs, throughput: list[dict[str, Any]], paper: PaperTables,
                price_per_hour: float) -> list[dict]:
    """One row per paper (model, method) of Table 3, with our throughput and costs."""
    ours = {(r["model"], r["method"]): r for r in throughput}
    rows = []
    for key, model in _pairs(runs, paper):
        for method in TABLE3_METHODS:
            p_runtime = paper.throughput(key, method, "runtime_seconds")
            p_sps = paper.throughput(key, method, "samples_per_second")
            r = ours.get((model, method)) if model else None
            row = {"paper_model": key, "model": model, "method": method,
                   "paper_runtime_seconds": p_runtime, "runtime_seconds": None,
                   "paper_samples_per_second": p_sps, "samples_per_second": None,
                   "samples_per_second_ratio": None,
                   "paper_speedup": paper.throughput(key, method, "speedup"),
                   "speedup_vs_full": None, "device_count": None, "device_hours": None,
                   "cost": None, "price_per_hour": price_per_hour,
                   "paper_device_hours": device_hours(p_runtime),
                   "paper_cost": None if p_runtime is None
                   else device_hours(p_runtime) * paper.price_per_hour,
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
            rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------

def _num(v, spec: str, missing: str) -> str:
    return missing if v is None else format(v, spec)


def _paper(v, spec: str = ".2f") -> str:
    return UNKNOWN if v is None else format(v, spec)


def _t2_cells(row: dict, missing: str) -> list[str]:
    ours = missing
    if row["exact_match"] is not None:
        ours = (f"{row['exact_match']:.2f} [{row['ci_low']:.2f}, {row['ci_high']:.2f}] "
                f"(n={row['n']})")
    diff = missing if row["difference"] is None else f"{row['difference']:+.2f}"
    inside = {True: "yes", False: "no", None: missing}[row["paper_in_ci"]]
    return [_paper(row["paper_exact_match"]), ours, diff, inside]


def _name(paper: PaperTables, key: str) -> str:
    return paper.models[key]["name"]


def _sources(paper: PaperTables, keys: list[tuple]) -> list[str]:
    lines = [f"- {' / '.join(k[1:])}: {paper.note(*k)}" for k in keys if k in paper.notes]
    return (["", "Where each typed paper value comes from:", ""] + lines) if lines else []


_T2_LEGEND = ("jaxft: exact match (%) [95% Wilson interval] (n problems). Difference = jaxft − "
              "paper, in percentage points. Inside = the paper's value lies inside our 95% "
              "interval.")


def table2_md(rows: list[dict], paper: PaperTables) -> str:
    out = ["# Exact match: the study (Table 2) beside jaxft", "",
           f"Paper: {paper.citation}, Table 2. {_T2_LEGEND} {UNKNOWN} = the paper's value is not "
           f"typed in jaxft/report/paper.py (not readable when it was typed); {MISSING_MD} = no "
           "jaxft run.", ""]
    headers = ["model", "jaxft run", "method", "paper", "jaxft", "jaxft − paper",
               "paper inside 95% CI"]
    for bench in paper.benchmarks:
        body = [[_name(paper, r["paper_model"]), r["model"] or MISSING_MD, r["method"]]
                + _t2_cells(r, MISSING_MD) for r in rows if r["benchmark"] == bench]
        out += [f"## {bench}", "", md_table(headers, body, "lll" + "r" * 4).rstrip(), ""]
    typed = [("table2", r["paper_model"], r["method"], r["benchmark"]) for r in rows
             if r["paper_exact_match"] is not None]
    out += _sources(paper, list(dict.fromkeys(typed)))
    return "\n".join(out).rstrip() + "\n"


def table2_tex(rows: list[dict], paper: PaperTables) -> str:
    body = [[tex_escape(r["benchmark"]), tex_escape(_name(paper, r["paper_model"])),
             tex_escape(r["model"] or MISSING_TEX), tex_escape(r["method"])]
            + [tex_escape(c) for c in _t2_cells(r, MISSING_TEX)] for r in rows]
    headers = ["benchmark", "model", "jaxft run", "method", "paper", "jaxft",
               r"jaxft $-$ paper", "inside CI"]
    legend = (f"% Paper: {tex_escape(paper.citation)}, Table 2.\n"
              f"% {tex_escape(_T2_LEGEND)} ? = paper value not typed; {MISSING_TEX} = no run.")
    return tex_table(headers, body, "llll" + "r" * 4, legend)


def table2_csv(rows: list[dict]) -> str:
    return csv_text(TABLE2_COLUMNS, rows)


def _t3_cells(row: dict, missing: str, times: str) -> list[str]:
    def speed(v):
        return format(v, ".2f") + times
    return [_paper(row["paper_runtime_seconds"], ",.0f"), _num(row["runtime_seconds"], ",.1f", missing),
            _paper(row["paper_samples_per_second"]), _num(row["samples_per_second"], ".2f", missing),
            _num(row["samples_per_second_ratio"], ".2f", missing),
            UNKNOWN if row["paper_speedup"] is None else speed(row["paper_speedup"]),
            missing if row["speedup_vs_full"] is None else speed(row["speedup_vs_full"]),
            _num(row["device_hours"], ".4f", missing),
            missing if row["cost"] is None else _money(row["cost"]),
            UNKNOWN if row["paper_cost"] is None else _money(row["paper_cost"])]


def _money(v: float) -> str:
    """Cents for real runs; four decimals for the tiny CPU runs, which would all read 0.00."""
    return f"{v:,.2f}" if v >= 1 else f"{v:.4f}"


def _t3_headers(price: float, paper_price: float, dollar: str) -> list[str]:
    return ["paper runtime (s)", "jaxft runtime (s)", "paper samples/s", "jaxft samples/s",
            "jaxft / paper samples/s", "paper speedup", "jaxft speedup", "jaxft device-hours",
            f"jaxft cost ({dollar}{price:.2f}/h)", f"paper cost ({dollar}{paper_price:.2f}/H100-h)"]


def table3_md(rows: list[dict], paper: PaperTables, price_per_hour: float) -> str:
    headers = ["model", "jaxft run", "method"] + _t3_headers(price_per_hour, paper.price_per_hour, "$")
    body = [[_name(paper, r["paper_model"]), r["model"] or MISSING_MD, r["method"]]
            + _t3_cells(r, MISSING_MD, "×") for r in rows]
    typed = [("table3", r["paper_model"], r["method"], f) for r in rows
             for f, k in (("runtime_seconds", "paper_runtime_seconds"),
                          ("samples_per_second", "paper_samples_per_second"),
                          ("speedup", "paper_speedup")) if r[k] is not None]
    return "\n".join(
        ["# Training cost: the study (Table 3) beside jaxft", "",
         f"Paper: {paper.citation}, Table 3. Speedup = samples/s of the method / samples/s of Full "
         f"FT of the same model. jaxft device-hours = runtime x devices (summary.json "
         f"`device_count`, else 1); cost = device-hours x ${price_per_hour:.2f} "
         f"(`--price_per_hour`). The paper's cost = its runtime on one H100 at "
         f"${paper.price_per_hour:.2f}/hour. {UNKNOWN} = paper value not typed in "
         f"jaxft/report/paper.py; {MISSING_MD} = no jaxft run.", "",
         md_table(headers, body, "lll" + "r" * 10).rstrip()]
        + _sources(paper, list(dict.fromkeys(typed)))).rstrip() + "\n"


def table3_tex(rows: list[dict], paper: PaperTables, price_per_hour: float) -> str:
    headers = ["model", "jaxft run", "method"] + [
        tex_escape(h) for h in _t3_headers(price_per_hour, paper.price_per_hour, "$")]
    body = [[tex_escape(c).replace("×", r"$\times$") for c in
             [_name(paper, r["paper_model"]), r["model"] or MISSING_TEX, r["method"]]
             + _t3_cells(r, MISSING_TEX, "×")] for r in rows]
    return tex_table(headers, body, "lll" + "r" * 10,
                     f"% Paper: {tex_escape(paper.citation)}, Table 3. ? = paper value not typed; "
                     f"{MISSING_TEX} = no run.")


def table3_csv(rows: list[dict]) -> str:
    return csv_text(TABLE3_COLUMNS, rows)
