"""`python -m jaxft.eval --model=SOURCE --task=gsm8k --shots=0 --output_dir=OUT`."""

from __future__ import annotations

import argparse
import json
import sys

from jaxft.errors import JaxftError


def main(argv=None) -> int:
    from jaxft.data.prompts import TEMPLATES
    from jaxft.data.tasks import TASKS

    ap = argparse.ArgumentParser(prog="python -m jaxft.eval", description="Exact-match evaluation.")
    ap.add_argument("--model", required=True, help="registry name, hub id, HF directory or .gguf file")
    ap.add_argument("--task", required=True, choices=TASKS)
    ap.add_argument("--split", default="test")
    ap.add_argument("--shots", type=int, default=0)
    ap.add_argument("--template", default="plain", choices=TEMPLATES)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--batch_size", type=int, default=16, help="rows decoded together")
    ap.add_argument("--refill", type=int, default=0,
                    help="continuous batching: refill freed rows in groups of this many (0: batch_size // 4; "
                         "batch_size: static batches)")
    ap.add_argument("--max_new_tokens", type=int, default=256)
    ap.add_argument("--data_dir", default=None)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--output_dir", required=True,
                    help="a rerun with the same arguments continues an interrupted evaluation here")
    ap.add_argument("--overwrite", action="store_true",
                    help="start over even if output_dir holds an evaluation with other arguments")
    args = ap.parse_args(argv)
    if args.batch_size < 1 or not 0 <= args.refill <= args.batch_size:
        ap.error(f"need batch_size >= 1 and 0 <= refill <= batch_size, got --batch_size={args.batch_size} "
                 f"--refill={args.refill}")

    from jaxft.eval.runner import EvalSettings, evaluate
    from jaxft.models import load_model

    try:
        model, tok = load_model(args.model, dtype=args.dtype)
        settings = EvalSettings(task=args.task, split=args.split, shots=args.shots, template=args.template,
                                limit=args.limit, batch_size=args.batch_size, refill=args.refill,
                                max_new_tokens=args.max_new_tokens, data_dir=args.data_dir, seed=args.seed)
        metrics = evaluate(model, tok, settings, output_dir=args.output_dir, model_name=args.model,
                           overwrite=args.overwrite)
    except JaxftError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({k: metrics[k] for k in ("task", "shots", "n", "exact_match", "ci95",
                                              "tokens_per_second")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
