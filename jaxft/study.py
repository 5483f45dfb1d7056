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

from jaxft.atomic import write_atomic
from jaxft.cli import entry_point
from jaxft.errors import ConfigError
from jaxft.peft.methods import METHODS

BASELINES = {"zero-shot": 0, "5-shot": 5}  # evaluation-only methods: shots of the few-shot prompt


def _train_config(study, model_key: str, method: str):
    """The model's config as `python -m jaxft.train` would read it with the study's overrides: the method,
    then train_overrides, then the method's learning rate from study.learning_rates if given (else the
    config's own, or the method's protocol rate when the config leaves it at 0.0)."""
    from jaxft.train.config import load_config_file

    path = study.model_configs[model_key].format(method=method)
    if not os.path.isabs(path):
        path = os.path.join(study.config_root, path)
    overrides = [("method", method), *((key, str(value)) for key, value in study.train_overrides.items())]
    if method in study.get("learning_rates", {}):  # the study's protocol differs per method
        overrides.append(("optim.learning_rate", repr(float(study.learning_rates[method]))))
    return load_config_file(path, overrides)


def _eval_cell(study, model, tok, model_name: str, bench: str, shots: int, out: str, seed: int,
               identity: dict, trained_template: str | None = None) -> dict:
    from jaxft.eval.runner import evaluate
    from jaxft.eval.settings import eval_settings_from

    settings = eval_settings_from(study.eval, task=bench, split="test", shots=shots,
                                  limit=study.eval.limits.get(bench) or None, data_dir=study.data_dir, seed=seed)
    # A cell killed mid-evaluation continues; one left by other settings or weights is redone.
    return evaluate(model, tok, settings, output_dir=out, model_name=model_name, progress=study.progress,
                    if_changed="restart", identity=identity, trained_template=trained_template)


def run_study(study, workdir: str, *, log=print) -> list[dict]:
    """Run every missing cell of the grid; returns one record per cell (ran or skipped)."""
    from jaxft.data.tasks import TASKS
    from jaxft.rundir import StudyCell, study_file
    from jaxft.run_setup import build_model
    from jaxft.train.config import untrained_fingerprint, weights_fingerprint
    from jaxft.train.loop import train
    from jaxft.train.restore import restore_model

    unknown = [m for m in study.methods if m not in BASELINES and m not in METHODS]
    if unknown:
        raise ConfigError(f"study.methods: unknown method {unknown[0]!r}; allowed: "
                          f"{', '.join([*BASELINES, *METHODS])}")
    unknown = [m for m in study.get("learning_rates", {}) if m not in METHODS]
    if unknown:
        raise ConfigError(f"study.learning_rates: unknown method {unknown[0]!r}; allowed: {', '.join(METHODS)}")
    unknown = [b for b in study.benchmarks if b not in TASKS]
    if unknown:
        raise ConfigError(f"study.benchmarks: unknown task {unknown[0]!r}; allowed: {', '.join(TASKS)}")
    write_atomic(study_file(workdir), json.dumps({"models": list(study.models), "methods": list(study.methods),
                                                  "benchmarks": list(study.benchmarks),
                                                  "sample_ids": study.sample_ids.to_dict()}, indent=2))
    cells = []
    for model_key in study.models:
        for method in study.methods:
            cell = StudyCell(workdir, model_key, method)
            todo = [b for b in study.benchmarks if not cell.evaluated(b)]
            for b in study.benchmarks:
                if b not in todo:
                    cells.append({"model": model_key, "method": method, "benchmark": b, "status": "skipped"})
            if not todo:
                log(f"[study] {model_key}/{method}: all cells done, skipped")
                continue
            c = _train_config(study, model_key, method if method in METHODS else "full")
            # before train() resolves c; a baseline's weights are the untrained model's
            identity = ({"method": method, "model_sha256": untrained_fingerprint(c)} if method in BASELINES
                        else {"method": method, "config_sha256": weights_fingerprint(c)})
            if method in BASELINES:
                model, tok = build_model(c)
                shots = BASELINES[method]
            else:
                train_dir = cell.train.root
                if not cell.train.is_finished():
                    log(f"[study] {model_key}/{method}: training in {train_dir}")
                    c.eval.final = False
                    train(c, train_dir, progress=study.progress)
                model, tok, _ = restore_model(train_dir)
                shots = 0
            for bench in todo:
                t0 = time.time()
                m = _eval_cell(study, model, tok, c.model, bench, shots, cell.eval_dir(bench), c.seed,
                               identity, None if method in BASELINES else c.data.template)
                log(f"[study] {model_key}/{method}/{bench}: exact match {m['exact_match']:.1f}% "
                    f"(n={m['n']}, {time.time() - t0:.0f}s)")
                cells.append({"model": model_key, "method": method, "benchmark": bench, "status": "ran",
                              "exact_match": m["exact_match"]})
    return cells


@entry_point(__doc__)
def main(argv: list[str]) -> None:
    from jaxft.train.config import parse_command_line

    cl = parse_command_line(argv, flags=("workdir",), required={"workdir": "DIR"}, training=False,
                            usage="expected --config=configs/study.py --workdir=DIR [--config.KEY=VALUE ...]")
    study = cl.config
    if not study.get("config_root"):  # model_configs paths are relative to the study config's repository
        study.config_root = os.path.dirname(os.path.dirname(os.path.abspath(cl.config_path)))
    run_study(study, cl.flags["workdir"])


if __name__ == "__main__":
    sys.exit(main())
