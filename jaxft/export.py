"""`python -m jaxft.export --checkpoint=DIR --out=OUT --format=merged|peft|gguf [--base=SOURCE]`.

DIR is a jaxft training workdir (jaxft_config.json + checkpoints/: the latest step, or --step), a PEFT
adapter directory (adapter_config.json; its base model comes from --base or
base_model_name_or_path) or an HF model directory (re-exported as merged or gguf). --format=gguf
writes one llama.cpp file (--quant=f32|f16|q8_0, adapters merged in float32; an existing file is
replaced only with --overwrite).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from jaxft.cli import ArgumentParser, entry_point
from jaxft.errors import ConfigError
from jaxft.models import load_model
from jaxft.peft.export import (ADAPTER_CONFIG, export_merged, export_peft, load_peft_adapter,
                               read_adapter_config)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = ArgumentParser(prog="python -m jaxft.export", description=__doc__.split("\n\n")[1])
    p.add_argument("--checkpoint", required=True,
                   help="training workdir, PEFT adapter directory or HF model directory")
    p.add_argument("--step", type=int, default=None, help="checkpoint step of a training workdir (default: latest)")
    p.add_argument("--out", required=True,
                   help="output directory, or .gguf file for --format=gguf (written atomically)")
    p.add_argument("--format", choices=("merged", "peft", "gguf"), default="merged")
    p.add_argument("--quant", default=None, help="GGUF tensor type: f32, f16 (default) or q8_0")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out GGUF file")
    p.add_argument("--base", default=None, help="base model source for an adapter (registry name, dir, .gguf)")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"),
                   help="parameter dtype of the merged export (merging itself is done in float32)")
    return p.parse_args(argv)


def source_config(source: str) -> dict | None:
    """The base's own config.json, so a merged export keeps its extra fields."""
    from jaxft.rundir import HF_CONFIG, dir_kind

    if dir_kind(source) != "hf":
        return None
    path = os.path.join(source, HF_CONFIG)
    with open(path) as f:
        return json.load(f)


def hub_name(source: str) -> str:
    """What PEFT's base_model_name_or_path should say: the hub id behind a registry name."""
    from jaxft.models.registry import GGUF_SOURCES, HUB_IDS

    return HUB_IDS.get(source) or GGUF_SOURCES.get(source, source)


def write_export(args: argparse.Namespace, model, tokenizer, base: str | None) -> str:
    """The merged HF directory or the GGUF file of a plain or adapted model."""
    if args.format == "gguf":
        from jaxft.export_gguf import export_gguf

        name = hub_name(base).split("/")[-1] if base else os.path.basename(os.path.abspath(args.checkpoint))
        return export_gguf(model, tokenizer, args.out, quant=args.quant or "f16", overwrite=args.overwrite,
                           name=name, source=args.checkpoint)
    return export_merged(model, tokenizer, args.out, source_config(base) if base else None, dtype=args.dtype)


def export_workdir(args: argparse.Namespace) -> str:
    from jaxft.train.restore import restore_model

    model, tokenizer, c = restore_model(args.checkpoint, step=args.step)
    base = None if c.model == "random" else c.model
    if args.format == "peft":
        if c.method == "full":
            raise ConfigError(f"{args.checkpoint} was trained with method=full: it has no adapters to export "
                              "as peft; use --format=merged")
        return export_peft(model, args.out, base_model=hub_name(base) if base else None)
    return write_export(args, model, tokenizer, base)


def run(args: argparse.Namespace) -> str:
    ckpt = args.checkpoint
    from jaxft.rundir import CONFIG, dir_kind

    if args.format == "gguf":  # fail on a bad --quant or an existing --out before loading anything
        from jaxft.export_gguf import check_export_args

        check_export_args(args.out, args.quant or "f16", args.overwrite)
    elif args.quant is not None:
        raise ConfigError(f"--quant={args.quant!r} applies to --format=gguf only (got --format={args.format})")

    kind = dir_kind(ckpt)
    if kind == "workdir":
        return export_workdir(args)
    if kind == "adapter":
        cfg = read_adapter_config(ckpt)
        base = args.base or cfg.get("base_model_name_or_path")
        if not base:
            raise ConfigError(f"{ckpt}: adapter_config.json names no base_model_name_or_path; pass --base")
        model, tokenizer = load_model(base, param_dtype="float32")  # merge in float32, cast once
        load_peft_adapter(model, ckpt)
        if args.format == "peft":
            return export_peft(model, args.out, base_model=base)
        return write_export(args, model, tokenizer, base)
    if kind == "hf":
        if args.format == "peft":
            raise ConfigError(f"{ckpt} is a plain HF model directory: it has no adapters to export as peft")
        model, tokenizer = load_model(ckpt, param_dtype="float32")
        return write_export(args, model, tokenizer, ckpt)
    raise ConfigError(f"{ckpt}: neither a training workdir ({CONFIG} + checkpoints/), a PEFT adapter "
                      f"directory ({ADAPTER_CONFIG}) nor an HF model directory (config.json)")


@entry_point()
def main(argv: list[str]) -> None:
    args = parse_args(argv)
    print(f"wrote {args.format} export to {run(args)}")


if __name__ == "__main__":
    sys.exit(main())
