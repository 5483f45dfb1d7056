"""Helpers shared by the benchmark scripts (`python bench/X.py` puts bench/ on sys.path, so they
`from common import ...`)."""

import os
import platform
import statistics
import time

import jax


def median_seconds(fn, warmup: int, repeats: int) -> float:
    """Median wall seconds of `repeats` calls of `fn` after `warmup` untimed ones; `fn` must block until done."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def machine_line(torch=None) -> str:
    """`machine: ...` line: CPU, jax version and backend, and torch's version and threads when given the module."""
    line = f"machine: {platform.machine()} {os.cpu_count()} cpus, jax {jax.__version__} ({jax.default_backend()})"
    if torch is not None:
        line += f", torch {torch.__version__} ({torch.get_num_threads()} threads)"
    return line


def torch_reference(path: str):
    """The transformers model (float32, eval mode) loaded from the same GGUF file as jaxft's."""
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path),
                                                dtype=torch.float32).eval()
