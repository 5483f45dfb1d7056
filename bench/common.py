"""Helpers shared by the benchmark scripts (`python bench/X.py` puts bench/ on sys.path, so they
`from common import ...`)."""

import os
import platform
import statistics
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
    once and blocks, carrying parameters and optimizer state (both donated) from call to call.
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
