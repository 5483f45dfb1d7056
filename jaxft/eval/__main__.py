"""`python -m jaxft.eval --model=SOURCE --task=gsm8k --shots=0 --output_dir=OUT`."""

from __future__ import annotations

import json
import sys

from jaxft.cli import ArgumentParser, entry_point
from jaxft.errors import ConfigError


@entry_point()
def main(argv: list[str]) -> None:
    from jaxft.data.prompts import TEMPLATE_CHOICES
    from jaxft.data.tasks import TASKS
    from jaxft.eval.settings import EvalSettings, eval_settings_from

    default = EvalSettings()

    ap = ArgumentParser(prog="python -m jaxft.eval", description="Exact-match evaluation.")
    ap.add_argument("--model", required=True, help="registry name, hub id, HF directory or .gguf file")
    ap.add_argument("--task", required=True, choices=TASKS)
    ap.add_argument("--split", default=default.split)
    ap.add_argument("--shots", type=int, default=default.shots)
    ap.add_argument("--template", default=default.template, choices=TEMPLATE_CHOICES,
                    help="auto (default): the tokenizer's chat template when it has one, else plain")
    ap.add_argument("--limit", type=int, default=default.limit)
    ap.add_argument("--batch_size", type=int, default=default.batch_size, help="rows decoded together")
    ap.add_argument("--refill", type=int, default=default.refill,
                    help="continuous batching: refill freed rows in groups of this many (0: batch_size // 4; "
                         "batch_size: static batches)")
    ap.add_argument("--max_new_tokens", type=int, default=default.max_new_tokens)
    ap.add_argument("--data_dir", default=None)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--seed", type=int, default=default.seed)
    ap.add_argument("--output_dir", required=True,
                    help="a rerun with the same arguments continues an interrupted evaluation here")
    ap.add_argument("--overwrite", action="store_true",
                    help="start over even if output_dir holds an evaluation with other arguments")
    args = ap.parse_args(argv)
    if args.batch_size < 1 or not 0 <= args.refill <= args.batch_size:
        raise ConfigError(f"need batch_size >= 1 and 0 <= refill <= batch_size, got "
                          f"--batch_size={args.batch_size} --refill={args.refill}")

    settings = eval_settings_from(vars(args))  # the flags that name an EvalSettings field

    from jaxft.eval.runner import evaluate
    from jaxft.models import load_model

    model, tok = load_model(args.model, dtype=args.dtype)
    metrics = evaluate(model, tok, settings, output_dir=args.output_dir, model_name=args.model,
                       overwrite=args.overwrite)
    print(json.dumps({k: metrics.get(k) for k in ("task", "shots", "template", "n", "exact_match", "ci95",
                                                  "empty_generations", "tokens_per_second")}))


if __name__ == "__main__":
    sys.exit(main())
