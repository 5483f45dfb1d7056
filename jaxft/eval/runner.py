"""Evaluate a model on a math task: prompts -> greedy generations -> exact match, written to disk.

The training loop and the study call `evaluate`; `python -m jaxft.eval` is a thin shim over it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from typing import Any

import jax

from jaxft.eval.generate import DecodeSettings, GenerationStats, generate
from jaxft.eval.resume import EvalOutput
from jaxft.eval.settings import EvalSettings
from jaxft.eval.stats import wilson_interval


def evaluate(model, tokenizer, settings: EvalSettings, *, output_dir: str | None = None,
             model_name: str = "", progress: bool = True, overwrite: bool = False, if_changed: str = "error",
             identity: dict | None = None, write: bool = True) -> dict[str, Any]:
    """Exact match of greedy generations; writes predictions.jsonl and metrics.json when output_dir.

    Resumable (jaxft.eval.resume): finished predictions reach `output_dir` as decoding goes, and a
    rerun with the same arguments continues with the problems not yet done. Arguments are the
    settings, `model_name`, the dtype, the prompts and `identity` (what else tells models apart,
    e.g. a training step); other arguments over an existing output raise ConfigError, or start over
    with if_changed="restart" or overwrite. `write=False`: read the state, write nothing (processes
    other than the one writing, which must decode the same problems).

    Examples whose reference answer could not be determined (`Example.ambiguous`, OrcaMath) are
    not generated or scored; metrics["excluded_ambiguous"] counts them (`limit` counts them too).
    """
    from tqdm import tqdm

    from jaxft.data.prompts import build_prompt, select_shots
    from jaxft.data.tasks import get_task, load_task
    from jaxft.eval.scoring import extract_answer, is_correct

    task = get_task(settings.task)  # joins the task to its scorer: neither module imports the other
    loaded = load_task(settings.task, settings.split, data_dir=settings.data_dir, limit=settings.limit)
    examples = [ex for ex in loaded if not ex.ambiguous]
    shots = []
    if settings.shots:
        shots = select_shots(settings.task, settings.shots, seed=settings.seed, data_dir=settings.data_dir,
                             exclude_ids=[ex.id for ex in examples])
    prompts = [build_prompt(ex, template=settings.template, shots=shots, tokenizer=tokenizer) for ex in examples]
    decode = DecodeSettings(max_new_tokens=settings.max_new_tokens, batch_size=settings.batch_size,
                            refill=settings.refill,
                            stop_strings=task.stop_strings[settings.template])
    out = None
    if output_dir:
        args = {"model": model_name, "identity": identity or {}, "dtype": str(model.dtype),
                **dataclasses.asdict(settings), "stop_strings": list(decode.stop_strings),
                "prompts_sha256": hashlib.sha256(json.dumps(prompts).encode("utf-8")).hexdigest()}
        out = EvalOutput(output_dir, args, n=len(prompts), overwrite=overwrite, if_changed=if_changed, write=write)
        if jax.process_count() > 1:  # every process has read the state before the writer changes it
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices("jaxft_eval_resume")
        out.prepare()
        if out.metrics is not None:
            return out.metrics
    done = out.done if out is not None else {}
    todo = [i for i in range(len(prompts)) if i not in done]

    def finished(gens: dict[int, Any]) -> None:
        # Only what decoding decided is kept as it goes; scoring happens once at the end, for every row alike.
        chunk = [{"index": todo[j], "id": examples[todo[j]].id, "generation": g.text,
                  "generated_tokens": len(g.token_ids)} for j, g in sorted(gens.items())]
        if out is not None:
            out.append(chunk)
        else:
            done.update((r["index"], r) for r in chunk)
        bar.update(len(chunk))

    stats = GenerationStats()
    t0 = time.perf_counter()
    bar = tqdm(total=len(prompts), initial=len(done), desc=f"eval {settings.task}", disable=not progress,
               unit="q")
    # All prompts at once: generate sorts them by length and keeps batch_size rows decoding,
    # refilling a finished row's slot with the next prompt; each round's finished rows are written.
    generate(model, tokenizer, [prompts[i] for i in todo], decode, stats=stats, on_generations=finished)
    bar.close()
    seconds = time.perf_counter() - t0

    rows = []
    for i, (ex, prompt) in enumerate(zip(examples, prompts)):
        text = done[i]["generation"]
        rows.append({"id": ex.id, "question": ex.question, "prompt": prompt, "generation": text,
                     "prediction": extract_answer(task.scorer, text), "reference": ex.answer,
                     "correct": bool(is_correct(task.scorer, text, ex.answer))})
    n = len(rows)
    correct = sum(r["correct"] for r in rows)
    metrics = {
        "task": settings.task, "split": settings.split, "shots": settings.shots, "n": n, "correct": correct,
        "excluded_ambiguous": len(loaded) - n,
        "exact_match": 100.0 * correct / n if n else 0.0, "ci95": list(wilson_interval(correct, n)),
        "model": model_name, "template": settings.template, "shot_ids": [s.id for s in shots],
        "decoding": {"strategy": "greedy", "max_new_tokens": settings.max_new_tokens,
                     "batch_size": settings.batch_size, "refill_group": decode.refill_group,
                     "stop_strings": list(decode.stop_strings),
                     "dtype": str(model.dtype)},
        "generated_tokens": sum(done[i]["generated_tokens"] for i in range(n)), "seconds": seconds,
        # this run's own decoding speed (a resumed run times only the problems it decoded)
        "tokens_per_second": stats.generated_tokens / seconds if seconds > 0 else 0.0,
    }
    if out is not None:
        out.finish(rows, metrics)
    return metrics
