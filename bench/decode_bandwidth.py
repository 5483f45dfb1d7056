"""Decoding against the memory-bandwidth limit (issue 17, item 6).

A decode step of a small model reads every weight once and each row's KV cache once, and does little
arithmetic per byte: its floor is bytes / memory bandwidth. This script measures the machine's
bandwidth with a STREAM-like copy (numpy and a jitted JAX copy of 1 GiB arrays; read + write counted),
then jaxft's greedy decode step of SmolLM2-135M-Instruct (float32, as `jaxft.eval` runs on CPU) at
batch 1, 8 and 32, and prints the step time as a multiple of the limit. Past a few rows a CPU
decode step stops being bandwidth-bound: its matmul FLOPs (2 x parameters x batch, plus attention
over the cache) at the machine's best float32 GEMM rate (a jitted 2048^3 matmul) are a second
floor, printed beside the first; the step is compared with the larger of the two.

Step time is a difference of two runs, (t(n2) - t(n1)) / (n2 - n1) new tokens, with EOS disabled and
static batches, so prefill, refills and host work outside the decode loop cancel. Two KV figures:
the live context (prompt + tokens so far, what an ideal kernel reads) and jaxft's static cache, which
is allocated at prompt + max_new_tokens + one chunk and read whole every step (masked).

    python bench/decode_bandwidth.py [--prompt 128 --n1 32 --n2 160]
"""

import argparse
import time

import numpy as np

from common import call_seconds, machine_line


def copy_bandwidth(gib: float = 1.0, repeats: int = 5) -> dict:
    """Bytes moved per second by the best of `repeats` copies (read + write), numpy and JAX."""
    import jax
    import jax.numpy as jnp

    n = int(gib * 2 ** 30) // 4
    a = np.random.default_rng(0).random(n, dtype=np.float32)
    b = np.empty_like(a)
    x = jnp.asarray(a)
    f = jax.jit(lambda v: v * 1.0001)  # a real read and write (a bare copy may be elided)
    return {"numpy copy": 2 * a.nbytes / min(call_seconds(lambda: np.copyto(b, a), 0, repeats)),
            "jax scale": 2 * a.nbytes / min(call_seconds(lambda: f(x).block_until_ready(), 1, repeats))}


def gemm_flops(n: int = 2048, repeats: int = 5) -> float:
    """Best float32 FLOP/s of a jitted n x n x n matmul: the compute floor's rate."""
    import jax
    import jax.numpy as jnp

    a = jnp.asarray(np.random.default_rng(0).random((n, n), dtype=np.float32))
    f = jax.jit(lambda x: x @ x)
    return 2 * n ** 3 / min(call_seconds(lambda: f(a).block_until_ready(), 1, repeats))


def decode_seconds(model, batch: int, prompt: int, new: int, pad: int) -> float:
    from jaxft.eval.generate import DecodeSettings, generate_ids, warm_up

    ids = [[(7 * r + 3 * i) % 1000 + 100 for i in range(prompt)] for r in range(batch)]
    s = DecodeSettings(max_new_tokens=new, batch_size=batch, refill=batch, shrink=False)
    warm_up(model, ids, s, eos_ids=[], pad_id=pad)
    t0 = time.perf_counter()
    out = generate_ids(model, ids, s, eos_ids=[], pad_id=pad)
    t = time.perf_counter() - t0
    assert all(len(r[0]) == new for r in out), "a row stopped early"
    return t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompt", type=int, default=128, help="prompt tokens per row")
    ap.add_argument("--n1", type=int, default=32)
    ap.add_argument("--n2", type=int, default=160)
    ap.add_argument("--batches", default="1,8,32")
    args = ap.parse_args()

    import jax
    from flax import nnx

    from jaxft.models import load_model
    from jaxft.models.registry import gguf_package_file

    print(machine_line())
    bw = copy_bandwidth()
    for name, v in bw.items():
        print(f"bandwidth {name:11s}: {v / 1e9:6.2f} GB/s")
    peak = max(bw.values())
    flops = gemm_flops()
    print(f"float32 GEMM (2048^3, jitted): {flops / 1e9:6.1f} GFLOP/s")
    model, tok = load_model(gguf_package_file("smollm2-135m-instruct-q4"))
    cfg = model.config
    weights = sum(x.nbytes for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
    item = np.dtype(model.dtype).itemsize
    kv_per_token = 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * cfg.head_dim * item
    print(f"weights {weights / 2 ** 20:.1f} MiB ({model.dtype}), KV cache {kv_per_token / 1024:.1f} KiB per token; "
          f"prompt {args.prompt}, steps timed {args.n1}..{args.n2}")
    params = weights // item  # tied head: the embedding matrix is the head's matmul
    print("| batch | step ms | tokens/s | live KV MiB | limit ms (live KV) | step / limit | static KV MiB | "
          "limit ms (static KV) | step / limit | compute floor ms | step / max(floors) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for b in (int(x) for x in args.batches.split(",")):
        t1 = decode_seconds(model, b, args.prompt, args.n1, tok.pad_token_id)
        t2 = decode_seconds(model, b, args.prompt, args.n2, tok.pad_token_id)
        step = (t2 - t1) / (args.n2 - args.n1)
        ctx = args.prompt + (args.n1 + args.n2) / 2  # mean context over the timed steps
        live = b * ctx * kv_per_token
        static = b * (-(-args.prompt // 32) * 32 + args.n2 + 32) * kv_per_token
        lim_live, lim_static = (weights + live) / peak, (weights + static) / peak
        # q.k and p.v over the live context: 2 dots x 2 FLOPs x heads x head_dim per cached token
        attn = 4 * cfg.num_hidden_layers * cfg.num_attention_heads * cfg.head_dim * ctx * b
        floor = (2 * params * b + attn) / flops
        print(f"| {b} | {1e3 * step:.1f} | {b / step:.0f} | {live / 2 ** 20:.1f} | {1e3 * lim_live:.1f} | "
              f"{step / lim_live:.2f} | {static / 2 ** 20:.1f} | {1e3 * lim_static:.1f} | {step / lim_static:.2f} | "
              f"{1e3 * floor:.1f} | {step / max(lim_live, floor):.2f} |")


if __name__ == "__main__":
    main()
