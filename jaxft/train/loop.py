"""The train loop: build everything from a config, resume if the workdir holds a checkpoint, step,
log one step late (the device never waits for the host), checkpoint, evaluate.
"""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

import jax
import numpy as np
import optax
from flax import nnx

from jaxft.errors import JaxftError
from jaxft.train import checkpoint as ckpt_lib
from jaxft.train import sharding as shard_lib
from jaxft.train.telemetry import MetricsLog, device_peak_flops, train_flops_per_token


class NonFiniteError(JaxftError):
    """Too many consecutive non-finite steps: the run stops, the last good checkpoint stays."""


def build_model(c) -> tuple[Any, Any]:
    """Base model (+ adapters for lora/dora) and tokenizer for a config."""
    from jaxft.models import ModelConfig, Transformer, load_model, load_tokenizer
    from jaxft.models.load import as_dtype
    from jaxft.peft import apply_peft
    from jaxft.train.auto import resolve_for_this_host

    dtype, pdtype = as_dtype(c.compute_dtype), as_dtype(c.param_dtype)
    if c.model == "random":
        cfg = ModelConfig(**c.random_model.to_dict())
        model = Transformer(cfg, dtype=dtype, param_dtype=pdtype, rngs=nnx.Rngs(c.seed))
        tok = load_tokenizer(c.tokenizer)
    else:
        model, tok = load_model(c.model, dtype=dtype, param_dtype=pdtype)
        if c.tokenizer:
            tok = load_tokenizer(c.tokenizer)
    if "auto" in (c.attention, c.remat):
        resolve_for_this_host(c)
    model.scan_layers, model.remat = bool(c.scan_layers), str(c.remat)
    model.attention = str(c.attention)
    if c.method != "full":
        model = apply_peft(model, c.method, targets=tuple(c.peft.targets), r=c.peft.r, alpha=c.peft.alpha,
                           dropout=c.peft.dropout, rslora=c.peft.rslora, seed=c.seed)
    return model, tok


def make_schedule(c, total_steps: int) -> optax.Schedule:
    warmup = int(round(c.optim.warmup_ratio * total_steps))
    peak = c.optim.learning_rate
    if c.optim.schedule == "constant":
        return optax.join_schedules([optax.linear_schedule(peak / max(warmup, 1), peak, max(warmup, 1)),
                                     optax.constant_schedule(peak)],
                                    [max(warmup, 1)])
    # The first update already uses peak/warmup: a warmup starting at exactly 0 wastes a step.
    return optax.warmup_cosine_decay_schedule(peak / max(warmup, 1), peak, max(warmup, 1),
                                              max(total_steps, warmup + 1),
                                              end_value=peak * c.optim.final_lr_ratio)


def _write_json(path: str, obj: Any) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True, default=str)
        f.write("\n")
    os.replace(tmp, path)


def train(c, workdir: str, *, progress: bool = True) -> dict:
    """Run (or resume) the experiment `c` in `workdir`; returns the run summary."""
    from tqdm import tqdm

    from jaxft.data.pipeline import StepPlan, make_dataset, tokenize_examples
    from jaxft.train.batch_layout import layout, row_multiple
    from jaxft.data.tasks import load_task
    from jaxft.peft import split_params
    from jaxft.train.config import config_to_json
    from jaxft.train.optim import make_optimizer
    from jaxft.train.auto import resolve_for_this_host
    from jaxft.train.step import make_train_step

    lead = jax.process_index() == 0
    for line in resolve_for_this_host(c):  # before config.json: the workdir records what ran
        if lead:
            print(line, flush=True)
    os.makedirs(workdir, exist_ok=True)
    if lead:
        tmp = os.path.join(workdir, "config.json.tmp")
        with open(tmp, "w") as f:
            f.write(config_to_json(c))
        os.replace(tmp, os.path.join(workdir, "config.json"))

    model, tok = build_model(c)
    examples = load_task(c.data.task, c.data.split, data_dir=c.data.data_dir or None, limit=c.data.limit or None,
                         seed=c.seed)
    tokset = tokenize_examples(examples, tok, seq_len=c.data.seq_len, template=c.data.template)
    n_dev = jax.device_count()
    mesh = shard_lib.make_mesh(dict(c.mesh_shape), jax.devices())
    shards = mesh.shape["data"] * mesh.shape["fsdp"]
    plan = StepPlan([len(r["tokens"]) for r in tokset.records], batch_size=c.global_batch_size,
                    seq_len=c.data.seq_len, seed=c.data.shuffle_seed, total_steps=c.total_steps,
                    num_epochs=c.data.num_epochs, packing=c.data.packing,
                    rows_per_step=int(c.data.get("rows_per_step", 0) or 0),
                    row_multiple=row_multiple(c.micro_batch_size, shards, jax.process_count()))
    lay = layout(plan.rows, c.micro_batch_size, shards)
    accum, total_steps = lay.accum, plan.total_steps

    model_cfg = model.config
    graphdef, trainable, frozen = split_params(model, c.method)
    del model
    t_shard = shard_lib.param_shardings(mesh, trainable)
    f_shard = shard_lib.param_shardings(mesh, frozen)
    trainable = jax.device_put(trainable, t_shard)
    frozen = jax.device_put(frozen, f_shard)
    schedule = make_schedule(c, total_steps)
    optimizer = make_optimizer(schedule, weight_decay=c.optim.weight_decay, b1=c.optim.b1, b2=c.optim.b2,
                               eps=c.optim.eps, grad_clip=c.optim.grad_clip)
    # Explicit layout: left to jit, scalar leaves (Adam's count) land on one device, which a
    # multi-process step refuses.
    o_shard = shard_lib.param_shardings(mesh, jax.eval_shape(optimizer.init, trainable))
    opt_state = jax.jit(optimizer.init, out_shardings=o_shard)(trainable)
    b_shard = shard_lib.batch_sharding(mesh, accumulated=accum > 1)
    step_fn = make_train_step(graphdef, optimizer, accum_steps=accum, loss_impl=c.loss_impl,
                              loss_chunk=c.loss_chunk, batch_shards=shards,
                              in_shardings=(t_shard, f_shard, o_shard, b_shard, shard_lib.replicated(mesh)),
                              out_shardings=(t_shard, o_shard, shard_lib.replicated(mesh)))

    dataset = make_dataset(tokset.records, plan, process_index=jax.process_index(),
                           process_count=jax.process_count())
    data_iter = iter(dataset)
    checkpointer = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"), keep=c.keep_checkpoints)
    start = 0
    # The newest checkpoint that verifies; broken newer ones are moved aside and their steps redone.
    restored = checkpointer.restore_newest_readable(
        ckpt_lib.abstract_like(trainable), ckpt_lib.abstract_like(opt_state),
        log=(lambda line: print(line, flush=True)) if lead else (lambda line: None))
    if restored is not None:
        trainable, opt_state, start = restored.trainable, restored.opt_state, restored.step
        data_iter.set_state(restored.data_state)
    log = MetricsLog(workdir, resume_step=start, enabled=lead)
    for event in restored.skipped if restored is not None else ():
        log.event(event)
    if lead:
        _write_json(os.path.join(workdir, "data_stats.json"), {
            "examples": tokset.num_examples, "kept": len(tokset.records),
            "dropped_no_answer_tokens": tokset.dropped_no_answer, "truncated": tokset.truncated,
            "seq_len": c.data.seq_len, "packing": c.data.packing, "examples_per_step": c.global_batch_size,
            "rows_per_step": plan.rows, "steps_per_epoch": plan.steps_per_epoch, "total_steps": total_steps,
            "padding_fraction": plan.padding_fraction, "accum_steps": accum})
        print(f"data: {len(tokset.records)} examples, {c.global_batch_size} per step in {plan.rows} rows of "
              f"{c.data.seq_len} tokens ({100 * plan.padding_fraction:.1f}% padding), {plan.steps_per_epoch} "
              f"steps per epoch, {total_steps} steps", flush=True)
        if tokset.dropped_no_answer:
            print(f"data: dropped {tokset.dropped_no_answer} of {tokset.num_examples} examples left with no "
                  f"answer tokens after truncation to {c.data.seq_len}")

    stop = {"sigterm": False}
    previous_handler = signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__("sigterm", True))
    base_key = jax.random.key(c.seed)
    dropout_key = jax.random.fold_in(base_key, 1)
    flops_token = train_flops_per_token(model_cfg, c.method, c.data.seq_len)
    peak = device_peak_flops()
    record_examples = os.environ.get("JAXFT_LOG_EXAMPLES") == "1"
    kill_at = int(os.environ.get("JAXFT_TEST_KILL_AFTER_SAVE", "0"))  # tests: SIGKILL right after a save
    poison = {int(s) for s in os.environ.get("JAXFT_TEST_POISON_STEPS", "").split(",") if s}

    def save(step: int, force: bool = False):
        checkpointer.save(step, trainable, opt_state, data_iter.get_state(), {"method": c.method}, force=force)

    pending = None
    nonfinite_run = 0
    t_last = time.perf_counter()
    t_start = t_last
    timed = {"steps": 0, "seconds": 0.0, "tokens": 0, "examples": 0}  # excludes each process's first step
    bar = tqdm(total=total_steps, initial=start, desc="train", disable=not (progress and lead), unit="step")

    def drain(pending):
        nonlocal t_last, nonfinite_run
        step, metrics, n_tokens, ids, epoch = pending
        n_examples = len(ids)
        metrics = jax.device_get(metrics)
        now = time.perf_counter()
        dt, t_last = now - t_last, now
        if step > start + 1:  # the first step of a process includes compilation
            timed["steps"] += 1
            timed["seconds"] += dt
            timed["tokens"] += n_tokens
            timed["examples"] += n_examples
        finite = bool(metrics["finite"])
        nonfinite_run = 0 if finite else nonfinite_run + 1
        row = {"step": step, "loss": float(metrics["loss"]), "grad_norm": float(metrics["grad_norm"]),
               "update_norm": float(metrics["update_norm"]), "learning_rate": float(schedule(step - 1)),
               "tokens_per_second": n_tokens / dt, "examples_per_second": n_examples / dt, "step_time": dt,
               "mfu": (flops_token * plan.rows * c.data.seq_len / dt / (peak * n_dev)) if peak else None,
               "skipped_nonfinite": int(not finite), "accum_steps": accum, "examples": n_examples,
               "epoch": epoch}
        if record_examples:
            row["example_ids"] = ids
        log.write(row)
        bar.update(1)
        bar.set_postfix(loss=f"{row['loss']:.4f}", tokens_per_s=f"{row['tokens_per_second']:.0f}")
        if nonfinite_run >= c.max_consecutive_nonfinite:
            raise NonFiniteError(f"{nonfinite_run} consecutive steps with a non-finite loss or gradient "
                                 f"(last at step {step}); the last good checkpoint is kept in {workdir}")

    try:
        for step in range(start, total_steps):
            batch, info = next(data_iter)
            batch = {k: v for k, v in batch.items() if k != "example"}
            if step + 1 in poison:  # tests: a NaN loss at chosen steps exercises the skip logic
                batch["loss_mask"] = batch["loss_mask"] * np.float32("nan")
            if accum > 1:
                batch = {k: v.reshape(accum, -1, *v.shape[1:]) for k, v in batch.items()}
            batch = jax.make_array_from_process_local_data(b_shard, batch) if jax.process_count() > 1 else \
                jax.device_put(batch, b_shard)
            rng = jax.random.fold_in(dropout_key, step) if c.method != "full" and c.peft.dropout > 0 else None
            trainable, opt_state, metrics = step_fn(trainable, frozen, opt_state, batch, rng)
            if pending is not None:
                drain(pending)
            pending = (step + 1, metrics, info["tokens"], info["examples"], info["epoch"])
            done = step + 1
            if done % c.checkpoint_every_steps == 0 or stop["sigterm"] or done == total_steps:
                drain(pending)
                pending = None
                save(done, force=stop["sigterm"])
                if kill_at and done == kill_at:
                    checkpointer.wait()
                    os.kill(os.getpid(), signal.SIGKILL)
            if c.eval.every_steps and done % c.eval.every_steps == 0 and done < total_steps:
                run_eval(c, graphdef, trainable, frozen, tok, log, done, workdir, final=False)
            if stop["sigterm"]:
                break
        if pending is not None:
            drain(pending)
        checkpointer.wait()
    finally:
        bar.close()
        signal.signal(signal.SIGTERM, previous_handler)
        checkpointer.close()

    completed = step + 1 if total_steps > start else start
    run_examples, run_tokens = plan.seen(completed)
    summary = {"steps": total_steps, "completed_steps": completed,
               "runtime_seconds": time.perf_counter() - t_start, "method": c.method,
               "examples": run_examples, "tokens": run_tokens, "epochs": plan.epoch_progress(completed),
               "examples_per_step": c.global_batch_size, "rows_per_step": plan.rows,
               "samples_per_second": timed["examples"] / timed["seconds"] if timed["seconds"] else None,
               "tokens_per_second": timed["tokens"] / timed["seconds"] if timed["seconds"] else None,
               "trainable_params": int(sum(np.prod(x.shape) for x in jax.tree.leaves(trainable))),
               "total_params": int(sum(np.prod(x.shape) for x in jax.tree.leaves((trainable, frozen)))),
               "interrupted": bool(stop["sigterm"])}
    if c.eval.final and not stop["sigterm"]:
        summary["final_eval"] = run_eval(c, graphdef, trainable, frozen, tok, log, total_steps, workdir, final=True,
                                         progress=progress and lead)
    if lead:
        _write_json(os.path.join(workdir, "summary.json"), summary)
    log.close()
    return summary


def run_eval(c, graphdef, trainable, frozen, tok, log, step: int, workdir: str, *, final: bool,
             progress: bool = False) -> dict:
    from jaxft.eval.runner import EvalSettings, evaluate

    model = nnx.merge(graphdef, trainable, frozen)
    settings = EvalSettings(task=c.eval.task, split=c.eval.split, shots=c.eval.shots, template=c.eval.template,
                            limit=c.eval.final_limit if final else c.eval.limit, batch_size=c.eval.batch_size,
                            max_new_tokens=c.eval.max_new_tokens, data_dir=c.data.data_dir or None, seed=c.seed)
    out = os.path.join(workdir, "eval", c.eval.task if final else f"{c.eval.task}_step{step}")
    from jaxft.train.config import weights_fingerprint

    # Resumes an evaluation this run was killed in; one of other weights or settings is redone.
    metrics = evaluate(model, tok, settings, output_dir=out, write=jax.process_index() == 0, model_name=c.model,
                       progress=progress, if_changed="restart",
                       identity={"config_sha256": weights_fingerprint(c), "step": step})
    log.scalars({"step": step, "exact_match": metrics["exact_match"], "n": metrics["n"],
                 "tokens_per_second": metrics["tokens_per_second"]}, prefix="eval_final" if final else "eval")
    return {k: metrics[k] for k in ("task", "n", "correct", "exact_match", "ci95")}
