"""Evaluate a model on a math task: prompts -> greedy generations -> exact match, written to disk.

The training loop and the study call `evaluate`; `python -m jaxft.eval` is a thin shim over it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any

from jaxft.atomic import write_atomic
from jaxft.eval.generate import DecodeSettings, GenerationStats, generate
from jaxft.eval.stats import wilson_interval


@dataclasses.dataclass
class EvalSettings:
    task: str = "gsm8k"
    split: str = "test"
    shots: int = 0
    template: str = "plain"  # "plain" ("Question: ... Answer:") or "chat" (the tokenizer's template)
    limit: int | None = None
    batch_size: int = 16
    refill: int = 0  # continuous batching refill group (0: batch_size // 4; batch_size: static batches)
    max_new_tokens: int = 256
    data_dir: str | None = None
    seed: int = 0  # draws the few-shot exemplars


def evaluate(model, tokenizer, settings: EvalSettings, *, output_dir: str | None = None,
             model_name: str = "", progress: bool = True) -> dict[str, Any]:
    """Exact match of greedy generations; writes predictions.jsonl and metrics.json when output_dir."""
    from tqdm import tqdm

    from jaxft.data.prompts import STOP_STRINGS, build_prompt, select_shots
    from jaxft.data.tasks import load_task
    from jaxft.eval.scoring import extract_answer, is_correct

    examples = load_task(settings.task, settings.split, data_dir=settings.data_dir, limit=settings.limit)
    shots = []
    if settings.shots:
        shots = select_shots(settings.task, settings.shots, seed=settings.seed, data_dir=settings.data_dir,
                             exclude_ids=[ex.id for ex in examples])
    prompts = [build_prompt(ex, template=settings.template, shots=shots, tokenizer=tokenizer) for ex in examples]
    decode = DecodeSettings(max_new_tokens=settings.max_new_tokens, batch_size=settings.batch_size,
                            refill=settings.refill,
                            stop_strings=STOP_STRINGS[settings.template])
    stats = GenerationStats()
    t0 = time.perf_counter()
    bar = tqdm(total=len(prompts), desc=f"eval {settings.task}", disable=not progress, unit="q")
    # All prompts at once: generate sorts them by length and keeps batch_size rows decoding,
    # refilling a finished row's slot with the next prompt.
    texts = [g.text for g in generate(model, tokenizer, prompts, decode, stats=stats,
                                      on_finished=lambda _: bar.update(1))]
    bar.close()
    seconds = time.perf_counter() - t0

    rows = []
    for ex, prompt, text in zip(examples, prompts, texts):
        rows.append({"id": ex.id, "question": ex.question, "prompt": prompt, "generation": text,
                     "prediction": extract_answer(settings.task, text), "reference": ex.answer,
                     "correct": bool(is_correct(settings.task, text, ex.answer))})
    n = len(rows)
    correct = sum(r["correct"] for r in rows)
    metrics = {
        "task": settings.task, "split": settings.split, "shots": settings.shots, "n": n, "correct": correct,
        "exact_match": 100.0 * correct / n if n else 0.0, "ci95": list(wilson_interval(correct, n)),
        "model": model_name, "template": settings.template, "shot_ids": [s.id for s in shots],
        "decoding": {"strategy": "greedy", "max_new_tokens": settings.max_new_tokens,
                     "batch_size": settings.batch_size, "refill_group": decode.refill_group,
                     "stop_strings": list(decode.stop_strings),
                     "dtype": str(model.dtype)},
        "generated_tokens": stats.generated_tokens, "seconds": seconds,
        "tokens_per_second": stats.generated_tokens / seconds if seconds > 0 else 0.0,
    }
    if output_dir:
        write_atomic(os.path.join(output_dir, "predictions.jsonl"),
                     "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        write_atomic(os.path.join(output_dir, "metrics.json"), json.dumps(metrics, indent=2) + "\n")
    return metrics
