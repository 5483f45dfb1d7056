"""Hessian-vector product cost vs one gradient, and Lanczos top-k time, for SmolLM2-135M-Instruct.

--batch x --seq GSM8K tokens (LM loss on every token), all parameters analysed, float32, fed as
micro-batches of --micro_batch rows (equal token counts, so the HVP equals the full batch's; an
8 x 256 forward-over-reverse HVP in one piece needs ~15 GB on CPU). The Lanczos basis lives in host
RAM (--steps x P x 4 bytes; 20 x 134.5M x 4 = 10.8 GB), or memory-mapped under --basis_dir.
"""

import argparse
import resource
import time

import jax
import numpy as np

from common import grad_hvp_seconds, machine_line


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m-instruct-q4")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--steps", type=int, default=20, help="Lanczos steps")
    ap.add_argument("--subset", default="all")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--micro_batch", type=int, default=1, help="rows per micro-batch")
    ap.add_argument("--basis_dir", default=None, help="memory-map the Lanczos basis to a file here")
    ap.add_argument("--device_basis", action="store_true", help="keep the basis on the device instead")
    args = ap.parse_args()

    from jaxft.analysis import hessian as H
    from jaxft.analysis.batches import gsm8k_texts, text_batches
    from jaxft.models import load_model

    t0 = time.perf_counter()
    model, tokenizer = load_model(args.model)
    t_load = time.perf_counter() - t0
    if args.batch % args.micro_batch:
        raise SystemExit(f"--batch={args.batch} is not a multiple of --micro_batch={args.micro_batch}")
    batches = text_batches(gsm8k_texts(limit=400), tokenizer, args.micro_batch, args.seq,
                           args.batch // args.micro_batch)
    problem = H.hessian_problem(model, batches, args.subset)
    p = problem.num_params
    print(machine_line())
    print(f"model {args.model}: {p / 1e6:.1f}M analysed parameters ({args.subset}), loaded in {t_load:.1f}s; "
          f"{args.batch} x {args.seq} tokens as {len(batches)} micro-batches of {args.micro_batch}, "
          f"loss {problem.loss():.4f}", flush=True)

    v = H.tree_random(jax.random.key(0), problem.params)
    t = grad_hvp_seconds(problem, v, args.repeats)
    t_grad, t_hvp, c_grad, c_hvp = t["grad_s"], t["hvp_s"], t["first_grad_s"], t["first_hvp_s"]
    print(f"gradient: {t_grad:8.2f} s   (first call incl. compile {c_grad:.1f} s)", flush=True)
    print(f"HVP     : {t_hvp:8.2f} s   (first call incl. compile {c_hvp:.1f} s)")
    print(f"HVP / gradient cost: {t_hvp / t_grad:.2f}", flush=True)

    basis_gb = args.steps * p * 4 / 1e9
    where = "device" if args.device_basis else f"a file in {args.basis_dir}" if args.basis_dir else "host RAM"
    print(f"Lanczos: {args.steps} steps, full reorthogonalisation, basis on {where} ({basis_gb:.1f} GB)")
    calls = []

    def hvp_with_progress(v):  # a Lanczos step is one HVP plus reorthogonalisation
        out = jax.block_until_ready(problem.hvp(v))
        calls.append(time.perf_counter())
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
        print(f"  step {len(calls):3d} at {calls[-1] - t0:7.1f} s (peak RSS {rss:.1f} GB)", flush=True)
        return out

    t0 = time.perf_counter()
    top = H.lanczos_top_k(hvp_with_progress, problem.params, k=args.k, m=args.steps,
                          basis_on_host=not args.device_basis, basis_dir=args.basis_dir)
    t_lanczos = time.perf_counter() - t0
    print(f"top-{args.k} eigenvalues: {np.array2string(top.values, precision=4)}")
    print(f"residual bounds      : {np.array2string(top.residuals, precision=2)}")
    print(f"Lanczos top-{args.k}: {t_lanczos:.1f} s ({top.matvecs} HVPs, {t_lanczos / top.matvecs:.2f} s/step, "
          f"{t_lanczos / top.matvecs - t_hvp:.2f} s/step beyond the HVP)")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(f"peak host RSS: {peak:.1f} GB")


if __name__ == "__main__":
    main()
