"""Forward pass of SmolLM2-135M-Instruct, batch 8 x 256, float32: jaxft (jitted) vs transformers (torch).

Both load the same GGUF file and run side by side in one process; the last line is the ratio.
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from common import machine_line, median_seconds, torch_reference


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    import torch

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
    t_jax = median_seconds(lambda: forward(state, x).block_until_ready(), 2, args.repeats)

    ref = torch_reference(path)
    xt = torch.tensor(ids, dtype=torch.long)

    def torch_forward():
        with torch.inference_mode():
            ref(xt).logits

    t_torch = median_seconds(torch_forward, 2, args.repeats)
    tokens = args.batch * args.seq
    print(machine_line(torch))
    print(f"jaxft       : {t_jax * 1000:8.1f} ms/forward  {tokens / t_jax:9.0f} tokens/s")
    print(f"transformers: {t_torch * 1000:8.1f} ms/forward  {tokens / t_torch:9.0f} tokens/s")
    print(f"forward jaxft/torch speedup: {t_torch / t_jax:.2f}")


if __name__ == "__main__":
    main()
