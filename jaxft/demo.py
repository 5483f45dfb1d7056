"""`python -m jaxft.demo`: the real SmolLM2-135M-Instruct answers GSM8K test questions (offline)."""

from __future__ import annotations

import sys
import time

from jaxft.cli import ArgumentParser, entry_point
from jaxft.errors import ConfigError


def run_demo(model_source: str = "smollm2-135m-instruct-q4", n: int = 4, max_new_tokens: int = 160,
             data_dir: str | None = None, out=sys.stdout) -> list[dict]:
    from jaxft.data.tasks import get_task, load_task
    from jaxft.eval.generate import DecodeSettings, GenerationStats, generate
    from jaxft.eval.scoring import is_correct
    from jaxft.models import load_model

    model, tok = load_model(model_source)
    examples = load_task("gsm8k", "test", data_dir=data_dir, limit=n)
    prompts = [tok.apply_chat_template([{"role": "user", "content": ex.question}], tokenize=False,
                                       add_generation_prompt=True) for ex in examples]
    stats = GenerationStats()
    gens = generate(model, tok, prompts, DecodeSettings(max_new_tokens=max_new_tokens, batch_size=n),
                    stats=stats)
    rows = []
    for ex, g in zip(examples, gens):
        ok = is_correct(get_task("gsm8k").scorer, g.text, ex.answer)
        rows.append({"question": ex.question, "generation": g.text, "reference": ex.answer, "correct": ok})
        print(f"\n=== {ex.id}\nQ: {ex.question}\nA: {g.text.strip()}\nreference: {ex.answer}  "
              f"correct: {ok}", file=out)
    print(f"\n{sum(r['correct'] for r in rows)}/{len(rows)} correct; {stats.generated_tokens} tokens in "
          f"{stats.seconds:.1f}s ({stats.tokens_per_second:.1f} tokens/s incl. compile)", file=out)
    return rows


@entry_point()
def main(argv: list[str]) -> None:
    ap = ArgumentParser(prog="python -m jaxft.demo", description=__doc__)
    ap.add_argument("--model", default="smollm2-135m-instruct-q4")
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--max_new_tokens", type=int, default=160)
    ap.add_argument("--data_dir", default=None)
    args = ap.parse_args(argv)
    if args.n < 1 or args.max_new_tokens < 1:
        raise ConfigError(f"--n={args.n} and --max_new_tokens={args.max_new_tokens} must be >= 1")
    t0 = time.time()
    run_demo(args.model, args.n, args.max_new_tokens, args.data_dir)
    print(f"total {time.time() - t0:.1f}s")


if __name__ == "__main__":
    sys.exit(main())
