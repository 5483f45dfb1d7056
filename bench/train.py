"""Tokens/s (and MFU where the device has a known peak) of the real train loop for Full FT, LoRA
and DoRA on SmolLM2-135M-Instruct, one run each in this process, side by side.

CPU default: float32, batch 4 x 256 packed tokens, 5 steps (the first, with compilation, is not
timed). On a GPU: `--dtype=bfloat16 --seq_len=2048 --batch=16 --model=smollm2-360m` etc.
"""

import argparse
import os
import platform
import tempfile

import jax


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m-instruct-q4")
    ap.add_argument("--methods", default="full,lora,dora")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq_len", type=int, default=256)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--remat", default="none")
    args = ap.parse_args()

    from jaxft.jsonl import read_jsonl
    from jaxft.rundir import RunDir
    from jaxft.train.config import load_config_file
    from jaxft.train.loop import train

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    results = {}
    for method in args.methods.split(","):
        c = load_config_file(os.path.join(root, "configs", "quickstart.py"))
        c.model, c.method, c.compute_dtype, c.remat = args.model, method, args.dtype, args.remat
        c.global_batch_size, c.data.seq_len, c.total_steps = args.batch, args.seq_len, args.steps
        c.checkpoint_every_steps, c.eval.final = 10_000, False
        c.data.limit = max(64, args.batch * args.steps * 2)
        with tempfile.TemporaryDirectory() as w:
            summary = train(c, w, progress=False)
            rows = read_jsonl(RunDir(w).metrics)
        mfu = [r["mfu"] for r in rows[1:] if r["mfu"] is not None]
        results[method] = (summary["tokens_per_second"], sum(mfu) / len(mfu) if mfu else None)
    print(f"machine: {platform.machine()} {os.cpu_count()} cpus, jax {jax.__version__} ({jax.devices()[0].device_kind})")
    print(f"model {args.model}, batch {args.batch} x {args.seq_len}, {args.dtype}, {args.steps} steps (first untimed)")
    for method, (tps, mfu) in results.items():
        print(f"{method:5s}: {tps:9.1f} tokens/s   MFU {'n/a' if mfu is None else f'{100 * mfu:.1f}%'}")
    if "full" in results:
        print(" ".join(f"{m}/full={results[m][0] / results['full'][0]:.2f}" for m in results if m != "full"))


if __name__ == "__main__":
    main()
