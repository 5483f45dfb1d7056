"""Forward pass of SmolLM2-135M-Instruct, batch 8 x 256, float32: jaxft (jitted) vs transformers (torch).

Both load the same GGUF file and run side by side in one process; the last line is the ratio.
"""

import argparse
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx


def _median_seconds(fn, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    import torch
    from transformers import AutoModelForCausalLM

    from jaxft.models import load_model
    from jaxft.models.registry import gguf_package_file

    path = gguf_package_file("smollm2-135m-instruct-q4")
    model, _ = load_model(path)
    ids = np.random.RandomState(0).randint(0, model.config.vocab_size, (args.batch, args.seq)).astype(np.int32)

    graphdef, state = nnx.split(model)

    @jax.jit
    def forward(state, ids):
        return nnx.merge(graphdef, state)(ids)

    x = jnp.asarray(ids)
    t_jax = _median_seconds(lambda: forward(state, x).block_until_ready(), 2, args.repeats)

    ref = AutoModelForCausalLM.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path),
                                               dtype=torch.float32).eval()
    xt = torch.tensor(ids, dtype=torch.long)

    def torch_forward():
        with torch.inference_mode():
            ref(xt).logits

    t_torch = _median_seconds(torch_forward, 2, args.repeats)
    tokens = args.batch * args.seq
    print(f"machine: {platform.machine()} {os.cpu_count()} cpus, jax {jax.__version__} "
          f"({jax.default_backend()}), torch {torch.__version__} ({torch.get_num_threads()} threads)")
    print(f"jaxft       : {t_jax * 1000:8.1f} ms/forward  {tokens / t_jax:9.0f} tokens/s")
    print(f"transformers: {t_torch * 1000:8.1f} ms/forward  {tokens / t_torch:9.0f} tokens/s")
    print(f"forward jaxft/torch speedup: {t_torch / t_jax:.2f}")


if __name__ == "__main__":
    main()
