"""`python -m jaxft.export --checkpoint=DIR --out=OUT --format=merged|peft [--base=SOURCE]`.

DIR is a jaxft training workdir (config.json + checkpoints/: the latest step, or --step), a PEFT
adapter directory (adapter_config.json; its base model comes from --base or
base_model_name_or_path) or an HF model directory (re-exported as merged).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from jaxft.errors import ConfigError, JaxftError
from jaxft.models import load_model
from jaxft.peft.export import (ADAPTER_CONFIG, export_merged, export_peft, load_peft_adapter,
                               read_adapter_config)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m jaxft.export", description=__doc__.split("\n\n")[1])
    p.add_argument("--checkpoint", required=True,
                   help="training workdir, PEFT adapter directory or HF model directory")
    p.add_argument("--step", type=int, default=None, help="checkpoint step of a training workdir (default: latest)")
    p.add_argument("--out", required=True, help="output directory (written atomically)")
    p.add_argument("--format", choices=("merged", "peft"), default="merged")
    p.add_argument("--base", default=None, help="base model source for an adapter (registry name, dir, .gguf)")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"),
                   help="parameter dtype of the merged export (merging itself is done in float32)")
    return p.parse_args(argv)


def source_config(source: str) -> dict | None:
    """The base's own config.json, so a merged export keeps its extra fields."""
    path = os.path.join(source, "config.json")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def hub_name(source: str) -> str:
    """What PEFT's base_model_name_or_path should say: the hub id behind a registry name."""
    from jaxft.models.registry import GGUF_SOURCES, HUB_IDS

    return HUB_IDS.get(source) or GGUF_SOURCES.get(source, source)


def export_workdir(args: argparse.Namespace) -> str:
    from jaxft.train.restore import restore_model

    model, tokenizer, c = restore_model(args.checkpoint, step=args.step)
    base = None if c.model == "random" else c.model
    if args.format == "peft":
        if c.method == "full":
            raise ConfigError(f"{args.checkpoint} was trained with method=full: it has no adapters to export "
                              "as peft; use --format=merged")
        return export_peft(model, args.out, base_model=hub_name(base) if base else None)
    return export_merged(model, tokenizer, args.out, source_config(base) if base else None, dtype=args.dtype)


def run(args: argparse.Namespace) -> str:
    ckpt = args.checkpoint
    from jaxft.train.restore import is_training_workdir

    if is_training_workdir(ckpt):
        return export_workdir(args)
    if os.path.isfile(os.path.join(ckpt, ADAPTER_CONFIG)):
        cfg = read_adapter_config(ckpt)
        base = args.base or cfg.get("base_model_name_or_path")
        if not base:
            raise ConfigError(f"{ckpt}: adapter_config.json names no base_model_name_or_path; pass --base")
        model, tokenizer = load_model(base, param_dtype="float32")  # merge in float32, cast once
        load_peft_adapter(model, ckpt)
        if args.format == "peft":
            return export_peft(model, args.out, base_model=base)
        return export_merged(model, tokenizer, args.out, source_config(base), dtype=args.dtype)
    if os.path.isfile(os.path.join(ckpt, "config.json")):
        if args.format == "peft":
            raise ConfigError(f"{ckpt} is a plain HF model directory: it has no adapters to export as peft")
        model, tokenizer = load_model(ckpt, param_dtype="float32")
        return export_merged(model, tokenizer, args.out, source_config(ckpt), dtype=args.dtype)
    raise ConfigError(f"{ckpt}: neither a training workdir (config.json + checkpoints/), a PEFT adapter "
                      f"directory ({ADAPTER_CONFIG}) nor an HF model directory (config.json)")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        out = run(args)
    except JaxftError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.format} export to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
