"""`python -m jaxft.analyze hessian|intruders|displacement --checkpoint=SRC [--base=SRC] --out=OUT`.

Writes OUT/<kind>.json and PNG figures. SRC may be anything `load_model` accepts (registry name,
HF directory, .gguf file, hub id), a PEFT adapter directory (then --base names its base model), or
a training-run workdir (restored by `jaxft.train.checkpoint.restore_model`).

The Hessian is that of the plain LM loss (every token) over --batches fixed batches of
--batch_size x --seq_len tokens: GSM8K train problems with their solutions (--data=gsm8k, the
default), a JSON Lines file (--data=PATH: `text`, or `question` + `answer` per row), or uniform
random tokens (--data=random, for models without a tokenizer). It is computed in float32 whatever
dtype a run trained in (a workdir is rebuilt with float32 compute; --dtype=bfloat16 overrides), and
for DoRA with the norm ||W + sBA|| differentiated: the loss the model computes, not the detached
surrogate training differentiates.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any


from jaxft.atomic import write_atomic
from jaxft.cli import USAGE_ERROR, ArgumentParser, entry_point
from jaxft.errors import ConfigError, JaxftError, UnknownModelError
from jaxft.rundir import CONFIG, dir_kind, is_training_workdir

def load_source(src: str, base: str | None = None, dtype: str = "float32") -> tuple[Any, Any]:
    """(model, tokenizer) for a training workdir, HF dir, PEFT adapter dir, or any load_model source,
    computing in `dtype` (a workdir's own compute dtype is replaced)."""
    from jaxft.models import load_model

    kind = dir_kind(src)
    if kind == "workdir":
        from jaxft.train.restore import restore_model

        model, tokenizer, _ = restore_model(src, compute_dtype=dtype)
        return model, tokenizer
    if kind == "hf":
        return load_model(src, dtype=dtype)
    if kind == "adapter":
        if base is None:
            raise ConfigError(f"{src!r} is a PEFT adapter directory; name its base model with --base")
        from jaxft.peft.export import load_peft_adapter

        model, tokenizer = load_model(base, dtype=dtype)
        return load_peft_adapter(model, src), tokenizer
    if os.path.isdir(src):
        raise UnknownModelError(f"{src!r} is a directory without config.json (HF model), adapter_config.json "
                                f"(PEFT adapter) or checkpoints/ + {CONFIG} (training workdir)")
    return load_model(src, dtype=dtype)


def workdir_base_model(workdir: str) -> Any:
    """The model a training run started from (its config with method=full: the loaded or seeded base)."""
    from jaxft.rundir import read_config
    from jaxft.run_setup import build_model

    c = read_config(workdir)
    c.method = "full"
    return build_model(c)[0]


def _batches(args, model, tokenizer) -> list[dict]:
    from jaxft.analysis import batches as B

    n, bs, sl = args.batches, args.batch_size, args.seq_len
    if args.data == "random":
        return B.random_batches(model.config.vocab_size, bs, sl, n, seed=args.seed)
    texts = B.gsm8k_texts() if args.data == "gsm8k" else B.jsonl_texts(args.data)
    return B.text_batches(texts, tokenizer, bs, sl, n)


def run_hessian(args) -> dict:
    from jaxft.analysis import hessian as H
    from jaxft.analysis import plots

    model, tokenizer = load_source(args.checkpoint, args.base, args.dtype)
    batches = _batches(args, model, tokenizer)
    problem = H.hessian_problem(model, batches, args.subset)
    timings = {}
    t0 = time.perf_counter()
    top = H.lanczos_top_k(problem.hvp, problem.params, args.k, args.lanczos_steps, seed=args.seed,
                          reorth=args.reorth, basis_on_host=args.basis_on_host, basis_dir=args.basis_dir)
    timings["lanczos"] = time.perf_counter() - t0
    result = {
        "checkpoint": args.checkpoint, "subset": args.subset, "num_params": problem.num_params,
        "compute_dtype": args.dtype,
        "loss": problem.loss(),
        "data": {"source": args.data, "batches": args.batches, "batch_size": args.batch_size,
                 "seq_len": args.seq_len, "loss_on": "all tokens"},
        "top_eigenvalues": {"method": f"lanczos (reorth={args.reorth})", "values": top.values.tolist(),
                            "residuals": None if top.residuals is None else top.residuals.tolist(),
                            "steps": top.matvecs},
    }
    series = {"Lanczos": top.values}
    if args.power:
        t0 = time.perf_counter()
        power = H.power_iteration(problem.hvp, problem.params, args.k, iters=args.power_iters, seed=args.seed)
        timings["power_iteration"] = time.perf_counter() - t0
        result["power_iteration"] = {"values": power.values.tolist(), "matvecs": power.matvecs,
                                     "note": "largest magnitude, Hotelling deflation"}
        series["power iteration"] = power.values
    t0 = time.perf_counter()
    trace = H.hutchinson_trace(problem.hvp, problem.params, args.trace_probes, seed=args.seed)
    timings["hutchinson"] = time.perf_counter() - t0
    result["trace"] = {"mean": trace.mean, "stderr": trace.stderr, "probes": args.trace_probes}
    t0 = time.perf_counter()
    density = H.slq_density(problem.hvp, problem.params, probes=args.slq_probes, m=args.slq_steps,
                            seed=args.seed, basis_on_host=args.basis_on_host, basis_dir=args.basis_dir)
    timings["slq"] = time.perf_counter() - t0
    result["density"] = density.to_dict()
    result["moments"] = {"mean_eigenvalue": density.moment(1), "mean_squared_eigenvalue": density.moment(2)}
    result["seconds"] = timings
    plots.save(plots.plot_density(density.grid, density.density), os.path.join(args.out, "hessian_density.png"))
    plots.save(plots.plot_top_eigenvalues(series), os.path.join(args.out, "hessian_top_eigenvalues.png"))
    return result


def _pair(args) -> tuple[dict, dict, dict | None]:
    """(base flat, fine-tuned flat merged, LoRA bounds or None)."""
    from jaxft.analysis import spectral as S

    model, _ = load_source(args.checkpoint, args.base)
    tuned, scalings = S.model_flat(model)
    if args.base is not None:
        base, base_scalings = S.model_flat(load_source(args.base)[0])
        if base_scalings:
            base = S.merge_adapters_flat(base, scaling=base_scalings)
    elif scalings:  # an adapted checkpoint carries its own base weights
        base = {k: v for k, v in tuned.items() if ".lora_" not in k}
    elif is_training_workdir(args.checkpoint):
        base = S.model_flat(workdir_base_model(args.checkpoint))[0]
    else:
        raise ConfigError(f"{args.kind} compares two models: give the base model with --base "
                          "(only adapter checkpoints carry their own base weights)")
    bounds = None
    if scalings:
        bounds = S.lora_bounds(tuned, scaling=scalings)
        tuned = S.merge_adapters_flat(tuned, scaling=scalings)
    return base, tuned, bounds


def run_intruders(args) -> dict:
    from jaxft.analysis import plots, spectral

    base, tuned, _ = _pair(args)
    result = spectral.intruder_dimensions(base, tuned, k=args.k, epsilon=args.epsilon, base_k=args.base_k)
    result.update(checkpoint=args.checkpoint, base=args.base)
    fig = plots.plot_per_layer(result["matrices"], "count", ylabel="intruder dimensions",
                               title=f"Intruder dimensions (top-{args.k}, ε={args.epsilon})")
    plots.save(fig, os.path.join(args.out, "intruders.png"))
    return result


def run_displacement(args) -> dict:
    from jaxft.analysis import plots, spectral

    base, tuned, bounds = _pair(args)
    result = spectral.weight_displacement(base, tuned, bounds=bounds)
    result.update(checkpoint=args.checkpoint, base=args.base)
    fig = plots.plot_per_layer(result["matrices"], "abs", ylabel="||W - W0||_F (summed over matrices)",
                               title="Weight displacement", bound_key="lora_bound" if bounds else None)
    plots.save(fig, os.path.join(args.out, "displacement.png"))
    fig = plots.plot_per_layer(result["matrices"], "rel", ylabel="||W - W0||_F / ||W0||_F (summed)",
                               title="Relative weight displacement")
    plots.save(fig, os.path.join(args.out, "displacement_relative.png"))
    return result


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m jaxft.analyze", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="kind", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--checkpoint", required=True, help="model to analyse (any load_model source, "
                        "PEFT adapter dir or training workdir)")
    common.add_argument("--base", default=None, help="base model to compare against / base of an adapter dir")
    common.add_argument("--out", required=True, help="output directory")
    common.add_argument("--seed", type=int, default=0)

    h = sub.add_parser("hessian", parents=[common], help="top-k eigenvalues, trace and SLQ spectral density")
    h.add_argument("--k", type=int, default=5, help="number of top eigenvalues")
    h.add_argument("--subset", default="all", help="'all', 'adapters', or a regex over HF parameter names")
    h.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                   help="compute dtype of the analysed model, whatever the run trained in")
    h.add_argument("--data", default="gsm8k", help="'gsm8k', 'random' or a .jsonl path")
    h.add_argument("--batches", type=int, default=2)
    h.add_argument("--batch_size", type=int, default=4)
    h.add_argument("--seq_len", type=int, default=128)
    h.add_argument("--lanczos_steps", type=int, default=30)
    h.add_argument("--reorth", choices=("full", "none"), default="full")
    h.add_argument("--basis_on_host", action="store_true", help="keep Lanczos bases in host RAM")
    h.add_argument("--basis_dir", default=None, help="memory-map Lanczos bases to a temporary file here")
    h.add_argument("--power", action="store_true", help="also run power iteration (with deflation)")
    h.add_argument("--power_iters", type=int, default=100)
    h.add_argument("--trace_probes", type=int, default=20)
    h.add_argument("--slq_probes", type=int, default=4)
    h.add_argument("--slq_steps", type=int, default=30)

    for kind, text in (("intruders", "intruder dimensions per weight matrix"),
                       ("displacement", "||W - W0||_F per weight matrix, with the LoRA bound")):
        s = sub.add_parser(kind, parents=[common], help=text)
        if kind == "intruders":
            s.add_argument("--k", type=int, default=10, help="top singular vectors of W examined")
            s.add_argument("--epsilon", type=float, default=0.5, help="max |cos| below which one is an intruder")
            s.add_argument("--base_k", type=int, default=None, help="compare with only W0's top base_k vectors")
    return p


def _check(args) -> None:
    for name in ("k", "batches", "batch_size", "seq_len", "lanczos_steps", "power_iters", "trace_probes",
                 "slq_probes", "slq_steps", "base_k"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise ConfigError(f"--{name}={value} must be >= 1")
    if getattr(args, "trace_probes", 2) < 2:
        raise ConfigError("--trace_probes must be >= 2 (the standard error needs two samples)")


@entry_point(codes=((JaxftError, USAGE_ERROR), (OSError, USAGE_ERROR)))
def main(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    _check(args)
    os.makedirs(args.out, exist_ok=True)
    result = {"hessian": run_hessian, "intruders": run_intruders, "displacement": run_displacement}[args.kind](args)
    path = os.path.join(args.out, f"{args.kind}.json")
    write_atomic(path, json.dumps(result, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
