"""Tables of a study as Markdown, CSV and LaTeX, built from `collect.Runs`.

Confidence intervals are recomputed from (correct, n) with the Wilson score interval rather than
read from metrics.json: every number in a table then follows from the counts alone, and Wilson
stays inside [0, 100] and keeps a sensible width at 0 or n correct, where the normal
approximation collapses to a zero-width interval:

    p = correct / n,  z = 1.959964 (two-sided 95%)
    centre = (p + z^2 / 2n) / (1 + z^2 / n)
    half   = z / (1 + z^2 / n) * sqrt(p (1 - p) / n + z^2 / 4n^2)
    CI     = 100 * [centre - half, centre + half]
"""

from __future__ import annotations

import csv
import io
from typing import Any

from jaxft.eval.stats import wilson_interval  # noqa: F401 - one shared implementation
from jaxft.report import repetition as rep
from jaxft.report.collect import BASELINE, FINE_TUNED, EvalCell, Runs

MISSING_MD = "—"
MISSING_TEX = "---"
BELOW_MD = "▼"
BELOW_TEX = r"$\downarrow$"
BELOW_LEGEND = ("marks a fine-tuned run (full, lora, dora) whose exact match is below the "
                "zero-shot baseline of the same model and benchmark")

RESULT_COLUMNS = ("model", "method", "benchmark", "n", "correct", "exact_match", "ci_low",
                  "ci_high", "below_zero_shot", "repetition_rate", "loop_rate", "empty_generations")
THROUGHPUT_COLUMNS = ("model", "method", "runtime_seconds", "samples_per_second",
                      "tokens_per_second", "trainable_params", "total_params", "speedup_vs_full", "machine")
# A run whose host load (1-minute average over its timed steps) exceeded this many times the host's CPUs
# shared the machine with other jobs: its samples/s are not comparable with other rows.
SHARED_LOAD_PER_CPU = 1.25  # a run alone keeps ~1 runnable thread per core busy


def machine_state(summary: dict[str, Any]) -> str:
    """'quiet', 'shared (load L on N CPUs)', or 'unknown' for runs that did not record the load."""
    load, cpus = summary.get("host_load"), summary.get("host_cpus")
    if load is None or not cpus:
        return "unknown"
    return f"shared (load {load:.1f} on {cpus} CPUs)" if load > SHARED_LOAD_PER_CPU * cpus else "quiet"
SAMPLE_COUNT = 3
SAMPLE_CHARS = 600


def below_zero_shot(runs: Runs, cell: EvalCell) -> bool | None:
    """True/False for a fine-tuned cell with a baseline; None where no comparison applies."""
    if cell.method not in FINE_TUNED:
        return None
    base = runs.cell(cell.model, BASELINE, cell.benchmark)
    if base is None:
        return None
    return cell.correct * base.n < base.correct * cell.n  # exact: no float ties


# ---------------------------------------------------------------------------------------------
# Generic renderers
# ---------------------------------------------------------------------------------------------

def md_table(headers: list[str], rows: list[list[str]], align: str) -> str:
    """`align` holds one of l/r per column."""
    cells = lambda r: "| " + " | ".join(c.replace("|", "\\|") for c in r) + " |"
    rule = "| " + " | ".join("---:" if a == "r" else "---" for a in align) + " |"
    return "\n".join([cells(headers), rule] + [cells(r) for r in rows]) + "\n"


_TEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                "^": r"\textasciicircum{}"}


def tex_escape(text: str) -> str:
    return "".join(_TEX_SPECIAL.get(ch, ch) for ch in text)


def tex_table(headers: list[str], rows: list[list[str]], align: str, legend: str = "") -> str:
    """A bare tabular (plain \\hline, no packages needed) for \\input; cells arrive escaped."""
    lines = [r"\begin{tabular}{" + align + "}", r"\hline",
             " & ".join(headers) + r" \\", r"\hline"]
    lines += [" & ".join(r) + r" \\" for r in rows]
    lines += [r"\hline", r"\end{tabular}"]
    if legend:
        lines += ["", legend]
    return "\n".join(lines) + "\n"


def csv_text(columns: tuple[str, ...], rows: list[dict[str, Any]]) -> str:
    def fmt(v):
        if v is None:
            return ""
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, float):
            return f"{v:.4f}"
        return str(v)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([fmt(row.get(c)) for c in columns])
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------
# Results (exact match)
# ---------------------------------------------------------------------------------------------

def result_rows(runs: Runs) -> list[dict[str, Any]]:
    """One dict per present cell, in display order (the parsed form of results.csv)."""
    rows = []
    for model in runs.models:
        for method in runs.methods:
            for bench in runs.benchmarks:
                cell = runs.cell(model, method, bench)
                if cell is None:
                    continue
                lo, hi = wilson_interval(cell.correct, cell.n)
                stats = None
                if cell.predictions is not None:
                    stats = rep.summarize(p["generation"] for p in cell.predictions)
                rows.append({
                    "model": model, "method": method, "benchmark": bench, "n": cell.n,
                    "correct": cell.correct, "exact_match": 100.0 * cell.correct / cell.n,
                    "ci_low": lo, "ci_high": hi, "below_zero_shot": below_zero_shot(runs, cell),
                    "repetition_rate": stats[0] if stats else None,
                    "loop_rate": stats[1] if stats else None,
                    "empty_generations": cell.empty_generations,
                })
    return rows


def _grid(runs: Runs, rows: list[dict[str, Any]], fmt) -> list[list[str]]:
    """Rows (model, method) x benchmark columns; `fmt(row) -> str | None` (None = missing)."""
    by_key = {(r["model"], r["method"], r["benchmark"]): r for r in rows}
    out = []
    for model in runs.models:
        for method in runs.methods:
            cells = [by_key.get((model, method, b)) for b in runs.benchmarks]
            out.append([model, method] + [None if c is None else fmt(c) for c in cells])
    return out


def _result_cell(row: dict[str, Any], mark: str) -> str:
    empty = f", {row['empty_generations']} empty" if row.get("empty_generations") else ""
    text = (f"{row['exact_match']:.1f} [{row['ci_low']:.1f}, {row['ci_high']:.1f}] "
            f"(n={row['n']}{empty})")
    return f"{text} {mark}" if row["below_zero_shot"] else text


def results_md(runs: Runs, rows: list[dict[str, Any]]) -> str:
    grid = _grid(runs, rows, lambda r: _result_cell(r, BELOW_MD))
    body = [[c if c is not None else MISSING_MD for c in r] for r in grid]
    return ("# Exact match\n\n"
            "Each cell: exact match (%) [95% Wilson score interval] (n = problems scored; "
            "k empty = generations with no text, where the model ended its turn at once).\n\n"
            + md_table(["model", "method"] + runs.benchmarks, body,
                       "ll" + "r" * len(runs.benchmarks))
            + f"\n{BELOW_MD} {BELOW_LEGEND}. {MISSING_MD} = not run.\n")


def results_tex(runs: Runs, rows: list[dict[str, Any]]) -> str:
    grid = _grid(runs, rows, lambda r: _result_cell(r, BELOW_TEX))
    body = [[tex_escape(r[0]), tex_escape(r[1])]
            + [c if c is not None else MISSING_TEX for c in r[2:]] for r in grid]
    headers = ["model", "method"] + [tex_escape(b) for b in runs.benchmarks]
    legend = (f"% Cells: exact match (\\%) [95\\% Wilson interval] (n).\n"
              f"{BELOW_TEX} {tex_escape(BELOW_LEGEND)}; {MISSING_TEX} = not run.")
    return tex_table(headers, body, "ll" + "r" * len(runs.benchmarks), legend)


def results_csv(rows: list[dict[str, Any]]) -> str:
    return csv_text(RESULT_COLUMNS, rows)


# ---------------------------------------------------------------------------------------------
# Throughput
# ---------------------------------------------------------------------------------------------

def throughput_rows(runs: Runs) -> list[dict[str, Any]]:
    """Per model x fine-tuning method; absent runs give a row of None (shown as a dash)."""
    methods = [m for m in runs.methods
               if m in FINE_TUNED or any(k[1] == m for k in runs.train)]
    rows = []
    for model in runs.models:
        full = runs.train.get((model, "full"))
        full_sps = full.summary["samples_per_second"] if full and full.summary else None
        for method in methods:
            run = runs.train.get((model, method))
            s = run.summary if run else None
            row = {"model": model, "method": method, "runtime_seconds": None,
                   "samples_per_second": None, "tokens_per_second": None,
                   "trainable_params": None, "total_params": None, "speedup_vs_full": None, "machine": None}
            if s is not None:
                row.update({k: s.get(k) for k in THROUGHPUT_COLUMNS[2:7]})
                row["machine"] = machine_state(s)
                if full_sps:
                    row["speedup_vs_full"] = s["samples_per_second"] / full_sps
            rows.append(row)
    return rows


def _throughput_cells(row: dict[str, Any], times: str, missing: str) -> list[str]:
    def num(v, spec):
        return missing if v is None else format(v, spec)
    share = missing
    if row["trainable_params"] is not None and row.get("total_params"):
        share = f"{100.0 * row['trainable_params'] / row['total_params']:.2f}"
    speed = row["speedup_vs_full"]
    return [num(row["runtime_seconds"], ".1f"), num(row["samples_per_second"], ".2f"),
            num(row["tokens_per_second"], ",.0f"), num(row["trainable_params"], ",d"), share,
            missing if speed is None else f"{speed:.2f}{times}", row.get("machine") or missing]


_THROUGHPUT_HEADERS = ["runtime (s)", "samples/s", "tokens/s", "trainable params",
                       "trainable %", "speedup vs Full FT", "machine"]


def throughput_md(rows: list[dict[str, Any]]) -> str:
    body = [[r["model"], r["method"]] + _throughput_cells(r, "×", MISSING_MD) for r in rows]
    return ("# Training throughput\n\n"
            "samples/s counts training examples (not packed rows) per second, the first step (compilation) "
            "left out. Speedup vs Full FT = samples/s of the method / samples/s of full fine-tuning of the "
            f"same model ({MISSING_MD} where either run is missing). Machine: `shared` where the host's "
            f"load average over the run exceeded {SHARED_LOAD_PER_CPU} x its CPUs (other jobs ran beside "
            "it: not comparable with other rows).\n\n"
            + md_table(["model", "method"] + _THROUGHPUT_HEADERS, body, "ll" + "r" * 6 + "l"))


def throughput_tex(rows: list[dict[str, Any]]) -> str:
    body = [[tex_escape(r["model"]), tex_escape(r["method"])]
            + _throughput_cells(r, r"$\times$", MISSING_TEX) for r in rows]
    headers = ["model", "method"] + [tex_escape(h) for h in _THROUGHPUT_HEADERS]
    return tex_table(headers, body, "ll" + "r" * 6 + "l",
                     "% Speedup: samples/s relative to full fine-tuning of the same model.")


def throughput_csv(rows: list[dict[str, Any]]) -> str:
    return csv_text(THROUGHPUT_COLUMNS, rows)


# ---------------------------------------------------------------------------------------------
# Repetition
# ---------------------------------------------------------------------------------------------

def repetition_md(runs: Runs, rows: list[dict[str, Any]]) -> str:
    def fmt(r):
        if r["repetition_rate"] is None:
            return None
        return f"{r['repetition_rate']:.3f} (loops {r['loop_rate']:.1f}%)"
    grid = _grid(runs, rows, fmt)
    body = [[c if c is not None else MISSING_MD for c in r] for r in grid]
    return ("# Repetition\n\n"
            f"Each cell: mean repetition score of the generations (word {rep.DEFAULT_N}-grams: the "
            "fraction of n-gram occurrences that repeat an earlier n-gram of the same "
            "generation; 0 = none, near 1 = a loop) and the loop rate (% of generations "
            f"scoring >= {rep.LOOP_THRESHOLD}). {MISSING_MD} = not run or no predictions.\n\n"
            + md_table(["model", "method"] + runs.benchmarks, body,
                       "ll" + "r" * len(runs.benchmarks)))


# ---------------------------------------------------------------------------------------------
# Qualitative samples
# ---------------------------------------------------------------------------------------------

def sample_ids(runs: Runs, bench: str) -> dict[str, list[str]]:
    """model -> ids to show: study.json's, else the first ids every method has predictions for.

    Ids shared by all models are preferred so models can be compared on the same problems; a
    model evaluated on a different subset falls back to the ids its own methods share.
    """
    cells = {m: [c for c in (runs.cell(m, meth, bench) for meth in runs.methods)
                 if c is not None and c.predictions] for m in runs.models}
    cells = {m: cs for m, cs in cells.items() if cs}
    if bench in runs.sample_ids:
        return {m: list(runs.sample_ids[bench]) for m in cells}

    def common(cs):
        shared = set.intersection(*({p["id"] for p in c.predictions} for c in cs))
        return [p["id"] for p in cs[0].predictions if p["id"] in shared][:SAMPLE_COUNT]
    everywhere = common([c for cs in cells.values() for c in cs]) if cells else []
    return {m: everywhere or common(cs) for m, cs in cells.items()}


def _longest_backtick_run(text: str) -> int:
    longest, run = 0, 0
    for ch in text:
        run = run + 1 if ch == "`" else 0
        longest = max(longest, run)
    return longest


def _fence(text: str) -> str:
    """A code fence longer than any backtick run inside, so generations cannot break out."""
    return "`" * max(3, _longest_backtick_run(text) + 1)


def _code(text: Any) -> str:
    """Inline code that survives backticks in the text."""
    text = str(text)
    ticks = "`" * (_longest_backtick_run(text) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def _clip(text: str) -> str:
    if len(text) <= SAMPLE_CHARS:
        return text
    return text[:SAMPLE_CHARS] + f"\n[... truncated: {len(text)} characters in all]"


def _quote(text: Any) -> str:
    return "\n".join("> " + line for line in str(text).splitlines() or [""])


def samples_md(runs: Runs) -> str:
    out = ["# Qualitative samples\n",
           "Generations of every method on the same problems (ids from study.json `sample_ids`, "
           f"else the first {SAMPLE_COUNT} ids every method was evaluated on). Generations "
           f"longer than {SAMPLE_CHARS} characters are truncated.\n"]
    for bench in runs.benchmarks:
        chosen = sample_ids(runs, bench)
        if not chosen:
            continue
        out.append(f"## {bench}\n")
        for model, ids in chosen.items():
            cells = [(meth, runs.cell(model, meth, bench)) for meth in runs.methods]
            cells = [(meth, c) for meth, c in cells if c is not None and c.predictions]
            by_method = {meth: {p["id"]: p for p in c.predictions} for meth, c in cells}
            for pid in ids:
                found = [by_method[meth].get(pid) for meth, _ in cells]
                first = next((p for p in found if p is not None), None)
                out.append(f"### {model} · problem `{pid}`\n")
                if first is None:
                    out.append("_No method has a prediction for this id._\n")
                    continue
                out.append("**Question**\n\n" + _quote(first.get("question") or "(not recorded)")
                           + "\n")
                out.append(f"**Reference:** {_code(first.get('reference'))}\n")
                for (meth, _), p in zip(cells, found):
                    if p is None:
                        out.append(f"**{meth}** — _no prediction for this id_\n")
                        continue
                    verdict = "✓ correct" if p["correct"] else "✗ incorrect"
                    score = rep.repetition_score(p["generation"])
                    if score >= rep.LOOP_THRESHOLD:
                        verdict += f", loop (repetition {score:.2f})"
                    text = _clip(p["generation"])
                    fence = _fence(text)
                    pred = _code(p.get("prediction"))
                    out.append(f"**{meth}** — {verdict} (prediction: {pred})\n\n"
                               f"{fence}text\n{text}\n{fence}\n")
    if len(out) == 2:
        out.append("_No predictions found._\n")
    return "\n".join(out)
