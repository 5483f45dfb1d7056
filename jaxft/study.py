"""`python -m jaxft.study --config=configs/study.py --workdir=DIR`: the study's grid.

For each model, method (zero-shot, 5-shot ICL, Full FT, LoRA, DoRA) and benchmark: train through
jaxft.train (fine-tuning methods), then evaluate through jaxft.eval. Every cell writes
`<model>/<method>/eval/<benchmark>/metrics.json`; a cell whose metrics.json exists is skipped, and
an interrupted training resumes from its checkpoint, so a killed study continues where it stopped.
The layout is what `python -m jaxft.report` reads.
"""

from __future__ import annotations

import json
import os
import sys
import time

from jaxft.errors import ConfigError, JaxftError

BASELINES = {"zero-shot": 0, "5-shot": 5}
FINETUNES = ("full", "lora", "dora")


def _train_config(study, model_key: str, method: str):
    from jaxft.train.config import apply_override, load_config_file

    path = study.model_configs[model_key].format(method=method)
    if not os.path.isabs(path):
        path = os.path.join(study.config_root, path)
    c = load_config_file(path)
    c.method = method
    for key, value in study.train_overrides.items():
        apply_override(c, key, str(value))
    if method in study.get("learning_rates", {}):  # the study's protocol differs per method
        c.optim.learning_rate = float(study.learning_rates[method])
    return c


def _eval_cell(study, model, tok, model_name: str, bench: str, shots: int, out: str, seed: int,
               identity: dict) -> dict:
    from jaxft.eval.runner import EvalSettings, evaluate

    settings = EvalSettings(task=bench, split="test", shots=shots, template=study.eval.template,
                            limit=study.eval.limits.get(bench) or None, batch_size=study.eval.batch_size,
                            max_new_tokens=study.eval.max_new_tokens, data_dir=study.data_dir or None, seed=seed)
    # A cell killed mid-evaluation continues; one left by other settings or weights is redone.
    return evaluate(model, tok, settings, output_dir=out, model_name=model_name, progress=study.progress,
                    if_changed="restart", identity=identity)


def run_study(study, workdir: str, *, log=print) -> list[dict]:
    """Run every missing cell of the grid; returns one record per cell (ran or skipped)."""
    from jaxft.models import load_model
    from jaxft.train.config import weights_fingerprint
    from jaxft.train.loop import build_model, train
    from jaxft.train.restore import restore_model

    unknown = [m for m in study.methods if m not in BASELINES and m not in FINETUNES]
    if unknown:
        raise ConfigError(f"study.methods: unknown method {unknown[0]!r}; allowed: "
                          f"{', '.join([*BASELINES, *FINETUNES])}")
    unknown = [m for m in study.get("learning_rates", {}) if m not in FINETUNES]
    if unknown:
        raise ConfigError(f"study.learning_rates: unknown method {unknown[0]!r}; allowed: {', '.join(FINETUNES)}")
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "study.json.tmp"), "w") as f:
        json.dump({"models": list(study.models), "methods": list(study.methods),
                   "benchmarks": list(study.benchmarks), "sample_ids": study.sample_ids.to_dict()}, f, indent=2)
    os.replace(os.path.join(workdir, "study.json.tmp"), os.path.join(workdir, "study.json"))
    cells = []
    for model_key in study.models:
        for method in study.methods:
            run_dir = os.path.join(workdir, model_key, method)
            todo = [b for b in study.benchmarks
                    if not os.path.isfile(os.path.join(run_dir, "eval", b, "metrics.json"))]
            for b in study.benchmarks:
                if b not in todo:
                    cells.append({"model": model_key, "method": method, "benchmark": b, "status": "skipped"})
            if not todo:
                log(f"[study] {model_key}/{method}: all cells done, skipped")
                continue
            c = _train_config(study, model_key, method if method in FINETUNES else "full")
            identity = {"method": method, "config_sha256": weights_fingerprint(c)}  # before train() resolves c
            if method in BASELINES:
                if c.model == "random":
                    model, tok = build_model(c)
                else:
                    model, tok = load_model(c.model, dtype=c.compute_dtype)
                shots = BASELINES[method]
            else:
                train_dir = os.path.join(run_dir, "train")
                if not os.path.isfile(os.path.join(train_dir, "summary.json")):
                    log(f"[study] {model_key}/{method}: training in {train_dir}")
                    c.eval.final = False
                    train(c, train_dir, progress=study.progress)
                model, tok, _ = restore_model(train_dir)
                shots = 0
            for bench in todo:
                t0 = time.time()
                m = _eval_cell(study, model, tok, c.model, bench, shots, os.path.join(run_dir, "eval", bench), c.seed,
                               identity)
                log(f"[study] {model_key}/{method}/{bench}: exact match {m['exact_match']:.1f}% "
                    f"(n={m['n']}, {time.time() - t0:.0f}s)")
                cells.append({"model": model_key, "method": method, "benchmark": bench, "status": "ran",
                              "exact_match": m["exact_match"]})
    return cells


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    from jaxft.train.config import apply_override, load_config_file

    try:
        opts = dict(a[2:].split("=", 1) for a in argv if a.startswith("--") and "=" in a)
        bad = [a for a in argv if not (a.startswith("--") and "=" in a)]
        if bad or "config" not in opts or "workdir" not in opts:
            raise ConfigError("usage: python -m jaxft.study --config=configs/study.py --workdir=DIR "
                              "[--config.KEY=VALUE ...]")
        study = load_config_file(opts["config"])
        study.config_root = os.path.dirname(os.path.dirname(os.path.abspath(opts["config"])))
        for k, v in opts.items():
            if k.startswith("config."):
                apply_override(study, k[len("config."):], v)
        run_study(study, opts["workdir"])
    except JaxftError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
