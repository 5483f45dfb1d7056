"""Evaluate a model on a math task: prompts -> greedy generations -> exact match, written to disk.

The training loop and the study call `evaluate`; `python -m jaxft.eval` is a thin shim over it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import time
from typing import Any

import jax

from jaxft.eval.generate import DecodeSettings, GenerationStats, generate
from jaxft.eval.resume import EvalOutput
from jaxft.eval.settings import EvalSettings
from jaxft.eval.stats import wilson_interval


def evaluate(model, tokenizer, settings: EvalSettings, *, output_dir: str | None = None,
             model_name: str = "", progress: bool = True, overwrite: bool = False, if_changed: str = "error",
             identity: dict | None = None, write: bool = True,
             trained_template: str | None = None) -> dict[str, Any]:
    """Exact match of greedy generations; writes predictions.jsonl and metrics.json when output_dir.

    `settings.template` "auto" is resolved first (jaxft.data.prompts.resolve_template; `trained_template`:
    the data template of the run that trained the model): the resolved one decides prompts, stop strings
    and the resume fingerprint, so "auto" that resolves to "chat" continues an output of "chat".

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

    from jaxft.data.prompts import build_prompt, resolve_template, select_shots
    from jaxft.data.tasks import get_task, load_task

    requested = settings.template
    settings = dataclasses.replace(settings, template=resolve_template(requested, tokenizer,
                                                                       trained=trained_template))
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
    try:
        generate(model, tokenizer, [prompts[i] for i in todo], decode, stats=stats, on_generations=finished)
    finally:
        bar.close()  # ends its line: an error says so on a line of its own
    seconds = time.perf_counter() - t0

    rows = score_rows(task, examples, prompts, [done[i]["generation"] for i in range(len(examples))])
    n = len(rows)
    metrics = {
        "task": settings.task, "split": settings.split, "shots": settings.shots,
        **exact_match_metrics(rows, template=settings.template), "excluded_ambiguous": len(loaded) - n,
        "model": model_name, "template": settings.template, "template_requested": requested,
        "shot_ids": [s.id for s in shots],
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


EMPTY_WARNING_FRACTION = 0.05  # more empty generations than this: a warning (usually the wrong prompt template)


def score_rows(task, examples, prompts, generations: list[str]) -> list[dict]:
    """predictions.jsonl's rows: each example with its prompt, generation, extracted answer and grade."""
    from jaxft.eval.scoring import extract_answer, is_correct

    return [{"id": ex.id, "question": ex.question, "prompt": prompt, "generation": text,
             "prediction": extract_answer(task.scorer, text), "reference": ex.answer,
             "correct": bool(is_correct(task.scorer, text, ex.answer))}
            for ex, prompt, text in zip(examples, prompts, generations)]


def exact_match_metrics(rows: list[dict], *, template: str = "", warn=None) -> dict[str, Any]:
    """n, correct, exact match (%) with its 95% Wilson interval, and the generations that are empty or
    whitespace only; above EMPTY_WARNING_FRACTION of them a warning line goes to `warn` (default stderr)."""
    n = len(rows)
    correct = sum(r["correct"] for r in rows)
    empty = sum(not r["generation"].strip() for r in rows)
    if n and empty > EMPTY_WARNING_FRACTION * n:
        hint = "; a chat model given plain prompts ends its turn at once: try --template=chat or auto" \
            if template == "plain" else ""
        line = (f"eval: warning: {empty} of {n} generations ({100.0 * empty / n:.1f}%) are empty"
                f"{f' (template {template!r})' if template else ''}{hint}")
        (warn or (lambda text: print(text, file=sys.stderr, flush=True)))(line)
    return {"n": n, "correct": correct, "exact_match": 100.0 * correct / n if n else 0.0,
            "ci95": list(wilson_interval(correct, n)), "empty_generations": empty}
