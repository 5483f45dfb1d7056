"""The train loop: build everything from a config (jaxft.run_setup), resume if the workdir holds a
checkpoint, step, log one step late (the device never waits for the host), checkpoint, evaluate.

`train` reads as its parts: `start_workdir` (resolve "auto"), `prepare_data` (tokenise, plan the
steps, pick an "auto" micro-batch), `record_config`, `init_state` (shard, build the step) and
`restore`, `run_steps` (the loop, with its checkpoint and evaluation hooks; metrics through
telemetry.StepLogger), `summarize`.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import time
from typing import Any, Callable

import jax
import numpy as np
import optax
from flax import nnx

from jaxft import rundir
from jaxft.train import checkpoint as ckpt_lib
from jaxft.train import sharding as shard_lib
from jaxft.train.telemetry import MetricsLog, NonFiniteError, StepLogger, train_flops_per_token

__all__ = ["NonFiniteError", "TrainHooks", "make_schedule", "train", "run_eval"]


@dataclasses.dataclass(frozen=True)
class TrainHooks:
    """What only tests set, as an argument of `train` (never a config key or an environment variable)."""
    log_examples: bool = False  # each metrics row lists its step's example ids
    kill_after_save: int = 0  # SIGKILL this process right after the checkpoint of this step is written
    poison_steps: frozenset[int] = frozenset()  # 1-based steps whose loss is made NaN (the skip logic)


def make_schedule(c, total_steps: int) -> optax.Schedule:
    warmup = int(round(c.optim.warmup_ratio * total_steps))
    peak = c.optim.learning_rate
    if c.optim.schedule == "constant":
        return optax.join_schedules([optax.linear_schedule(peak / max(warmup, 1), peak, max(warmup, 1)),
                                     optax.constant_schedule(peak)],
                                    [max(warmup, 1)])
    # The first update already uses peak/warmup: a warmup starting at exactly 0 wastes a step.
    warmup = max(warmup, 1)  # optax needs decay_steps > warmup_steps, also for a one-step run
    return optax.warmup_cosine_decay_schedule(peak / warmup, peak, warmup, max(total_steps, warmup + 1),
                                              end_value=peak * c.optim.final_lr_ratio)


def start_workdir(c, workdir: str, lead: bool):
    """Resolve "auto" for this host before any weight loads (a run that cannot fit is refused here;
    micro_batch_size "auto" waits for the data's rows, `prepare_data`); returns the memory measured."""
    from jaxft.train.auto import resolve_for_this_host, this_host_memory

    memory = this_host_memory(c)
    for line in resolve_for_this_host(c, memory=memory, micro=False):
        if lead:
            print(line, flush=True)
    os.makedirs(workdir, exist_ok=True)
    return memory


def record_config(c, workdir: str, lead: bool) -> None:
    """The config that runs, every "auto" resolved, before the first step."""
    from jaxft.train.config import config_to_json

    if lead:
        rundir.write_config(workdir, config_to_json(c))


@dataclasses.dataclass(frozen=True)
class TrainData:
    tokset: Any  # jaxft.data.pipeline.TokenizedSet: the kept records and what was dropped
    plan: Any  # jaxft.data.pipeline.StepPlan: which examples, in how many rows, each step
    lay: Any  # jaxft.train.batch_layout.BatchLayout: those rows over devices and micro-steps


def prepare_data(c, tok, shards: int, memory=None, lead: bool = True) -> TrainData:
    """Tokenise and plan the steps; micro_batch_size "auto" is picked here, from the plan's rows and the
    `memory` start_workdir measured."""
    from jaxft.data.pipeline import StepPlan, tokenize_examples
    from jaxft.data.tasks import load_task
    from jaxft.run_setup import batch_layout
    from jaxft.train.auto import resolve_for_this_host
    from jaxft.train.batch_layout import AUTO, configured_rows, row_multiple

    examples = load_task(c.data.task, c.data.split, data_dir=c.data.data_dir or None, limit=c.data.limit or None,
                         seed=c.seed)
    tokset = tokenize_examples(examples, tok, seq_len=c.data.seq_len, template=c.data.template)
    plan = StepPlan([len(r["tokens"]) for r in tokset.records], batch_size=c.global_batch_size,
                    seq_len=c.data.seq_len, seed=c.data.shuffle_seed, total_steps=c.total_steps,
                    num_epochs=c.data.num_epochs, packing=c.data.packing,
                    rows_per_step=configured_rows(c),
                    row_multiple=row_multiple(c.micro_batch_size, shards, jax.process_count()))
    if c.micro_batch_size == AUTO:
        for line in resolve_for_this_host(c, memory=memory, rows=plan.rows):
            if lead:
                print(line, flush=True)
    return TrainData(tokset, plan, batch_layout(c, shards, plan.rows))


def report_data(c, data: TrainData, workdir: str) -> None:
    """data_stats.json and a line on what the steps hold (the lead process)."""
    tokset, plan = data.tokset, data.plan
    rundir.write_json(rundir.RunDir(workdir).data_stats, {
        "examples": tokset.num_examples, "kept": len(tokset.records),
        "dropped_no_answer_tokens": tokset.dropped_no_answer, "truncated": tokset.truncated,
        "seq_len": c.data.seq_len, "packing": c.data.packing, "examples_per_step": c.global_batch_size,
        "rows_per_step": plan.rows, "steps_per_epoch": plan.steps_per_epoch, "total_steps": plan.total_steps,
        "padding_fraction": plan.padding_fraction, "accum_steps": data.lay.accum})
    print(f"data: {len(tokset.records)} examples, {c.global_batch_size} per step in {plan.rows} rows of "
          f"{c.data.seq_len} tokens ({100 * plan.padding_fraction:.1f}% padding), {plan.steps_per_epoch} "
          f"steps per epoch, {plan.total_steps} steps", flush=True)
    if tokset.dropped_no_answer:
        print(f"data: dropped {tokset.dropped_no_answer} of {tokset.num_examples} examples left with no "
              f"answer tokens after truncation to {c.data.seq_len}")


@dataclasses.dataclass
class TrainState:
    graphdef: Any
    trainable: Any
    frozen: Any
    opt_state: Any
    step_fn: Callable  # jit(step)(trainable, frozen, opt_state, batch, rng)
    batch_sharding: Any
    schedule: optax.Schedule
    start: int = 0  # steps already done (restored)


def init_state(c, parts, data: TrainData) -> TrainState:
    """Parameters and optimizer state laid out over the mesh, and the jitted step for them."""
    from jaxft.peft import split_params
    from jaxft.train.optim import make_optimizer
    from jaxft.train.step import make_train_step

    mesh, accum = parts.mesh, data.lay.accum
    graphdef, trainable, frozen = split_params(parts.model, c.method)
    t_shard, f_shard = shard_lib.param_shardings(mesh, trainable), shard_lib.param_shardings(mesh, frozen)
    trainable, frozen = jax.device_put(trainable, t_shard), jax.device_put(frozen, f_shard)
    schedule = make_schedule(c, data.plan.total_steps)
    optimizer = make_optimizer(schedule, weight_decay=c.optim.weight_decay, b1=c.optim.b1, b2=c.optim.b2,
                               eps=c.optim.eps, grad_clip=c.optim.grad_clip)
    # Explicit layout: left to jit, scalar leaves (Adam's count) land on one device, which a
    # multi-process step refuses.
    o_shard = shard_lib.param_shardings(mesh, jax.eval_shape(optimizer.init, trainable))
    opt_state = jax.jit(optimizer.init, out_shardings=o_shard)(trainable)
    b_shard = shard_lib.batch_sharding(mesh, accumulated=accum > 1)
    step_fn = make_train_step(graphdef, optimizer, accum_steps=accum, loss_impl=c.loss_impl,
                              loss_chunk=c.loss_chunk, batch_shards=parts.shards,
                              in_shardings=(t_shard, f_shard, o_shard, b_shard, shard_lib.replicated(mesh)),
                              out_shardings=(t_shard, o_shard, shard_lib.replicated(mesh)))
    return TrainState(graphdef, trainable, frozen, opt_state, step_fn, b_shard, schedule)


def restore(state: TrainState, checkpointer, data_iter, lead: bool) -> list[dict]:
    """Resume from the newest checkpoint that verifies (broken newer ones are moved aside and their
    steps redone); returns one metrics event per step skipped that way."""
    restored = checkpointer.restore_newest_readable(
        ckpt_lib.abstract_like(state.trainable), ckpt_lib.abstract_like(state.opt_state),
        log=(lambda line: print(line, flush=True)) if lead else (lambda line: None))
    if restored is None:
        return []
    state.trainable, state.opt_state, state.start = restored.trainable, restored.opt_state, restored.step
    data_iter.set_state(restored.data_state)
    return list(restored.skipped)


def _device_batch(batch: dict, sharding) -> dict:
    if jax.process_count() > 1:
        return jax.make_array_from_process_local_data(sharding, batch)
    return jax.device_put(batch, sharding)


def run_steps(c, state: TrainState, data: TrainData, data_iter, checkpointer, logger: StepLogger, *,
              stop: dict, hooks: TrainHooks, after_step: Callable[[int], None]) -> int:
    """Steps from state.start to the plan's last (or the one SIGTERM arrived in); returns the last done.
    A checkpoint every c.checkpoint_every_steps, at the end and on SIGTERM; `after_step(done)` after each."""
    from jaxft.train.batch_layout import for_step

    total = data.plan.total_steps
    dropout_key = jax.random.fold_in(jax.random.key(c.seed), 1)
    completed = state.start
    for step in range(state.start, total):
        batch, info = next(data_iter)
        if step + 1 in hooks.poison_steps:  # a NaN loss at chosen steps exercises the skip logic
            batch["loss_mask"] = batch["loss_mask"] * np.float32("nan")
        batch = _device_batch(for_step(batch, data.lay), state.batch_sharding)
        rng = jax.random.fold_in(dropout_key, step) if c.method != "full" and c.peft.dropout > 0 else None
        state.trainable, state.opt_state, metrics = state.step_fn(state.trainable, state.frozen, state.opt_state,
                                                                  batch, rng)
        completed = step + 1
        logger.push(completed, metrics, info)
        if completed % c.checkpoint_every_steps == 0 or stop["sigterm"] or completed == total:
            logger.flush()
            checkpointer.save(completed, state.trainable, state.opt_state, data_iter.get_state(),
                              {"method": c.method}, force=stop["sigterm"])
            if hooks.kill_after_save and completed == hooks.kill_after_save:
                checkpointer.wait()
                os.kill(os.getpid(), signal.SIGKILL)
        after_step(completed)
        if stop["sigterm"]:
            break
    logger.flush()
    checkpointer.wait()
    return completed


def summarize(c, state: TrainState, data: TrainData, logger: StepLogger, completed: int, seconds: float,
              interrupted: bool) -> dict:
    plan = data.plan
    run_examples, run_tokens = plan.seen(completed)

    def count(tree) -> int:
        return int(sum(np.prod(x.shape) for x in jax.tree.leaves(tree)))

    return {"steps": plan.total_steps, "completed_steps": completed, "runtime_seconds": seconds,
            "method": c.method, "examples": run_examples, "tokens": run_tokens,
            "epochs": plan.epoch_progress(completed), "examples_per_step": c.global_batch_size,
            "rows_per_step": plan.rows, **logger.throughput(), "trainable_params": count(state.trainable),
            "total_params": count((state.trainable, state.frozen)), "interrupted": interrupted}


def train(c, workdir: str, *, progress: bool = True, hooks: TrainHooks | None = None) -> dict:
    """Run (or resume) the experiment `c` in `workdir`; returns the run summary."""
    from tqdm import tqdm

    from jaxft.data.pipeline import make_dataset
    from jaxft.run_setup import build

    hooks, lead, paths = hooks or TrainHooks(), jax.process_index() == 0, rundir.RunDir(workdir)
    memory = start_workdir(c, workdir, lead)
    parts = build(c)
    tok, model_cfg = parts.tokenizer, parts.model.config
    data = prepare_data(c, tok, parts.shards, memory, lead)
    record_config(c, workdir, lead)
    state = init_state(c, parts, data)
    del parts  # the unsharded weights
    data_iter = iter(make_dataset(data.tokset.records, data.plan, process_index=jax.process_index(),
                                  process_count=jax.process_count()))
    checkpointer = ckpt_lib.Checkpointer(paths.checkpoints, keep=c.keep_checkpoints)
    skipped = restore(state, checkpointer, data_iter, lead)
    log = MetricsLog(workdir, resume_step=state.start, enabled=lead, config=c)
    for event in skipped:
        log.event(event)
    if lead:
        report_data(c, data, workdir)
    total = data.plan.total_steps

    def after_step(done: int) -> None:  # the evaluation hook
        if c.eval.every_steps and done % c.eval.every_steps == 0 and done < total:
            run_eval(c, state.graphdef, state.trainable, state.frozen, tok, log, done, workdir, final=False)

    stop = {"sigterm": False}
    previous_handler = signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__("sigterm", True))
    bar = tqdm(total=total, initial=state.start, desc="train", disable=not (progress and lead), unit="step")
    t_start = time.perf_counter()
    logger = StepLogger(c, log, schedule=state.schedule, rows=data.plan.rows, accum=data.lay.accum,
                        flops_per_token=train_flops_per_token(model_cfg, c.method, c.data.seq_len),
                        start=state.start, workdir=workdir, record_examples=hooks.log_examples, bar=bar)
    try:
        completed = run_steps(c, state, data, data_iter, checkpointer, logger, stop=stop, hooks=hooks,
                              after_step=after_step)
    finally:
        bar.close()
        signal.signal(signal.SIGTERM, previous_handler)
        checkpointer.close()
    summary = summarize(c, state, data, logger, completed, time.perf_counter() - t_start, stop["sigterm"])
    if c.eval.final and not stop["sigterm"]:
        summary["final_eval"] = run_eval(c, state.graphdef, state.trainable, state.frozen, tok, log, total, workdir,
                                         final=True, progress=progress and lead)
    if lead:
        rundir.write_json(paths.summary, summary)
    log.close()
    return summary


def run_eval(c, graphdef, trainable, frozen, tok, log, step: int, workdir: str, *, final: bool,
             progress: bool = False) -> dict:
    from jaxft.eval.runner import evaluate
    from jaxft.eval.settings import eval_settings_from

    model = nnx.merge(graphdef, trainable, frozen)
    settings = eval_settings_from(c.eval, limit=c.eval.final_limit if final else c.eval.limit,
                                  data_dir=c.data.data_dir, seed=c.seed)
    out = rundir.RunDir(workdir).eval_dir(c.eval.task, None if final else step)
    from jaxft.train.config import weights_fingerprint

    # Resumes an evaluation this run was killed in; one of other weights or settings is redone.
    metrics = evaluate(model, tok, settings, output_dir=out, write=jax.process_index() == 0, model_name=c.model,
                       progress=progress, if_changed="restart", trained_template=c.data.template,
                       identity={"config_sha256": weights_fingerprint(c), "step": step})
    log.scalars({"step": step, "exact_match": metrics["exact_match"], "n": metrics["n"],
                 "tokens_per_second": metrics["tokens_per_second"]}, prefix="eval_final" if final else "eval")
    return {k: metrics[k] for k in ("task", "n", "correct", "exact_match", "ci95")}
