"""`python -m jaxft.plan --config=configs/X.py --devices=v5e-8 [--config.k=v ...] [--json]`

Per-device memory of a training config on a device type, before renting it: parameters,
gradients, optimizer state, activations with and without remat, and the largest per-device
micro-batch that fits with 10% headroom. The formula lives in jaxft/train/memory.py.
"""

from __future__ import annotations

import json
import sys

from jaxft.errors import ConfigError, JaxftError
from jaxft.train import memory as mem

_ROWS = [("parameters", "parameters"), ("gradients", "gradients"), ("optimizer", "optimizer state"),
         ("accumulator", "gradient accumulator"), ("scan_stack", "scan weight stack"),
         ("fsdp_gather", "fsdp gathered layer"), ("activations", "activations"), ("logits", "logits"),
         ("recompute", "remat recompute"), ("batch", "batch")]


def parse(argv: list[str]):
    from jaxft.train.config import apply_override, load_config_file, validate

    config_path, devices, as_json, overrides = None, None, False, []
    for arg in argv:
        if arg == "--json":
            as_json = True
        elif arg.startswith("--config="):
            config_path = arg.split("=", 1)[1]
        elif arg.startswith("--devices="):
            devices = arg.split("=", 1)[1]
        elif arg.startswith("--config.") and "=" in arg:
            overrides.append(arg[len("--config."):].split("=", 1))
        else:
            raise ConfigError(f"argument {arg!r}: expected --config=, --devices=, --config.KEY=VALUE or --json")
    if config_path is None:
        raise ConfigError("missing --config=path/to/config.py")
    if devices is None:
        raise ConfigError("missing --devices= (e.g. v5e-8, v4-8, v5p-8, h100x8, a100x8, cpux8)")
    c = load_config_file(config_path)
    for dotted, raw in overrides:
        apply_override(c, dotted, raw)
    validate(c)
    return c, config_path, mem.parse_devices(devices), as_json


def plan(c, hw: mem.Hardware) -> dict:
    from jaxft.train.auto import platform_of_devices, resolve

    c = c.copy_and_resolve_references()
    auto = resolve(c, platform=platform_of_devices(hw.name), n_devices=hw.count, usable=hw.usable)
    s = mem.setup_from_config(c, hw.count)
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
        "accum_steps": s.accum, "remat": s.remat, "attention": s.attention, "auto": auto,
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


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    try:
        c, path, hw, as_json = parse(argv)
        p = plan(c, hw)
    except JaxftError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(p, indent=2) if as_json else render(p, path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
