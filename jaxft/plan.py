"""`python -m jaxft.plan --config=configs/X.py[:arg] --devices=v5e-8 [--config.k=v ...] [--json]`
`python -m jaxft.plan --fits --devices=rtx4090x1[,t4x1] [--study_config=configs/study.py]
 [--models=a,b] [--json]`

Per-device memory of a training config on a device type, before renting it: parameters,
gradients, optimizer state, activations with and without remat, and the largest per-device
micro-batch that fits with 10% headroom. The formula lives in jaxft/train/memory.py.

`--fits` answers the study's claim (section 6.3) that PEFT trains on a 24 GB consumer GPU where
Full FT does not: every model x {full, lora, dora} of the study at its own settings
(configs/{model}_{method}.py, as `python -m jaxft.study` builds them), each through `plan()`.
"""

from __future__ import annotations

import json
import os
import sys

from jaxft.cli import entry_point
from jaxft.errors import ConfigError
from jaxft.train import memory as mem

_ROWS = [("parameters", "parameters"), ("gradients", "gradients"), ("optimizer", "optimizer state"),
         ("accumulator", "gradient accumulator"), ("scan_stack", "scan weight stack"),
         ("fsdp_gather", "fsdp gathered layer"), ("activations", "activations"), ("logits", "logits"),
         ("recompute", "remat recompute"), ("batch", "batch")]


DEVICES_HINT = "DEVICES (e.g. v5e-8, v4-8, v5p-8, h100x8, a100x8, cpux8)"


def parse(argv: list[str]):
    from jaxft.train.config import parse_command_line

    cl = parse_command_line(argv, usage="expected --config=, --devices=, --config.KEY=VALUE or --json",
                            flags=("devices",), switches=("json",), required={"devices": DEVICES_HINT})
    return cl.config, cl.config_path, mem.parse_devices(cl.flags["devices"]), "json" in cl.switches


def plan(c, hw: mem.Hardware) -> dict:
    """The plan of `c` on `hw` ("auto" resolved for it; config.memory_limit_bytes, when set, is the
    memory per device). A config that does not fit is reported (fits False), not refused."""
    import dataclasses

    from jaxft.train.auto import Memory, platform_of_devices, resolve_with_setup

    c = c.copy_and_resolve_references()
    source = f"--devices={hw.name}"
    if c.get("memory_limit_bytes"):
        hw, source = dataclasses.replace(hw, bytes_per_device=int(c.memory_limit_bytes)), "config.memory_limit_bytes"
    auto, s = resolve_with_setup(c, platform=platform_of_devices(hw.name), n_devices=hw.count,
                                 memory=Memory(hw.bytes_per_device, source), refuse=False)
    s = s or mem.setup_from_config(c, hw.count)
    policies = {}
    for remat in mem.REMATS:
        terms = mem.estimate(s, remat=remat)
        policies[remat] = {"activations": terms["activations"], "peak": terms["peak"],
                           "largest_batch": mem.largest_batch(s, hw.usable, remat)}
    terms = mem.estimate(s)
    return {
        "model": c.model, "method": s.method, "devices": hw.name, "device_count": hw.count,
        "device_bytes": hw.bytes_per_device, "usable_bytes": hw.usable, "headroom": mem.HEADROOM,
        "mesh": {"data": s.data, "fsdp": s.fsdp}, "seq_len": s.seq, "micro_batch": s.micro_batch,
        "micro_batch_size": c.micro_batch_size, "accum_steps": s.accum, "remat": s.remat,
        "attention": s.attention, "auto": auto,
        "scan_layers": s.scan, "compute_dtype": c.compute_dtype,
        "param_dtype": c.param_dtype, "params": s.n_params, "trainable_params": s.n_trainable,
        "terms": terms, "fits": terms["peak"] <= hw.usable, "by_remat": policies,
        "largest_batch": policies[s.remat]["largest_batch"],
    }


def _gib(n: int) -> str:
    return f"{n / mem.GiB:8.2f} GiB"


def render(p: dict, config_path: str) -> str:
    t = p["terms"]
    lines = [
        f"{config_path}: {p['model']} ({p['params'] / 1e9:.2f}B params, {p['trainable_params'] / 1e6:.1f}M trainable, "
        f"{p['method']}) on {p['devices']} = {p['device_count']} x {p['device_bytes'] / mem.GiB:.0f} GiB",
        f"mesh data={p['mesh']['data']} fsdp={p['mesh']['fsdp']}, seq {p['seq_len']}, per-device micro-batch "
        f"{p['micro_batch']} x {p['accum_steps']} accumulation steps, compute {p['compute_dtype']}, "
        f"params {p['param_dtype']}, remat={p['remat']}, attention={p['attention']}, scan_layers={p['scan_layers']}",
        *p["auto"],
        "",
        f"{'per device':<24}{'bytes':>12}",
    ]
    lines += [f"{label:<24}{_gib(t[key])}" for key, label in _ROWS if t[key]]
    verdict = "fits" if p["fits"] else "does NOT fit"
    lines += [f"{'peak':<24}{_gib(t['peak'])}   {verdict} in {p['usable_bytes'] / mem.GiB:.1f} GiB usable "
              f"({p['device_bytes'] / mem.GiB:.0f} GiB - {p['headroom']:.0%} headroom)", ""]
    lines.append(f"{'remat':<8}{'activations':>15}{'peak':>15}{'largest batch':>16}")
    for remat, r in p["by_remat"].items():
        lines.append(f"{remat:<8}{_gib(r['activations']):>15}{_gib(r['peak']):>15}{r['largest_batch']:>16}")
    if not p["scan_layers"] and p["remat"] != "none":
        lines.append("note: remat is counted as none without scan_layers=True (see jaxft/train/memory.py)")
    lines.append(f"largest per-device batch that fits: {p['largest_batch']} (seq {p['seq_len']}, "
                 f"remat={p['remat']})")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# --fits: the study's grid on one device type
# ---------------------------------------------------------------------------------------------

def default_study_config() -> str:
    """configs/study.py of the checkout this package runs from."""
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "study.py")


def fits_rows(hw: mem.Hardware, study_config: str | None = None, models: list[str] | None = None) -> list[dict]:
    """One row per (model, fine-tuning method) of the study: peak, fits, largest micro-batch."""
    from jaxft.peft.methods import METHODS
    from jaxft.study import _train_config  # the study's own settings, overrides included
    from jaxft.train.config import load_config_file, validate

    path = study_config or default_study_config()
    study = load_config_file(path)
    if not study.get("config_root"):
        study.config_root = os.path.dirname(os.path.dirname(os.path.abspath(path)))
    known = list(study.models)
    chosen = list(models) if models else known
    unknown = [m for m in chosen if m not in known or m not in study.model_configs]
    if unknown:
        raise ConfigError(f"--models: {', '.join(unknown)} not in {path} (allowed: {', '.join(known)})")
    rows = []
    for model in chosen:
        for method in [m for m in study.methods if m in METHODS]:
            c = _train_config(study, model, method)
            validate(c)
            p = plan(c, hw)
            best = max(p["by_remat"], key=lambda r: p["by_remat"][r]["largest_batch"])
            rows.append({
                "model": model, "method": method,
                "config": study.model_configs[model].format(method=method),
                "devices": hw.name, "device_count": hw.count, "device_bytes": hw.bytes_per_device,
                "usable_bytes": hw.usable, "params": p["params"], "trainable_params": p["trainable_params"],
                "seq_len": p["seq_len"], "micro_batch": p["micro_batch"], "accum_steps": p["accum_steps"],
                "remat": p["remat"], "attention": p["attention"], "peak": p["terms"]["peak"],
                "fits": p["fits"], "largest_batch": p["largest_batch"],
                "best_remat": best, "largest_batch_best_remat": p["by_remat"][best]["largest_batch"]})
    return rows


def fits_verdicts(rows: list[dict]) -> dict[str, list[str]]:
    """Models grouped by what fits: the direct answer to "PEFT fits where Full FT does not"."""
    by_model: dict[str, dict[str, bool]] = {}
    for r in rows:
        by_model.setdefault(r["model"], {})[r["method"]] = r["fits"]
    out = {"peft_only": [], "all": [], "none": [], "other": []}
    for model, fits in by_model.items():
        peft = [fits[m] for m in ("lora", "dora") if m in fits]
        if all(fits.values()):
            out["all"].append(model)
        elif not any(fits.values()):
            out["none"].append(model)
        elif fits.get("full") is False and peft and all(peft):
            out["peft_only"].append(model)
        else:
            out["other"].append(model)
    return out


def render_fits(rows: list[dict], hw: mem.Hardware, study_config: str | None = None) -> str:
    """A Markdown section (the report writes the same text to fits.md)."""
    from jaxft.report.tables import md_table

    head = (f"## {hw.name}: {hw.count} x {hw.bytes_per_device / mem.GiB:.0f} GiB, "
            f"{hw.usable / mem.GiB:.1f} GiB usable per device ({mem.HEADROOM:.0%} headroom)")
    body = [[r["model"], r["method"], f"{r['params'] / 1e6:,.1f}M", f"{r['trainable_params'] / 1e6:,.2f}M",
             f"{r['micro_batch']} x {r['accum_steps']} (seq {r['seq_len']})", r["remat"], r["attention"],
             f"{r['peak'] / mem.GiB:.2f}", "yes" if r["fits"] else "NO", str(r["largest_batch"]),
             f"{r['largest_batch_best_remat']} ({r['best_remat']})" if r["largest_batch_best_remat"] else "0"]
            for r in rows]
    table = md_table(["model", "method", "params", "trainable", "micro-batch x accum", "remat", "attention",
                      "peak / device (GiB)", "fits", "largest micro-batch", "largest, best remat"],
                     body, "llrrrllrlrr")
    v = fits_verdicts(rows)
    names = lambda ms: ", ".join(ms) or "(none)"  # noqa: E731
    lines = [head, "",
             f"Study settings: {study_config or default_study_config()} (configs/{{model}}_{{method}}.py, "
             "remat/attention \"auto\" resolved for this device). Peak from jaxft/train/memory.py; largest "
             "micro-batch per device at the config's remat, and at the best remat.", "", table.rstrip(), "",
             f"- LoRA/DoRA fit, Full FT does not: {names(v['peft_only'])}",
             f"- all three fit: {names(v['all'])}",
             f"- none fits: {names(v['none'])}"]
    if v["other"]:
        lines.append(f"- mixed: {names(v['other'])}")
    return "\n".join(lines) + "\n"


def parse_fits(argv: list[str]):
    devices, study_config, models, as_json = None, None, None, False
    for arg in argv:
        if arg in ("--fits", "--json"):
            as_json = as_json or arg == "--json"
        elif arg.startswith("--devices="):
            devices = arg.split("=", 1)[1]
        elif arg.startswith("--study_config="):
            study_config = arg.split("=", 1)[1]
        elif arg.startswith("--models="):
            models = [m for m in arg.split("=", 1)[1].split(",") if m]
        else:
            raise ConfigError(f"argument {arg!r}: with --fits expected --devices=, --study_config=, --models= "
                              "or --json")
    if not devices:
        raise ConfigError("missing --devices= (e.g. rtx4090x1, or several: rtx4090x1,t4x1)")
    return [mem.parse_devices(d) for d in devices.split(",") if d], study_config, models, as_json


@entry_point(__doc__)
def main(argv: list[str]) -> None:
    if "--fits" in argv:
        hws, study_config, models, as_json = parse_fits(argv)
        tables = [(hw, fits_rows(hw, study_config, models)) for hw in hws]
        if as_json:
            print(json.dumps([r for _, rows in tables for r in rows], indent=2))
        else:
            print("\n".join(render_fits(rows, hw, study_config) for hw, rows in tables).rstrip())
        return
    c, path, hw, as_json = parse(argv)
    p = plan(c, hw)
    print(json.dumps(p, indent=2) if as_json else render(p, path))


if __name__ == "__main__":
    sys.exit(main())
