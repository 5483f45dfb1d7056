"""Train-step memory of the dense and the chunked (fused LM head + cross-entropy) loss, compile only.

Qwen2.5-0.5B's 151,936-word vocabulary makes the float32 logits the largest tensor of a step. The
weights stay abstract (jax.eval_shape), the step is lowered and compiled for the CPU and never run:
XLA's own accounting (memory_analysis) next to the planner's estimate of the same step.

    python bench/loss_memory.py [--model qwen2.5-0.5b --method full --batch 8 --seq 2048
                                 --remat full --attention chunked --compute-dtype float32 --loss-chunk 1024]

float32 compute by default, as tests/test_plan.py: XLA:CPU computes bfloat16 matmuls in float32, so
its bfloat16 figures are not what an accelerator would allocate.
"""

from __future__ import annotations

import argparse
import os
import time

from common import machine_line

from jaxft.peft.methods import METHODS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MiB = 2 ** 20


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="qwen2.5-0.5b")
    p.add_argument("--method", default="full", choices=METHODS)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=2048)
    p.add_argument("--remat", default="full", choices=("none", "dots", "full"))
    p.add_argument("--attention", default="chunked", choices=("xla", "dpa", "chunked"))
    p.add_argument("--compute-dtype", default="float32", choices=("float32", "bfloat16"))
    p.add_argument("--loss-chunk", type=int, default=None, help="default: the config's loss_chunk")
    p.add_argument("--impls", default="dense,chunked")
    return p.parse_args()


def make_config(a, loss_impl: str):
    from jaxft.train.config import load_config_file

    c = load_config_file(os.path.join(REPO, "configs", "qwen25_05b_full.py"))
    c.model, c.method = a.model, a.method
    c.remat, c.attention, c.scan_layers = a.remat, a.attention, True
    c.compute_dtype = a.compute_dtype
    c.data.seq_len, c.global_batch_size, c.micro_batch_size = a.seq, a.batch, 0
    c.peft.dropout = 0.0
    c.loss_impl = loss_impl
    if a.loss_chunk:
        c.loss_chunk = a.loss_chunk
    return c


def compiled_memory(c) -> tuple[dict, float]:
    """memory_analysis of the train step as the loop builds it, on abstract weights; (bytes, compile s)."""
    from jaxft.train.memory import compiled_memory as compiled

    t = time.perf_counter()
    got = compiled(c)
    return got, time.perf_counter() - t


def main():
    from jaxft.train import memory as mem

    a = parse_args()
    print(machine_line())
    print(f"{a.model} {a.method}, batch {a.batch} x seq {a.seq}, remat={a.remat}, attention={a.attention}, "
          f"compute {a.compute_dtype}, XLA:CPU compile only")
    rows = {}
    for impl in a.impls.split(","):
        c = make_config(a, impl)
        est = mem.estimate(mem.setup_from_config(c, 1))
        got, seconds = compiled_memory(c)
        rows[impl] = got
        chunk = f" (loss_chunk {c.loss_chunk})" if impl == "chunked" else ""
        print(f"{impl:8s}{chunk}: XLA temp {got['temp'] / MiB:9.1f} MiB, total {got['total'] / MiB:9.1f} MiB | "
              f"planner peak {est['peak'] / MiB:9.1f} MiB ({est['peak'] / got['total'] - 1:+.1%}), "
              f"logits term {est['logits'] / MiB:8.1f} MiB | compile {seconds:.0f} s", flush=True)
    if {"dense", "chunked"} <= rows.keys():
        d, ch = rows["dense"]["temp"], rows["chunked"]["temp"]
        print(f"temp dense/chunked={d / ch:.2f} ({(d - ch) / MiB:.0f} MiB less with the chunked loss)")


if __name__ == "__main__":
    main()
