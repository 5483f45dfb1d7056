"""`attention="auto"` and `remat="auto"`: choices that depend on the backend, made once per run.

The loop resolves them before writing the workdir's config (so it records what ran) and the
planner resolves them for the device type it is asked about, so both count the same kernel.
- attention: a GPU with bfloat16/float16 compute gets cuDNN's flash kernel; a TPU the chunked
  path (no [b, h, s, s] scores); a CPU, or float32 on a GPU, the exact explicit-scores path.
- remat: "none" on CPU; on an accelerator "none" when the planner says it fits, else "dots",
  else "full".
"""

from __future__ import annotations

from jaxft.errors import ConfigError

ATTENTION_CHOICES = ("auto", "xla", "dpa", "cudnn", "chunked")
REMAT_CHOICES = ("auto", "none", "dots", "full")


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
    """`peak_of(remat) -> bytes per device`; `usable` bytes per device (None: unknown -> "dots")."""
    if requested not in REMAT_CHOICES:
        raise ConfigError(f"config.remat={requested!r}; allowed: {', '.join(REMAT_CHOICES)}")
    if requested != "auto":
        return requested
    if platform == "cpu":
        return "none"
    if usable is None:
        return "dots"
    for remat in ("none", "dots"):
        if peak_of(remat) <= usable:
            return remat
    return "full"


def resolve(c, *, platform: str, n_devices: int, usable: int | None) -> list[str]:
    """Set c.attention and c.remat to concrete values; returns one log line per "auto" resolved."""
    from jaxft.train import memory as mem

    notes = []
    attention = pick_attention(str(c.attention), platform, str(c.compute_dtype))
    if c.attention == "auto":
        notes.append(f"attention=auto -> {attention} ({platform}, {c.compute_dtype} compute)")
    c.attention = attention
    if c.remat == "auto":
        def peak_of(remat):
            c.remat = remat
            return mem.estimate(mem.setup_from_config(c, n_devices))["peak"]

        remat = pick_remat("auto", platform, peak_of, usable)
        how = "cpu" if platform == "cpu" else (f"planner, {usable / 2**30:.1f} GiB usable per device"
                                               if usable else "device memory unknown")
        notes.append(f"remat=auto -> {remat} ({how})")
        c.remat = remat
    else:
        c.remat = pick_remat(str(c.remat), platform, None, usable)
    return notes


def resolve_for_this_host(c) -> list[str]:
    """`resolve` for the devices this process sees (memory from the runtime where it reports it)."""
    import jax

    from jaxft.train.memory import HEADROOM

    platform = jax.default_backend()
    usable = None
    if platform != "cpu":
        try:
            limit = (jax.local_devices()[0].memory_stats() or {}).get("bytes_limit")
        except Exception:  # some runtimes do not implement memory_stats
            limit = None
        usable = int(limit * (1 - HEADROOM)) if limit else None
    return resolve(c, platform=platform, n_devices=jax.device_count(), usable=usable)
