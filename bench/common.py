"""Helpers shared by the benchmark scripts (`python bench/X.py` puts bench/ on sys.path, so they
`from common import ...`)."""

import json
import os
import platform
import statistics
import subprocess
import sys
import time

import jax


def call_seconds(fn, warmup: int, repeats: int) -> list[float]:
    """Wall seconds of each of `repeats` calls of `fn` after `warmup` untimed ones; `fn` must block until done."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def median_seconds(fn, warmup: int, repeats: int) -> float:
    return statistics.median(call_seconds(fn, warmup, repeats))


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


def compiled_train_step(graphdef, trainable, frozen, batch, use_rng: bool, loss_impl: str = "chunked",
                        accum_steps: int = 1):
    """jaxft's train step (AdamW, lr 1e-5) compiled ahead for these inputs, and `one()`, which runs it
    once and blocks, carrying parameters and optimizer state (both donated) from call to call, and
    returns the step's metrics.
    `loss_impl`: "chunked" (the default, fused LM head + cross-entropy) or "dense" (full logits).
    `accum_steps` > 1: batch leaves are [accum_steps, micro, ...], gradients summed over micro-steps.
    Returns (one, compile seconds)."""
    from jaxft.train.optim import make_optimizer
    from jaxft.train.step import make_train_step

    opt = make_optimizer(1e-5)
    opt_state = opt.init(trainable)
    t = time.perf_counter()
    rng = jax.random.key(0) if use_rng else None
    step = make_train_step(graphdef, opt, loss_impl=loss_impl, accum_steps=accum_steps).lower(trainable, frozen, opt_state, batch, rng).compile()
    compile_s = time.perf_counter() - t
    carry = {"trainable": trainable, "opt_state": opt_state, "i": 0}

    def one():
        carry["i"] += 1
        key = jax.random.key(carry["i"]) if use_rng else None
        tr, st, metrics = step(carry["trainable"], frozen, carry["opt_state"], batch, key)
        jax.block_until_ready((tr, st, metrics))
        carry.update(trainable=tr, opt_state=st)
        return metrics

    return one, compile_s


def grad_hvp_seconds(problem, v, repeats: int) -> dict:
    """First call (with compilation) and median seconds of a HessianProblem's gradient and HVP."""
    out = {}
    for name, fn in (("grad", problem.grad), ("hvp", lambda: problem.hvp(v))):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        out[f"first_{name}_s"] = time.perf_counter() - t0
    for name, fn in (("grad", problem.grad), ("hvp", lambda: problem.hvp(v))):
        out[f"{name}_s"] = median_seconds(lambda: jax.block_until_ready(fn()), 0, repeats)
    return out


# The study's adapter protocol (configs/base.py): rank 8, alpha 32, on all seven projections.
LORA_R, LORA_ALPHA = 8, 32.0


def torch_peft_step(model, method: str, ids, targets, *, attention_mask=None, r: int = LORA_R,
                    alpha: float = LORA_ALPHA, dropout: float = 0.0, autocast_dtype=None, sync=None):
    """The torch + PEFT reference train step, as the study ran it: LoRA/DoRA adapters from `peft` on the
    seven projections (none for "full"), AdamW (lr 1e-5, weight decay 0.01 on matrices only), float32
    cross-entropy over every token, gradient clip 1.0. `autocast_dtype`: the forward under CUDA autocast
    (e.g. torch.bfloat16); `sync`: called after each step (torch.cuda.synchronize for honest timing).
    Returns `one()`, which runs one step; the (adapted) model trains in place."""
    import contextlib

    import peft
    import torch

    from jaxft.peft.methods import TARGETS

    if method != "full":
        model = peft.get_peft_model(model, peft.LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout,
                                                           target_modules=list(TARGETS), use_dora=method == "dora"))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": 0.01},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=1e-5, betas=(0.9, 0.999), eps=1e-8)

    def one():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=autocast_dtype) if autocast_dtype else contextlib.nullcontext():
            logits = model(input_ids=ids, attention_mask=attention_mask).logits
        loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if sync is not None:
            sync()

    return one


def random_batch(vocab: int, batch: int, seq: int, seed: int = 0) -> dict:
    """Uniform random tokens as a train batch (numpy): next-token targets, every position counted.
    No attention_mask: rows without padding, so fused attention takes its causal fast path."""
    import numpy as np

    ids = np.random.default_rng(seed).integers(0, vocab, (batch, seq + 1)).astype(np.int32)
    return {"input_ids": ids[:, :-1], "targets": ids[:, 1:], "loss_mask": np.ones((batch, seq), np.float32)}


def jax_peak_bytes() -> int | None:
    """The device's peak bytes in use so far in this process (None where the runtime keeps no count, as
    on CPU). Never reset: one case per process for a per-case peak (`run_isolated`)."""
    stats = jax.devices()[0].memory_stats() or {}
    return stats.get("peak_bytes_in_use")


def decode_prompts(vocab: int, batch: int, prompt: int, seed: int = 0) -> list[list[int]]:
    import numpy as np

    return np.random.default_rng(seed).integers(3, vocab, (batch, prompt)).tolist()


def jaxft_decode(model, batch: int, prompt: int, new: int) -> dict:
    """jaxft's greedy decoding of `batch` random prompts as one static batch, every row exactly `new`
    tokens (no EOS, no shrinking: one compiled shape), compilation timed apart (warm_up)."""
    from jaxft.eval.generate import DecodeSettings, generate_ids, warm_up

    prompts = decode_prompts(model.config.vocab_size, batch, prompt)
    s = DecodeSettings(max_new_tokens=new, batch_size=batch, refill=batch, chunk=new, shrink=False)
    compile_s = warm_up(model, prompts, s, eos_ids=[-1], pad_id=0)
    t = time.perf_counter()
    out = generate_ids(model, prompts, s, eos_ids=[-1], pad_id=0)
    sec = time.perf_counter() - t
    n = sum(len(r[0]) for r in out)
    return {"generated": n, "seconds": sec, "tokens_per_s": n / sec, "compile_s": compile_s}


def run_isolated(script: str, case: dict, timeout: float) -> dict:
    """`python script --case JSON` in a new process (its own device memory and peak; an out-of-memory
    or a crash ends that case only); the case prints one `RESULT {json}` line."""
    try:
        p = subprocess.run([sys.executable, script, "--case", json.dumps(case)], capture_output=True, text=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout:.0f}s"}
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
    return json.loads(lines[-1][7:]) if lines else {"error": (p.stderr or p.stdout)[-1500:]}


def random_model(cfg, *, dtype, param_dtype, seed: int = 0, **options):
    """jaxft's Transformer for `cfg` with random weights as HF initialises them (matrices N(0, 0.02),
    norm scales 1 or, for (1 + w) norms, 0; biases 0), filled through the weight loader's own builder
    (jaxft.models.params.build_from_tensors). Why not the model's own initialisers: eager or jitted
    whole, they compile for tens of seconds on a CPU. Here a CPU draws from numpy's generator (nothing
    to compile) and an accelerator makes one small jitted draw per distinct matrix shape.
    `options`: Transformer's scan_layers, remat, attention."""
    import functools

    import numpy as np

    from jaxft.models.params import abstract_model, build_from_tensors, flat_params

    shapes = {k: tuple(v.shape) for k, v in flat_params(abstract_model(cfg, dtype, param_dtype, **options)).items()}

    @functools.lru_cache(maxsize=None)
    def draw(shape):
        return jax.jit(lambda key: 0.02 * jax.random.normal(key, shape, param_dtype))

    index = {name: i for i, name in enumerate(sorted(shapes))}
    on_host = jax.default_backend() == "cpu"  # numpy's generator: no compilation at all

    def get(name: str):
        shape = shapes[name]
        if len(shape) >= 2 and on_host:
            return 0.02 * np.random.default_rng([seed, index[name]]).standard_normal(shape, np.float32)
        if len(shape) >= 2:
            return draw(shape)(jax.random.fold_in(jax.random.key(seed), index[name]))
        one = "norm" in name and cfg.norm_type != "rmsnorm_plus_one"
        return np.full(shape, 1.0 if one else 0.0, np.float32)

    return build_from_tensors(cfg, get, set(shapes), dtype=dtype, param_dtype=param_dtype,
                              source="random weights", **options)
