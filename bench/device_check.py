"""The prepared check for a lent accelerator: every path that matters there, in one run of under eight
minutes on one H200, printed as one table (and written as JSON with --out).

It installs nothing and needs no network: it runs jaxft from this source tree (the repository root is
put first on sys.path) against the JAX, flax, optax and orbax the device image already has, and prints
their versions first. Weights are random at the registry's real shapes (no download; speed and memory
do not depend on the values). Every row says what it ran and `ok`, `FAIL: why` or `skipped: why`:

  train      Full FT / LoRA / DoRA steps, bfloat16 compute over float32 master weights, sequence 2048,
             attention="auto", remat="auto" (resolved for this device as `python -m jaxft.train` does),
             the loop's own sharded step (jaxft.train.loop.init_state, mesh data=1 x fsdp=1) on one
             repeated batch of packed rows: the loss must be finite and fall; tokens/s, MFU, the measured
             peak memory beside the planner's estimate (jaxft/train/memory.py) and XLA's own figure.
  attention  cuDNN, chunked and jax.nn.dot_product_attention (XLA) against the explicit-scores path in
             float32: max |logit difference| on the same weights and packed rows (two examples per row;
             sliding and global layers where the family has them). chunked and dpa in float32 within
             1e-4 of the largest logit; cuDNN (bfloat16 only) within 1.5x the explicit path's own
             bfloat16 error.
  loss       the fused chunked LM-head loss against the dense one: loss and both gradients.
  mesh       one train step through the multi-device code path (mesh data=1 x fsdp=-1, explicit
             shardings) against the plain unsharded step on the same weights and batch.
  decode     greedy KV-cache decoding tokens/s at batch 1, 8 and 32.

One model per family in jaxft/models/config.py FAMILIES (the registry's smallest of that family, so a
family added later is checked too). Within the time budget only the Qwen2.5-0.5B benchmark model runs
all three methods; every other family runs one (README "Device check"); --full-grid runs all three
everywhere. Cases run most important first; one whose estimate would cross --budget-s is reported
"skipped: time budget" rather than run. On a GPU/TPU each case runs in its own process, so its peak
memory is its own and an out-of-memory ends only that case.

    python bench/device_check.py --out device_check.json        # on the accelerator
    python bench/device_check.py --dry-run                      # tiny shapes on CPU, the same code paths
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import json
import math
import os
import platform
import sys
import time
import types

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for _p in (os.path.join(ROOT, "bench"), ROOT):
    if _p not in sys.path:
        sys.path.insert(0, _p)
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here may reach the network
if __name__ == "__main__" and "--dry-run" in sys.argv[1:]:
    # The dry run checks code paths, not speed: CPU, and XLA's CPU compiler without its costly passes.
    os.environ["JAX_PLATFORMS"] = "cpu"
    os.environ["XLA_FLAGS"] = " ".join([os.environ.get("XLA_FLAGS", ""), "--xla_backend_optimization_level=0",
                                        "--xla_llvm_disable_expensive_passes=true"]).strip()

from common import (compiled_train_step, jax_peak_bytes, jaxft_decode, random_batch, random_model,  # noqa: E402
                    run_isolated)

GiB = 2 ** 30
METHODS = ("full", "lora", "dora")
LEARNING_RATE = 1e-3  # large enough that a few steps on one repeated batch lower the loss visibly in bfloat16
BENCH_MODEL = "qwen2.5-0.5b"  # the model of BENCHMARKS.md's H200 tables: all three methods
SHARPEN = 4  # attention rows: softmax temperature divided by this (case_attention)
ONE_METHOD = {"llama": "lora", "olmo": "full", "gemma": "full", "gemma3": "lora", "qwen3": "dora"}


@dataclasses.dataclass(frozen=True)
class Shapes:
    """Sizes of a run: the real ones for the device, tiny ones for the CPU dry run."""
    seq: int = 2048
    steps: int = 6  # the first is timed apart (it includes nothing but the step: compiled ahead)
    decode_prompt: int = 128
    decode_new: int = 256
    loss_chunk: int = 512
    attention_chunk: int | None = None  # None: the model's own (512 query rows)
    tiny: bool = False

    def batch(self, real: int) -> int:
        return 2 if self.tiny else real


REAL = Shapes()
DRY = Shapes(seq=64, steps=3, decode_prompt=8, decode_new=8, loss_chunk=16, attention_chunk=16, tiny=True)


def family_models() -> dict[str, str]:
    """family -> the registry's model of that family with the fewest parameters (base before -it)."""
    from jaxft.models.config import FAMILIES
    from jaxft.models.registry import HF_CONFIGS, registry_config

    best: dict[str, tuple[int, str]] = {}
    for name in sorted(HF_CONFIGS):
        cfg = registry_config(name)
        key = (cfg.num_params(), name)
        if cfg.family in FAMILIES and (cfg.family not in best or key < best[cfg.family]):
            best[cfg.family] = key
    return {f: best[f][1] for f in FAMILIES if f in best}


def check_config(name: str, shapes: Shapes):
    """The registry's config of `name`; for the dry run the same family flags at toy widths (2 layers,
    the last two layer types, so a sliding/global mix stays one)."""
    from jaxft.models.registry import registry_config

    cfg = registry_config(name)
    if not shapes.tiny:
        return cfg
    layers = 2
    return cfg.replace(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
                       num_attention_heads=4, num_key_value_heads=1 if cfg.num_key_value_heads == 1 else 2,
                       head_dim=16, layer_types=tuple(cfg.layer_types[-layers:]),
                       sliding_window=8 if any(cfg.local_layers) else cfg.sliding_window,
                       query_pre_attn_scalar=16.0 if cfg.query_pre_attn_scalar else None)


def plan(shapes: Shapes, full_grid: bool = False) -> list[dict]:
    """The cases, most important first, each with the ids of the rows it reports and its estimated
    seconds on an H200 (compilation dominates: about 25-50 s per train step graph, BENCHMARKS.md).
    The dry run keeps every row but runs only the benchmark model's Full FT (with the mesh row) and
    LoRA train rows: each other one would compile one more train step (about 12 s of CPU) through the
    same code of this script, and the suite covers the families and DoRA on CPU (tests/test_models.py,
    tests/test_new_families.py, tests/test_peft_parity.py)."""
    fams = family_models()
    by_name = {v: k for k, v in fams.items()}
    bench = BENCH_MODEL if BENCH_MODEL in by_name else next(iter(by_name))
    sliding = fams.get("gemma3", bench)

    def train(name, method, batch, est, mesh=False):
        rows = [f"train:{name}:{method}"] + ([f"mesh:{name}:{method}"] if mesh else [])
        skip = ("dry run: this script's train code runs for the benchmark model's full and lora rows"
                if shapes.tiny and (name != bench or method == "dora") else None)
        return dict(case="train", model=name, family=by_name[name], method=method, batch=shapes.batch(batch),
                    est_s=est, rows=rows, mesh=mesh, skip=skip)

    first, later = [train(bench, "full", 8, 65, mesh=True)], []
    for fam, name in fams.items():
        if name == bench:
            continue
        big = check_config(name, REAL).num_params() > 1.5e9
        for method in (METHODS if full_grid else (ONE_METHOD.get(fam, "lora"),)):
            case = train(name, method, 4 if big else 8, {"full": 40, "lora": 45, "dora": 55}[method] + 30 * big)
            (later if big or fam in ("llama", "olmo") else first).append(case)
    impls = ("cudnn", "chunked", "dpa")
    checks = [
        dict(case="attention", model=sliding, batch=1, est_s=35, rows=[f"attention:{sliding}:{i}" for i in impls]),
        dict(case="loss", model=bench, batch=shapes.batch(8), est_s=15, rows=[f"loss:{bench}:chunked"]),
        dict(case="decode", model=bench, est_s=45, rows=[f"decode:{bench}:batch{b}" for b in (1, 8, 32)]),
    ]
    rest = [train(bench, m, 8, {"lora": 45, "dora": 55}[m]) for m in ("lora", "dora")]
    return first + checks + sorted(later, key=lambda c: c["est_s"]) + rest


# ----------------------------------------------------------------------------------------------- cases

def _train_config(a: dict, shapes: Shapes):
    """The study's protocol (configs/base.py) on random weights of `a["model"]`'s shapes, one step of
    `a["batch"]` rows of `shapes.seq` tokens, attention/remat "auto" (resolved by the caller)."""
    import ml_collections

    from configs.base import get_base_config

    c = get_base_config(model="random", method=a["method"])
    c.random_model = ml_collections.ConfigDict(check_config(a["model"], shapes).to_dict())
    c.data.seq_len = shapes.seq
    c.data.rows_per_step = c.global_batch_size = c.micro_batch_size = a["batch"]
    c.optim.learning_rate, c.optim.schedule, c.optim.warmup_ratio = LEARNING_RATE, "constant", 0.0
    c.total_steps = shapes.steps
    c.loss_chunk = shapes.loss_chunk
    if a.get("mesh"):  # the 8-device configs' mesh (configs/experiment.py, Gemma-2B Full FT) on one device
        c.mesh_shape.data, c.mesh_shape.fsdp = 1, -1
    return c


def _random_parts(c):
    """RunParts as jaxft.run_setup.build makes them, with random weights at the config's shapes."""
    import jax

    from jaxft.models.load import as_dtype
    from jaxft.run_setup import RunParts, add_adapters, model_config, model_options
    from jaxft.train import sharding as shard_lib

    model = random_model(model_config(c), dtype=as_dtype(c.compute_dtype), param_dtype=as_dtype(c.param_dtype),
                         seed=c.seed, **model_options(c))
    mesh = shard_lib.make_mesh(dict(c.mesh_shape), jax.devices())
    return RunParts(add_adapters(model, c), None, mesh, mesh.shape["data"], mesh.shape["fsdp"])


def _packed(batch: dict) -> dict:
    """The fields the loop feeds the step (STEP_FIELDS): each row one packed example."""
    import numpy as np

    b, s = batch["input_ids"].shape
    return dict(batch, positions=np.broadcast_to(np.arange(s, dtype=np.int32), (b, s)).copy(),
                segment_ids=np.ones((b, s), np.int32))


def _loop_state(c, steps: int):
    """The loop's sharded state and jitted step (jaxft.train.loop.init_state) for `c`."""
    from jaxft.run_setup import batch_layout
    from jaxft.train.loop import init_state

    parts = _random_parts(c)
    lay = batch_layout(c, parts.shards, int(c.data.rows_per_step))
    data = types.SimpleNamespace(plan=types.SimpleNamespace(total_steps=steps), lay=lay)
    return init_state(c, parts, data)


def _compiled_memory_bytes(compiled) -> int | None:
    m = compiled.memory_analysis()
    if m is None:
        return None
    # Donated outputs alias their arguments, so they are counted once (as jaxft.train.memory.compiled_memory).
    return int(m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes + m.temp_size_in_bytes)


def case_train(a: dict, shapes: Shapes) -> list[dict]:
    """Train steps through the loop's own sharded state; with a["mesh"] (mesh data=1 x fsdp=-1) also the
    first step against the plain jitted step without shardings (bench/common.compiled_train_step) on
    the same weights and batch: the mesh row."""
    import jax
    import numpy as np

    from jaxft.peft import split_params
    from jaxft.run_setup import model_config as run_config
    from jaxft.train import memory as mem
    from jaxft.train.auto import resolve_for_this_host
    from jaxft.train.telemetry import device_peak_flops, train_flops_per_token

    c = _train_config(a, shapes)
    notes = resolve_for_this_host(c)
    planner = mem.estimate(mem.setup_from_config(c, jax.device_count()))["peak"]
    cfg = run_config(c)
    host_batch = _packed(random_batch(cfg.vocab_size, a["batch"], shapes.seq))
    plain = None
    if a.get("mesh"):  # first, while the device holds nothing else
        graphdef, trainable, frozen = split_params(_random_parts(c).model, c.method)  # same seed: same weights
        one, _ = compiled_train_step(graphdef, trainable, frozen, jax.device_put(host_batch), use_rng=False,
                                     loss_impl=c.loss_impl)
        plain = {k: float(v) for k, v in one().items()}
        del one, graphdef, trainable, frozen
    state = _loop_state(c, shapes.steps)
    mesh = state.batch_sharding.mesh
    batch = jax.device_put(host_batch, state.batch_sharding)
    use_rng = c.method != "full" and c.peft.dropout > 0
    key = jax.random.key(c.seed)
    rng = (lambda i: jax.random.fold_in(key, i)) if use_rng else (lambda i: None)
    t = time.perf_counter()
    step = state.step_fn.lower(state.trainable, state.frozen, state.opt_state, batch, rng(0)).compile()
    compile_s = time.perf_counter() - t
    losses, times, finite, first = [], [], True, None
    trainable, opt_state = state.trainable, state.opt_state
    for i in range(shapes.steps):
        t = time.perf_counter()
        trainable, opt_state, metrics = step(trainable, state.frozen, opt_state, batch, rng(i))
        losses.append(float(metrics["loss"]))  # blocks until the step is done
        times.append(time.perf_counter() - t)
        finite &= bool(metrics["finite"])
        first = first or {k: float(v) for k, v in metrics.items()}
    sec = float(np.median(times[1:] if len(times) > 1 else times))
    tokens = a["batch"] * shapes.seq
    peak_flops = device_peak_flops()
    measured = jax_peak_bytes()
    falling = losses[-1] < losses[0]
    ok = finite and all(math.isfinite(x) for x in losses) and falling
    rows = [dict(loss_first=losses[0], loss_last=losses[-1], losses=losses, tokens_per_s=tokens / sec,
                 s_per_step=sec, mfu=(train_flops_per_token(cfg, c.method, shapes.seq) * tokens / sec / peak_flops
                                      if peak_flops else None),
                 peak_gib=measured / GiB if measured else None, planner_gib=planner / GiB,
                 xla_gib=(_compiled_memory_bytes(step) or 0) / GiB, compile_s=compile_s,
                 attention=c.attention, remat=c.remat, batch=a["batch"], seq=shapes.seq, notes=notes,
                 status="ok" if ok else f"FAIL: loss {'not finite' if not finite else 'did not fall'}")]
    if plain is not None:
        # One device either way: the same computation, so float32 summation order is all that may differ.
        rel = {k: abs(first[k] / plain[k] - 1) for k in ("loss", "grad_norm")}
        rows.append(dict(mesh=f"data={mesh.shape['data']} x fsdp={mesh.shape['fsdp']}", loss_sharded=first["loss"],
                         loss_plain=plain["loss"], grad_norm_rel_diff=rel["grad_norm"], max_abs_diff=max(rel.values()),
                         attention=c.attention, remat=c.remat, batch=a["batch"], seq=shapes.seq,
                         status="ok" if max(rel.values()) < 1e-3 else f"FAIL: sharded and plain steps differ {rel}"))
    return rows


def _forward_logits(model, ids, segment_ids, positions):
    import jax
    from flax import nnx

    graphdef, state = nnx.split(model)
    fwd = jax.jit(lambda st, i, seg, pos: nnx.merge(graphdef, st)(i, segment_ids=seg, positions=pos))
    return fwd(state, ids, segment_ids, positions)


def case_attention(a: dict, shapes: Shapes) -> list[dict]:
    """The same random weights and two packed examples per row through each attention implementation."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxft.models import transformer

    if shapes.attention_chunk:  # several query blocks at the dry run's short rows
        transformer.ATTENTION_CHUNK = shapes.attention_chunk
    cfg = check_config(a["model"], shapes)
    # Scores SHARPEN times sharper than the config's: at N(0, 0.02) weights attention is near uniform and adds
    # little to the logits, which would hide a wrong mask, window or head mapping in the noise.
    cfg = cfg.replace(query_pre_attn_scalar=cfg.head_dim / SHARPEN ** 2)
    s, half = shapes.seq, shapes.seq // 2
    ids = jnp.asarray(random_batch(cfg.vocab_size, a["batch"], s)["input_ids"])
    seg = jnp.asarray(np.repeat([[1] * half + [2] * (s - half)], a["batch"], 0), jnp.int32)
    pos = jnp.asarray(np.repeat([list(range(half)) + list(range(s - half))], a["batch"], 0), jnp.int32)

    def logits(impl: str, dtype):
        model = random_model(cfg, dtype=dtype, param_dtype=jnp.float32, scan_layers=True, attention=impl)
        return np.asarray(_forward_logits(model, ids, seg, pos))

    exact = logits("xla", jnp.float32)
    scale = float(np.abs(exact).max())
    noise = float(np.abs(logits("xla", jnp.bfloat16) - exact).max())  # what bfloat16 alone moves the logits
    rows = []
    for impl in ("cudnn", "chunked", "dpa"):
        row = dict(noise=noise, scale=scale, seq=s, batch=a["batch"])
        if impl == "cudnn" and jax.default_backend() != "gpu":
            rows.append(dict(row, status="skipped: not a GPU"))
            continue
        # cuDNN's kernel is bfloat16-only: it may be as far from the float32 answer as the explicit path in
        # bfloat16 is (x1.5). The others run in float32, where only summation order may differ.
        dtype, tol = (jnp.bfloat16, 1.5 * noise + 1e-3 * scale) if impl == "cudnn" else (jnp.float32, 1e-4 * scale)
        try:
            diff = float(np.abs(logits(impl, dtype) - exact).max())
        except Exception as e:  # a kernel this runtime lacks: say which and go on
            rows.append(dict(row, status=f"FAIL: {type(e).__name__}: {str(e)[:200]}"))
            continue
        rows.append(dict(row, max_abs_diff=diff, tol=tol, dtype=jnp.dtype(dtype).name,
                         status="ok" if diff <= tol else f"FAIL: {diff:.3g} > {tol:.3g}"))
    return rows


def case_loss(a: dict, shapes: Shapes) -> list[dict]:
    """Fused chunked LM head + cross-entropy against the dense logits, at the model's head shape."""
    import jax
    import jax.numpy as jnp

    from jaxft.train.lm_head_loss import lm_head_cross_entropy_sum
    from jaxft.train.step import cross_entropy_sum

    cfg = check_config(a["model"], shapes)
    k = jax.random.split(jax.random.key(0), 4)
    b, s, h, v = a["batch"], shapes.seq, cfg.hidden_size, cfg.vocab_size
    hidden = jax.random.normal(k[0], (b, s, h), jnp.bfloat16)
    weight = 0.02 * jax.random.normal(k[1], (v, h), jnp.float32)
    targets = jax.random.randint(k[2], (b, s), 0, v)
    mask = (jax.random.uniform(k[3], (b, s)) < 0.9).astype(jnp.float32)

    def fused(x, w):
        total, count = lm_head_cross_entropy_sum(x, w, targets, mask, chunk=shapes.loss_chunk)
        return total / count

    def dense(x, w):  # the head as the model computes it: compute-dtype matmul, float32 accumulation
        logits = jax.lax.dot_general(x, w.astype(x.dtype), (((2,), (1,)), ((), ())), preferred_element_type=jnp.float32)
        total, count = cross_entropy_sum(logits, targets, mask)
        return total / count

    (lf, gf), (ld, gd) = (jax.jit(jax.value_and_grad(f, argnums=(0, 1)))(hidden, weight) for f in (fused, dense))
    rel = lambda x, y: float(jnp.abs(x.astype(jnp.float32) - y.astype(jnp.float32)).max() /  # noqa: E731
                             jnp.maximum(jnp.abs(y.astype(jnp.float32)).max(), 1e-30))
    loss_rel, dx, dw = abs(float(lf) / float(ld) - 1), rel(gf[0], gd[0]), rel(gf[1], gd[1])
    # Loss: float32 sums of the same bfloat16 products. Gradients: the fused path multiplies the logit
    # gradient in bfloat16 where the dense one stays in float32 (jaxft/train/lm_head_loss.py).
    ok = loss_rel < 1e-4 and dx < 2e-2 and dw < 2e-2
    return [dict(loss_fused=float(lf), loss_dense=float(ld), loss_rel_diff=loss_rel, grad_hidden_rel_diff=dx,
                 grad_weight_rel_diff=dw, max_abs_diff=max(loss_rel, dx, dw), batch=b, seq=s, vocab=v,
                 status="ok" if ok else "FAIL: fused and dense loss differ beyond the tolerances")]


def case_decode(a: dict, shapes: Shapes) -> list[dict]:
    import jax.numpy as jnp

    model = random_model(check_config(a["model"], shapes), dtype=jnp.bfloat16, param_dtype=jnp.bfloat16)
    rows = []
    for b in (1, 8, 32):
        r = jaxft_decode(model, b, shapes.decode_prompt, shapes.decode_new)
        ok = r["generated"] == b * shapes.decode_new
        rows.append(dict(r, batch=b, prompt=shapes.decode_prompt, new=shapes.decode_new,
                         status="ok" if ok else f"FAIL: {r['generated']} tokens, expected {b * shapes.decode_new}"))
    return rows


CASES = {"train": case_train, "attention": case_attention, "loss": case_loss, "decode": case_decode}


def _row(case_id: str, a: dict, **fields) -> dict:
    check, model, case = case_id.split(":")
    return dict(id=case_id, check=check, model=model, case=case, **fields)


def run_case(a: dict, shapes: Shapes) -> list[dict]:
    """The case's rows, each with its id; an exception becomes a FAIL row per id (the run goes on)."""
    if a.get("skip"):
        return [_row(i, a, batch=a.get("batch"), status=f"skipped: {a['skip']}") for i in a["rows"]]
    try:
        rows = CASES[a["case"]](a, shapes)
    except Exception as e:  # noqa: BLE001 - a check reports every failure as a row
        rows = [dict(status=f"FAIL: {type(e).__name__}: {str(e)[:300]}") for _ in a["rows"]]
    return [_row(i, a, **r) for i, r in zip(a["rows"], rows)]


# ---------------------------------------------------------------------------------------------- report

def versions() -> dict:
    import jax

    out = {"python": platform.python_version()}
    for dist in ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "grain"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = None
    d = jax.devices()[0]
    out.update(backend=jax.default_backend(), device_kind=d.device_kind, device_count=jax.device_count())
    return out


def _fmt(x, spec: str) -> str:
    return "-" if x is None else format(x, spec)


COLUMNS = ("check", "model", "case", "loss", "tok/s", "MFU", "peak GiB", "plan GiB", "XLA GiB", "max|diff|",
           "wall s", "status")


def table_lines(rows: list[dict]) -> list[str]:
    cells = []
    for r in rows:
        loss = f"{r['loss_first']:.3f}->{r['loss_last']:.3f}" if "loss_first" in r else "-"
        diff = r.get("max_abs_diff")
        cells.append((r["check"], r["model"], r["case"] + (f" b{r['batch']}" if r["check"] == "train" else ""),
                      loss, _fmt(r.get("tokens_per_s"), ",.0f"),
                      "-" if r.get("mfu") is None else f"{100 * r['mfu']:.1f}%",
                      _fmt(r.get("peak_gib"), ".1f"), _fmt(r.get("planner_gib"), ".1f"), _fmt(r.get("xla_gib"), ".1f"),
                      _fmt(diff, ".2e"), _fmt(r.get("wall_s"), ".0f"), r["status"]))
    widths = [max(len(str(x)) for x in col) for col in zip(COLUMNS, *cells)]
    line = lambda xs: "  ".join(str(x).ljust(w) for x, w in zip(xs, widths)).rstrip()  # noqa: E731
    return [line(COLUMNS), line("-" * w for w in widths)] + [line(c) for c in cells]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="", help="also write the versions and rows as JSON here")
    ap.add_argument("--dry-run", action="store_true", help="tiny shapes in one process: the same code paths on CPU")
    ap.add_argument("--budget-s", type=float, default=450.0, help="skip cases that would end past this")
    ap.add_argument("--only", default="", help="comma-separated substrings: run only cases with a matching row id")
    ap.add_argument("--full-grid", action="store_true", help="all three methods for every family (longer)")
    ap.add_argument("--in-process", action="store_true", help="no process per case (default on CPU)")
    ap.add_argument("--case", default=None, help=argparse.SUPPRESS)  # internal: run one case (JSON)
    args = ap.parse_args(argv)
    shapes = DRY if args.dry_run else REAL
    if args.case:
        print("RESULT " + json.dumps(run_case(json.loads(args.case), shapes)), flush=True)
        return {}
    import jax

    t0 = time.perf_counter()
    info = versions()
    print("versions: " + ", ".join(f"{k} {v}" for k, v in info.items()), flush=True)
    isolate = not (args.dry_run or args.in_process or jax.default_backend() == "cpu")
    cases = plan(shapes, args.full_grid)
    if args.only:
        keys = args.only.split(",")
        ids = [i for a in cases for i in a["rows"]]
        unknown = [k for k in keys if not any(k in i for i in ids)]
        if unknown:
            ap.error(f"--only: {unknown[0]!r} matches no row; row ids: {', '.join(ids)}")
        cases = [a for a in cases if any(k in i for k in keys for i in a["rows"])]
    rows = []
    for a in cases:
        elapsed = time.perf_counter() - t0
        if not args.dry_run and elapsed + a["est_s"] > args.budget_s:
            rows += [_row(i, a, batch=a.get("batch"),
                          status=f"skipped: time budget ({elapsed:.0f} s + ~{a['est_s']} s > {args.budget_s:.0f} s)")
                     for i in a["rows"]]
            continue
        t = time.perf_counter()
        if isolate and not a.get("skip"):
            got = run_isolated(__file__, a, args.budget_s)
            got = got if isinstance(got, list) else [_row(i, a, status=f"FAIL: {got.get('error', got)}"[:400])
                                                     for i in a["rows"]]
        else:
            got = run_case(a, shapes)
        for r in got:
            r["wall_s"] = (time.perf_counter() - t) / len(got)
            print(json.dumps({k: r.get(k) for k in ("id", "status", "tokens_per_s", "loss_first", "loss_last",
                                                    "max_abs_diff", "wall_s")}), flush=True)
        rows += got
    report = {"versions": info, "dry_run": args.dry_run, "wall_s": time.perf_counter() - t0,
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "rows": rows}
    print(f"\ndevice check ({'dry run, tiny shapes' if args.dry_run else f'seq {shapes.seq}'}), "
          f"{info['device_kind']} x{info['device_count']}, jax {info['jax']}, flax {info['flax']}, "
          f"{report['wall_s']:.0f} s:")
    print("\n".join(table_lines(rows)), flush=True)
    if args.out:
        from jaxft.atomic import write_atomic

        write_atomic(args.out, json.dumps(report, indent=1) + "\n")
    return report


if __name__ == "__main__":
    rep = main()
    sys.exit(1 if any(r["status"].startswith("FAIL") for r in rep.get("rows", [])) else 0)
