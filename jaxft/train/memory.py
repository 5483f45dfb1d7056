"""Per-device training memory in closed form: the one formula behind `python -m jaxft.plan`.

Why closed form: it answers "does Gemma-2B fit a v5e-8?" on a laptop, in a second, for any batch.
tests/test_plan.py holds it to XLA's compiled memory (memory_analysis) on CPU within 20%.

Bytes per device. b = per-device micro-batch, s = sequence length, c = compute-dtype bytes,
h/q/kv/i = hidden, query (heads*head_dim), key-value and MLP widths, nh = query heads, L = layers.

  parameters    every leaf in its storage dtype; a leaf that `sharding.param_spec` shards is / fsdp
  gradients     trainable leaves only (Full FT: all; LoRA/DoRA: adapters), same dtype and layout
  optimizer     the optimizer's own state (eval_shape of its init): AdamW mu + nu, same layout
  accumulator   one more gradient copy when micro-batches are accumulated
  scan stack    scan_layers stacks the layer weights for lax.scan every step: one copy of them
  fsdp gather   fsdp > 1: one layer's weights gathered in the compute dtype (+ their gradient in
                the storage dtype before the reduce-scatter, when they are trained)
  activations   what autodiff keeps per layer per token for the backward pass
                  none: 4h*4 + 4h*c  (two norms: float32 internals and outputs)
                        + (2q + 2kv + 6i)*c  (roped q/k, v, attention output, MLP intermediates)
                        + nh*s*(4 + c)  (float32 softmax numerator and the probabilities)
                        + LoRA: r per adapter, and the dropped-out input per adapter when dropout > 0
                        + DoRA: the adapted weight W + BA in float32 (its column norms are trained)
                        + once per layer, its weights cast to c (when c is not the storage dtype)
                  dots: the layer input and every projection output: (h + q + 2kv + 2h + 2i)*c
                  full: the layer input: h*c
                remat "full"/"dots" also hold one layer's "none" activations while it is recomputed.
                remat without scan_layers is counted as none: unrolled, the recomputations do not
                depend on the backward pass, and XLA may schedule them early (on CPU it does).
  logits        loss_impl "dense": 2*b*s*vocab*4: all tokens' float32 logits and their gradient
                loss_impl "chunked" (jaxft.train.lm_head_loss): one chunk's, 2*b*sc*vocab*4 with sc
                  positions per row (b*sc ~ loss_chunk tokens), + vocab*h*4 when the head is trained:
                  the float32 head gradient summed over chunks
  peak          parameters + optimizer + max(backward, update), where
                  backward = gradients + accumulator + scan stack + fsdp gather + activations
                             + max(logits, one layer's working set while it is recomputed)
                  update   = gradients + optimizer + trainable: the new moments and the update stay
                             live until the non-finite check decides whether to apply them.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any

import numpy as np

from jaxft.errors import ConfigError

GiB = 1024 ** 3
HEADROOM = 0.10  # allocator fragmentation, XLA scratch, the runtime itself

# HBM per device as JAX sees it; for v4/v5p the "-N" in the name counts TensorCores (2 per chip,
# one JAX device per chip), for v5e/v6e it counts chips.
ACCELERATORS = {"v5e": (16, 1), "v5litepod": (16, 1), "v6e": (32, 1), "v4": (32, 2), "v5p": (95, 2)}
# GiB per GPU; the 24/16 GB consumer and inference cards are where PEFT is said to make the
# difference (the study, section 6.3), so the planner knows them too.
GPUS = {"h100": 80, "h200": 141, "a100": 80, "a100_40g": 40, "rtx4090": 24, "rtx3090": 24, "l4": 24,
        "a10g": 24, "t4": 16}
REMATS = ("none", "dots", "full")


@dataclasses.dataclass(frozen=True)
class Hardware:
    name: str
    count: int
    bytes_per_device: int

    @property
    def usable(self) -> int:
        return int(self.bytes_per_device * (1 - HEADROOM))


def _host_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


_UNLIMITED = 1 << 60  # cgroup v1 writes "no limit" as a number near 2**63


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _meminfo(key: str, path: str = "/proc/meminfo") -> int | None:
    try:
        with open(path) as f:
            for line in f:
                name, _, rest = line.partition(":")
                if name == key:
                    return int(rest.split()[0]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_stat(path: str, keys: tuple[str, ...]) -> int:
    """Sum of `keys` in a memory.stat file (0 for a key it lacks)."""
    total = 0
    try:
        with open(path) as f:
            for line in f:
                name, _, value = line.partition(" ")
                if name in keys and value.strip().isdigit():
                    total += int(value)
    except OSError:
        pass
    return total


def _cgroup_room(root: str = "/sys/fs/cgroup") -> int | None:
    """Bytes this container's memory cgroup still admits (v2, else v1), with its file page cache, active
    and inactive, counted as free: a cgroup that has read a few GGUF files sits near its limit on cache
    the kernel drops on demand (MemAvailable counts it the same way). None without a limit."""
    for limit_file, usage_file, stat_file, cache in (
            ("memory.max", "memory.current", "memory.stat", ("active_file", "inactive_file")),
            ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes", "memory/memory.stat",
             ("total_active_file", "total_inactive_file"))):
        limit = _read_int(os.path.join(root, limit_file))
        if limit is None or limit >= _UNLIMITED:
            continue
        usage = _read_int(os.path.join(root, usage_file)) or 0
        usage -= _cgroup_stat(os.path.join(root, stat_file), cache)
        return max(limit - max(usage, 0), 0)
    return None


def available_host_memory() -> tuple[int, str]:
    """(bytes a new allocation of this process can still get, where that figure comes from): the
    smaller of /proc/meminfo's MemAvailable and the memory cgroup's room; physical memory if neither
    can be read. What a CPU run's "auto" plans with (its weights are not loaded yet)."""
    found = [(n, src) for n, src in ((_meminfo("MemAvailable"), "MemAvailable"), (_cgroup_room(), "cgroup limit"))
             if n is not None]
    return min(found) if found else (_host_memory(), "physical memory")


def parse_devices(spec: str) -> Hardware:
    """'v5e-8', 'v4-8', 'v5p-8', 'h100x8', 'rtx4090x1', 'cpu', 'cpux8' (host memory shared evenly)."""
    s = spec.lower()
    if m := re.fullmatch(r"(v5e|v5litepod|v6e|v4|v5p)-(\d+)", s):
        gib, cores_per_chip = ACCELERATORS[m[1]]
        n = int(m[2]) // cores_per_chip
        if n < 1 or int(m[2]) % cores_per_chip:
            raise ConfigError(f"--devices={spec}: {m[1]} slices come in multiples of {cores_per_chip} cores")
        return Hardware(spec, n, gib * GiB)
    if m := re.fullmatch(r"(" + "|".join(GPUS) + r")(?:x(\d+))?", s):
        if int(m[2] or 1) < 1:
            raise ConfigError(f"--devices={spec}: at least one GPU")
        return Hardware(spec, int(m[2] or 1), GPUS[m[1]] * GiB)
    if m := re.fullmatch(r"cpu(?:x(\d+))?", s):
        n = int(m[1] or 1)
        return Hardware(spec, n, _host_memory() // n)
    raise ConfigError(f"--devices={spec!r}: expected one of v5e-N, v6e-N, v4-N, v5p-N, "
                      f"{', '.join(g + 'xN' for g in GPUS)}, "
                      f"cpu or cpuxN")


@dataclasses.dataclass(frozen=True)
class Setup:
    """Everything the formula reads, in bytes per device where it is a size."""
    cfg: Any  # ModelConfig
    method: str
    seq: int
    micro_batch: int  # per device
    accum: int
    data: int
    fsdp: int
    remat: str
    attention: str  # resolved (jaxft.train.auto): xla/dpa hold [b, h, s, s] scores, cudnn/chunked do not
    scan: bool
    c_bytes: int  # compute dtype
    p_bytes: int  # parameter storage dtype
    params: int  # all parameter leaves, sharded
    trainable: int
    optimizer: int
    layer_weights: int  # all layers' weights, sharded (the scan stack)
    one_layer: int  # one layer's weights, unsharded, element count
    one_layer_trainable: int  # of which trained, element count
    lora_rank_sum: int  # per layer: r per adapter
    lora_inputs: int  # per layer: the adapters' input widths
    dora_weights: int  # per layer: elements of the adapted weights (DoRA only)
    dropout: float
    n_params: int
    n_trainable: int
    loss_impl: str = "dense"
    loss_chunk: int = 0  # tokens per device per chunk of the chunked loss
    head_grad: int = 0  # bytes of the chunked loss's float32 head-gradient accumulator (0: head frozen)


def _sharded_bytes(tree: Any, fsdp: int) -> int:
    import jax

    from jaxft.train.sharding import param_spec

    total = 0
    for x in jax.tree.leaves(tree):
        n = int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize
        total += n // fsdp if any(a == "fsdp" for a in param_spec(tuple(x.shape), fsdp)) else n
    return total


def setup_from_config(c, n_devices: int) -> Setup:
    """Abstract model (jax.eval_shape) + adapters + optimizer state and the batch layout, from the
    builder the train loop uses (jaxft.run_setup)."""
    import jax
    from flax import nnx

    from jaxft.models.load import as_dtype
    from jaxft.peft import split_params
    from jaxft.peft.apply import adapted_layers
    from jaxft.run_setup import batch_layout, build
    from jaxft.train.lm_head_loss import DEFAULT_CHUNK, check_loss_settings
    from jaxft.train.optim import make_optimizer

    if str(c.remat) not in REMATS:
        raise ConfigError(f"config.remat={c.remat!r}; allowed: {', '.join(REMATS)} (resolve 'auto' first: "
                          f"jaxft.train.auto.resolve)")
    parts = build(c, abstract=True, n_devices=n_devices)
    data, fsdp, model = parts.data, parts.fsdp, parts.model
    cfg = model.config
    lay = batch_layout(c, parts.shards)
    cdtype, pdtype = as_dtype(c.compute_dtype), as_dtype(c.param_dtype)
    adapted = adapted_layers(model)
    adapters = [m for n, m in adapted.items() if n.startswith("model.layers.0.")]
    loss_impl, loss_chunk = str(c.get("loss_impl", "chunked")), c.get("loss_chunk", DEFAULT_CHUNK)
    check_loss_settings(loss_impl, loss_chunk)
    head = (cfg.vocab_size, cfg.hidden_size)
    head_trained = c.method == "full" and loss_impl == "chunked"
    _, trainable, frozen = split_params(model, c.method)
    opt = make_optimizer(0.0, weight_decay=c.optim.weight_decay, grad_clip=c.optim.grad_clip)
    opt_state = jax.eval_shape(opt.init, trainable)

    def layer_part(state):
        return [v for k, v in nnx.to_flat_state(state) if k[:2] == ("model", "layers")]

    layers_all = layer_part(trainable) + layer_part(frozen)
    count = lambda leaves: int(sum(np.prod(x.shape) for x in leaves))  # noqa: E731
    L = cfg.num_hidden_layers
    return Setup(
        cfg=cfg, method=c.method, seq=c.data.seq_len, micro_batch=lay.micro_rows,
        accum=lay.accum, data=data, fsdp=fsdp, remat=str(c.remat),
        attention=str(c.attention),
        scan=bool(c.scan_layers), c_bytes=np.dtype(cdtype).itemsize, p_bytes=np.dtype(pdtype).itemsize,
        params=_sharded_bytes((trainable, frozen), fsdp), trainable=_sharded_bytes(trainable, fsdp),
        optimizer=_sharded_bytes(opt_state, fsdp), layer_weights=_sharded_bytes(layers_all, fsdp),
        one_layer=count(layers_all) // L, one_layer_trainable=count(layer_part(trainable)) // L,
        lora_rank_sum=sum(a.lora_A.shape[0] for a in adapters),
        lora_inputs=sum(a.in_features for a in adapters),
        dora_weights=sum(a.in_features * a.out_features for a in adapters) if c.method == "dora" else 0,
        dropout=float(c.peft.dropout) if c.method != "full" else 0.0,
        n_params=count(jax.tree.leaves((trainable, frozen))), n_trainable=count(jax.tree.leaves(trainable)),
        loss_impl=loss_impl, loss_chunk=loss_chunk,
        head_grad=_sharded_bytes([jax.ShapeDtypeStruct(head, np.float32)], fsdp) if head_trained else 0)


def _layer_token_bytes(s: Setup) -> int:
    """Activations one layer keeps per token without remat (see the module docstring)."""
    cfg, c = s.cfg, s.c_bytes
    h, i = cfg.hidden_size, cfg.intermediate_size
    q, kv = cfg.num_attention_heads * cfg.head_dim, cfg.num_key_value_heads * cfg.head_dim
    n = 4 * h * 4 + 4 * h * c + (2 * q + 2 * kv + 6 * i) * c
    if s.attention in ("xla", "dpa"):  # the explicit float32 scores and the probabilities
        n += cfg.num_attention_heads * s.seq * (4 + c)
    n += s.lora_rank_sum * c
    if s.dropout > 0:
        n += s.lora_inputs * (c + 1)  # the dropped input and its keep-mask
    return n


def _logits_bytes(s: Setup, b: int) -> int:
    """Float32 logits and their gradient: all tokens' (dense), or one chunk's (chunked)."""
    from jaxft.train.lm_head_loss import chunk_positions

    if s.loss_impl != "chunked":
        return 2 * b * s.seq * s.cfg.vocab_size * 4
    return 2 * b * chunk_positions(b, s.seq, s.loss_chunk) * s.cfg.vocab_size * 4 + s.head_grad


def estimate(s: Setup, batch: int | None = None, remat: str | None = None) -> dict[str, int]:
    """The terms and the peak, in bytes per device, for a per-device micro-batch and remat policy."""
    cfg, c = s.cfg, s.c_bytes
    b = s.micro_batch if batch is None else batch
    remat = s.remat if remat is None else remat
    if remat not in REMATS:
        raise ConfigError(f"remat={remat!r}; allowed: {', '.join(REMATS)}")
    effective = remat if s.scan else "none"
    L, h, i = cfg.num_hidden_layers, cfg.hidden_size, cfg.intermediate_size
    q, kv = cfg.num_attention_heads * cfg.head_dim, cfg.num_key_value_heads * cfg.head_dim
    tokens = b * s.seq
    layer_working = tokens * _layer_token_bytes(s) + s.dora_weights * 4 // s.fsdp
    cast_weights = s.one_layer * c // s.fsdp if c != s.p_bytes else 0
    if effective == "none":
        saved, working = L * (layer_working + cast_weights), 0
    else:
        per_token = h * c if effective == "full" else (h + q + 2 * kv + 2 * h + 2 * i) * c
        saved, working = L * tokens * per_token, layer_working
    gradients = s.trainable
    terms = {
        "parameters": s.params,
        "gradients": gradients,
        "optimizer": s.optimizer,
        "accumulator": gradients if s.accum > 1 else 0,
        "scan_stack": s.layer_weights if s.scan and L > 1 else 0,
        "fsdp_gather": (s.one_layer * c + s.one_layer_trainable * s.p_bytes) if s.fsdp > 1 else 0,
        "activations": saved,
        "logits": _logits_bytes(s, b),
        "recompute": working,
        "batch": tokens * 20 * max(s.accum, 1),  # input_ids, targets, positions, segment_ids, loss_mask
    }
    backward = (terms["gradients"] + terms["accumulator"] + terms["scan_stack"] + terms["fsdp_gather"]
                + terms["activations"] + max(terms["logits"], terms["recompute"]))
    update = gradients + s.optimizer + s.trainable
    terms["peak"] = s.params + s.optimizer + terms["batch"] + max(backward, update)
    return terms


def largest_batch(s: Setup, usable: int, remat: str | None = None, limit: int = 1 << 16) -> int:
    """Largest per-device micro-batch whose peak fits `usable` bytes (0: not even one example)."""
    if estimate(s, 1, remat)["peak"] > usable:
        return 0
    lo, hi = 1, 2
    while hi <= limit and estimate(s, hi, remat)["peak"] <= usable:
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if estimate(s, mid, remat)["peak"] <= usable else (lo, mid)
    return lo


def at_micro_batch(s: Setup, micro_batch: int, rows_per_device: int) -> Setup:
    """`s` with `rows_per_device` rows per step taken `micro_batch` rows at a time."""
    if micro_batch < 1 or rows_per_device % micro_batch:
        raise ValueError(f"micro-batch {micro_batch} does not divide {rows_per_device} rows per device")
    return dataclasses.replace(s, micro_batch=micro_batch, accum=rows_per_device // micro_batch)


def largest_dividing_batch(s: Setup, usable: int, rows_per_device: int, remat: str | None = None) -> int:
    """Largest micro-batch that divides `rows_per_device` and whose peak fits `usable` bytes (0: none,
    not even one row)."""
    for m in sorted((d for d in range(1, rows_per_device + 1) if rows_per_device % d == 0), reverse=True):
        if estimate(at_micro_batch(s, m, rows_per_device), remat=remat)["peak"] <= usable:
            return m
    return 0


def compiled_memory(c) -> dict[str, int]:
    """XLA's own accounting of the jitted train step for `c` on one device, built by the loop's builder
    on abstract weights (compiled, never run): the figure the planner is checked against. `c.attention`
    and `c.remat` must be resolved (jaxft.train.auto)."""
    import jax
    import jax.numpy as jnp

    from jaxft.peft import split_params
    from jaxft.run_setup import batch_layout, build
    from jaxft.train.batch_layout import STEP_FIELDS, step_shape
    from jaxft.train.optim import make_optimizer
    from jaxft.train.step import make_train_step

    parts = build(c, abstract=True, n_devices=1)
    lay = batch_layout(c, parts.shards)
    graphdef, trainable, frozen = split_params(parts.model, c.method)
    optimizer = make_optimizer(1e-5)
    opt_state = jax.eval_shape(optimizer.init, trainable)
    shape = step_shape(lay, c.data.seq_len)
    batch = {k: jax.ShapeDtypeStruct(shape, jnp.dtype(t)) for k, t in STEP_FIELDS.items()}
    step = make_train_step(graphdef, optimizer, accum_steps=lay.accum, loss_impl=c.loss_impl,
                           loss_chunk=c.loss_chunk)
    m = step.lower(trainable, frozen, opt_state, batch, None).compile().memory_analysis()
    # Donated outputs alias their arguments, so they are counted once.
    return {"temp": m.temp_size_in_bytes,
            "total": m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes + m.temp_size_in_bytes}
