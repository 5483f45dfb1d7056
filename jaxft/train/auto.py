"""`attention`, `remat` and `micro_batch_size` "auto": choices that depend on the backend and its memory,
made once per run.

The loop resolves them before writing the workdir's config (so it records what ran) and the
planner resolves them for the device type it is asked about, so both count the same kernel.
- attention: a GPU with bfloat16/float16 compute gets cuDNN's flash kernel; a TPU the chunked
  path (no [b, h, s, s] scores); a CPU, or float32 on a GPU, the exact explicit-scores path.
- remat: "none" when the planner says it fits, else "dots", else "full".
- micro_batch_size: the largest number of rows per device per micro-step that divides the step's rows
  per device and whose estimated peak (jaxft.train.memory, the analytic formula: no compilation) fits
  the device's memory less the headroom. With remat "auto" too, accumulation comes before
  recomputation: remat is used only when one row per micro-step does not fit without it.
A run whose estimate exceeds the memory even at one row per micro-step is refused here, before any
weight is loaded or anything compiled.

The memory is `memory_limit_bytes` when set, else the device's: on CPU what this process can still
allocate (MemAvailable, or the memory cgroup's room when smaller) shared by the local devices; on
GPU/TPU the runtime's `memory_stats()["bytes_limit"]`.
"""

from __future__ import annotations

import dataclasses

from jaxft.errors import ConfigError

ATTENTION_CHOICES = ("auto", "xla", "dpa", "cudnn", "chunked")
REMAT_CHOICES = ("auto", "none", "dots", "full")
AUTO = "auto"


def _gib(n: int) -> str:
    return f"{n / 2 ** 30:.2f} GiB" if n >= 2 ** 30 else f"{n / 2 ** 20:.1f} MiB"


@dataclasses.dataclass(frozen=True)
class Memory:
    """Bytes per device a run may plan with, and where that figure comes from."""
    limit: int | None  # None: the runtime does not say
    source: str

    @property
    def usable(self) -> int | None:
        from jaxft.train.memory import HEADROOM

        return None if self.limit is None else int(self.limit * (1 - HEADROOM))

    def describe(self) -> str:
        from jaxft.train.memory import HEADROOM

        if self.limit is None:
            return f"device memory unknown ({self.source})"
        return f"{_gib(self.usable)} usable per device ({self.source} {_gib(self.limit)} - {HEADROOM:.0%} headroom)"


def platform_of_devices(name: str) -> str:
    """The JAX platform of a planner device name (v5e-8 -> tpu, h100x8 -> gpu, cpux8 -> cpu)."""
    n = name.lower()
    if n.startswith("cpu"):
        return "cpu"
    if n[:1] == "v" and n[1:2].isdigit():
        return "tpu"
    return "gpu"


def pick_attention(requested: str, platform: str, compute_dtype: str) -> str:
    if requested not in ATTENTION_CHOICES:
        raise ConfigError(f"config.attention={requested!r}; allowed: {', '.join(ATTENTION_CHOICES)}")
    if requested != "auto":
        return requested
    if platform == "gpu" and compute_dtype in ("bfloat16", "float16"):
        return "cudnn"
    if platform == "tpu":
        return "chunked"
    return "xla"


def pick_remat(requested: str, platform: str, peak_of, usable: int | None) -> str:
    """`peak_of(remat) -> bytes per device`; `usable` bytes per device (None: unknown -> "dots", on CPU
    "none")."""
    if requested not in REMAT_CHOICES:
        raise ConfigError(f"config.remat={requested!r}; allowed: {', '.join(REMAT_CHOICES)}")
    if requested != "auto":
        return requested
    if usable is None:
        return "none" if platform == "cpu" else "dots"
    for remat in ("none", "dots"):
        if peak_of(remat) <= usable:
            return remat
    return "full"


def this_host_memory(c) -> Memory:
    """What a run on this host plans with: `memory_limit_bytes`, else the devices' own (module docstring)."""
    import jax

    from jaxft.train.memory import available_host_memory

    limit = int(c.get("memory_limit_bytes", 0) or 0)
    if limit:
        return Memory(limit, "config.memory_limit_bytes")
    if jax.default_backend() == "cpu":
        free, source = available_host_memory()
        n = max(jax.local_device_count(), 1)
        memory = Memory(free // n, source + (f" / {n} devices" if n > 1 else ""))
    else:
        try:
            limit = (jax.local_devices()[0].memory_stats() or {}).get("bytes_limit")
        except Exception:  # some runtimes do not implement memory_stats
            limit = None
        memory = Memory(int(limit), "memory_stats bytes_limit") if limit else Memory(None, "no memory_stats")
    if jax.process_count() > 1:  # every process must pick the same micro-batch: the smallest memory decides
        import numpy as np
        from jax.experimental import multihost_utils

        every = np.asarray(multihost_utils.process_allgather(np.int64(memory.limit or -1))).ravel()
        known = [int(x) for x in every if x >= 0]
        if len(known) < len(every):
            return Memory(None, "memory unknown on some process")
        memory = Memory(min(known), f"{memory.source}, smallest of {len(every)} processes")
    return memory


def _setup(c, n_devices: int):
    """The planner's Setup of `c` with no accumulation (None: the model's shapes need its weights)."""
    from jaxft.run_setup import has_shapes
    from jaxft.train import memory as mem
    from jaxft.train.config import set_value

    if not has_shapes(c):
        return None
    probe = c.copy_and_resolve_references()
    set_value(probe, "micro_batch_size", 0)
    if probe.remat == AUTO:
        probe.remat = "none"
    return mem.setup_from_config(probe, n_devices)


def resolve(c, *, platform: str, n_devices: int, memory: Memory, rows: int | None = None, micro: bool = True,
            refuse: bool = True) -> list[str]:
    """Set c.attention, c.remat and (`micro`) c.micro_batch_size to concrete values; one log line per
    "auto" resolved (and per warning).

    rows: rows per step, all devices (None: the planner's count, `batch_layout.planned_rows`). micro False
    leaves micro_batch_size "auto" for a later call that knows the data's rows (remat is then chosen for one
    row per micro-step). refuse: raise ConfigError when not even one row per micro-step fits.
    """
    return resolve_with_setup(c, platform=platform, n_devices=n_devices, memory=memory, rows=rows, micro=micro,
                              refuse=refuse)[0]


def resolve_with_setup(c, *, platform: str, n_devices: int, memory: Memory, rows: int | None = None,
                       micro: bool = True, refuse: bool = True):
    """`resolve`, and the planner's Setup of the resolved `c` (None where no plan was needed or possible),
    so that the planner does not build the abstract model twice."""
    from jaxft.train import memory as mem
    from jaxft.train.batch_layout import planned_rows
    from jaxft.train.config import auto_or_int, set_value

    notes = []
    attention = pick_attention(str(c.attention), platform, str(c.compute_dtype))
    if c.attention == AUTO:
        notes.append(f"attention=auto -> {attention} ({platform}, {c.compute_dtype} compute)")
    c.attention = attention
    remat = str(c.remat)
    pick_remat(remat, platform, None, None)  # refuses an unknown name
    requested = auto_or_int(c.get("micro_batch_size", 0), "micro_batch_size")
    usable = memory.usable
    if remat != AUTO and requested != AUTO and not (refuse and usable is not None):
        return notes, None  # nothing to pick, nothing to check
    s = _setup(c, n_devices)
    if s is None or usable is None:
        why = memory.describe() if usable is None else f"the shapes of {c.model!r} need its weights"
        if remat == AUTO:
            c.remat = pick_remat(AUTO, platform, None, None)
            notes.append(f"remat=auto -> {c.remat} ({why})")
        if requested == AUTO and micro:
            set_value(c, "micro_batch_size", 0)
            notes.append(f"micro_batch_size=auto -> 0: no accumulation ({why}; set micro_batch_size or "
                         f"memory_limit_bytes)")
        return notes, None
    shards = s.data * s.fsdp
    per_device = (planned_rows(c, shards) if rows is None else rows) // shards
    candidates = ("none", "dots", "full") if remat == AUTO else (remat,)

    def peak(m: int, r: str) -> int:
        return mem.estimate(mem.at_micro_batch(s, m, per_device), remat=r)["peak"]

    one_row = {r: peak(1, r) for r in candidates}
    if all(p > usable for p in one_row.values()):
        r = min(one_row, key=one_row.get)
        line = (f"{c.model} ({c.method}, seq {s.seq}) does not fit: even 1 row per device per micro-step needs an "
                f"estimated {_gib(one_row[r])} per device (remat={r}), over the {memory.describe()}")
        if refuse:
            fewer = "train fewer parameters (method=lora), " if c.method == "full" else ""
            raise ConfigError(f"{line}; shorten data.seq_len, {fewer}shard over more devices (mesh_shape.fsdp) "
                              f"or give it more memory")
        notes.append(line)
    if requested == AUTO and micro:
        for r in candidates:
            m = mem.largest_dividing_batch(s, usable, per_device, r)
            if m:
                break
        else:
            r, m = candidates[-1], 1
        set_value(c, "micro_batch_size", m)
        steps = "no accumulation" if m == per_device else f"{per_device // m} micro-steps"
        notes.append(f"micro_batch_size=auto -> {m} rows per device per micro-step ({steps} of the {per_device} "
                     f"rows per device; estimate {_gib(peak(m, r))} of {memory.describe()})")
    else:
        m = 1 if requested == AUTO else (requested or per_device)
        r = next((r for r in candidates if peak(m, r) <= usable), candidates[-1])
        if requested != AUTO and peak(m, r) > usable >= min(one_row.values()):
            notes.append(f"micro_batch_size={requested}: estimate {_gib(peak(m, r))} per device (remat={r}) is over "
                         f"the {memory.describe()}; micro_batch_size=auto would take fewer rows per micro-step")
    if remat == AUTO:
        notes.append(f"remat=auto -> {r} (planner, {memory.describe()})")
    c.remat = r
    if c.micro_batch_size == AUTO:
        return notes, None
    return notes, mem.at_micro_batch(dataclasses.replace(s, remat=r), c.micro_batch_size or per_device, per_device)


def resolve_for_this_host(c, *, memory: Memory | None = None, rows: int | None = None, micro: bool = True,
                          refuse: bool = True) -> list[str]:
    """`resolve` for the devices this process sees, with `this_host_memory` unless `memory` is given (the
    loop measures it once, before the weights load)."""
    import jax

    return resolve(c, platform=jax.default_backend(), n_devices=jax.device_count(),
                   memory=memory or this_host_memory(c), rows=rows, micro=micro, refuse=refuse)
