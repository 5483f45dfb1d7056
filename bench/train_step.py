"""Train-step throughput: jaxft Full FT / LoRA / DoRA against torch + PEFT on SmolLM2-135M-Instruct.

One step = forward + backward + AdamW update (clip 1.0, decay on matrices), batch 8 x 256 tokens,
float32 on CPU. Each row: warm-up steps, then the median of timed steps; jaxft's compile time is
reported apart. Adapter dropout defaults to 0 on both sides: with dropout PEFT's DoRA recomputes
W·dropout(x), a second full-size matmul per layer that any exact port must do too.

jaxft runs the step as the CPU configs do (configs/grid_smollm2_cpu.py: micro_batch_size=2): the
8 rows as 4 accumulated micro-steps of 2 rows inside the one jitted step, which keeps every
activation buffer small enough to be reused instead of freshly allocated and faulted in (system
time). Same tokens and same objective per optimizer step as torch's single pass over 8 rows;
`--micro-batch 0` runs jaxft in one pass too.

    python bench/train_step.py [--warmup 1 --steps 3 --dropout 0.0 --micro-batch 2 --only jaxft|torch
                                --loss-impl chunked|dense --methods full,lora,dora]

Last line: `lora/full=X.XX dora/full=X.XX jaxft_lora/peft_lora=X.XX` (ratios of tokens/s; the
first two within jaxft).
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time

import numpy as np

from common import LORA_ALPHA, LORA_R, compiled_train_step, torch_peft_step

from jaxft.peft.methods import METHODS

MODEL = "smollm2-135m-instruct-q4"


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--r", type=int, default=LORA_R)
    p.add_argument("--alpha", type=float, default=LORA_ALPHA)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--only", choices=("jaxft", "torch"), default=None)
    p.add_argument("--micro-batch", type=int, default=2,
                   help="jaxft rows per accumulated micro-step (0: the whole batch in one pass)")
    p.add_argument("--loss-impl", choices=("chunked", "dense"), default="chunked",
                   help="jaxft's loss: fused LM head + cross-entropy in chunks, or the full logits")
    args = p.parse_args()
    if args.micro_batch < 0 or (args.micro_batch and args.batch % args.micro_batch):
        p.error(f"--micro-batch {args.micro_batch} must be 0 or divide --batch {args.batch}")
    return args


def make_batch(vocab: int, batch: int, seq: int) -> dict[str, np.ndarray]:
    ids = np.random.default_rng(0).integers(0, vocab, (batch, seq + 1)).astype(np.int32)
    return {"input_ids": ids[:, :-1], "targets": ids[:, 1:], "attention_mask": np.ones((batch, seq), np.int32),
            "loss_mask": np.ones((batch, seq), np.float32)}


def timed(step, warmup: int, steps: int) -> tuple[float, float]:
    """Median wall and median process-CPU seconds of `steps` calls after `warmup` calls.

    `step()` must block until done. CPU seconds (all threads) are far less disturbed than wall time
    when other jobs share the cores, so they are printed next to it.
    """
    for _ in range(warmup):
        step()
    wall, cpu = [], []
    for _ in range(steps):
        t, c = time.perf_counter(), time.process_time()
        step()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return statistics.median(wall), statistics.median(cpu)


def bench_jaxft(args, methods) -> dict[str, tuple[float, float, float]]:
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from jaxft.models import load_model
    from jaxft.peft import apply_peft, split_params
    t = time.perf_counter()
    base, _ = load_model(MODEL)
    print(f"jaxft: loaded {MODEL} in {time.perf_counter() - t:.1f}s", flush=True)
    base_graphdef, base_state = nnx.split(base)
    accum = args.batch // args.micro_batch if args.micro_batch else 1
    batch = {k: jnp.asarray(v.reshape(accum, -1, *v.shape[1:]) if accum > 1 else v)
             for k, v in make_batch(base.config.vocab_size, args.batch, args.seq).items()}
    out = {}
    for method in methods:
        model = apply_peft(nnx.merge(base_graphdef, base_state), method, r=args.r, alpha=args.alpha,
                           dropout=args.dropout)
        graphdef, trainable, frozen = split_params(model, method)
        trainable = jax.tree.map(jnp.copy, trainable)  # donated by the step; keep the base intact
        one, compile_s = compiled_train_step(graphdef, trainable, frozen, batch, args.dropout > 0 and method != "full",
                                             loss_impl=args.loss_impl, accum_steps=accum)
        out[method] = (*timed(one, args.warmup, args.steps), compile_s)
        print(f"jaxft {method}: {out[method][0]:.2f}s/step (cpu {out[method][1]:.2f}s, compile {compile_s:.1f}s)",
              flush=True)
        del model, trainable, frozen, one
    return out


def bench_torch(args, methods) -> dict[str, tuple[float, float, float]]:
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    from jaxft.models.registry import gguf_package_file

    torch.set_num_threads(os.cpu_count() or 1)
    hf_logging.disable_progress_bar()
    path = gguf_package_file(MODEL)
    t = time.perf_counter()
    base = AutoModelForCausalLM.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path),
                                                dtype=torch.float32)
    print(f"torch: loaded {MODEL} in {time.perf_counter() - t:.1f}s", flush=True)
    data = {k: torch.from_numpy(v) for k, v in make_batch(base.config.vocab_size, args.batch, args.seq).items()}
    ids, targets = data["input_ids"].long(), data["targets"].long()
    out = {}
    for method in methods:
        one = torch_peft_step(copy.deepcopy(base), method, ids, targets, attention_mask=data["attention_mask"],
                              r=args.r, alpha=args.alpha, dropout=args.dropout)
        out[method] = (*timed(one, args.warmup, args.steps), 0.0)
        print(f"torch {method}: {out[method][0]:.2f}s/step (cpu {out[method][1]:.2f}s)", flush=True)
        del one
    return out


def main():
    args = parse_args()
    os.environ.setdefault("TQDM_DISABLE", "1")  # transformers' GGUF de-quantisation progress bar
    methods = [m for m in args.methods.split(",") if m]
    tokens = args.batch * args.seq
    rows = {}
    if args.only != "torch":
        rows["jaxft"] = bench_jaxft(args, methods)
    if args.only != "jaxft":
        rows["torch+peft"] = bench_torch(args, methods)
    print(f"\nbatch {args.batch}x{args.seq} float32, dropout {args.dropout}, r={args.r}, "
          f"jaxft loss {args.loss_impl}, jaxft micro-batch {args.micro_batch or args.batch} rows, median of {args.steps} steps after {args.warmup} warm-up")
    print(f"{'framework':<11} {'method':<6} {'s/step':>8} {'tokens/s':>9} {'cpu_s/step':>11} {'compile_s':>10}")
    tps = {}
    for fw, res in rows.items():
        for method, (sec, cpu, comp) in res.items():
            tps[fw, method] = tokens / sec
            print(f"{fw:<11} {method:<6} {sec:>8.2f} {tokens / sec:>9.1f} {cpu:>11.2f} {comp:>10.1f}")

    def ratio(a, b):
        return f"{tps[a] / tps[b]:.2f}" if a in tps and b in tps else "n/a"

    print(f"lora/full={ratio(('jaxft', 'lora'), ('jaxft', 'full'))} "
          f"dora/full={ratio(('jaxft', 'dora'), ('jaxft', 'full'))} "
          f"jaxft_lora/peft_lora={ratio(('jaxft', 'lora'), ('torch+peft', 'lora'))}")


if __name__ == "__main__":
    main()
