"""A report's inputs kept beside it, so the report can be rebuilt without the workdirs.

`python -m jaxft.report --runs=RUNS --out=OUT --keep_inputs` copies every file the report read
(`collect.Runs.inputs`: study.json; per training run metrics.jsonl, summary.json, jaxft_config.json
and data_stats.json; per evaluated cell metrics.json and predictions.jsonl) to OUT/inputs/ in the
layout `collect` reads, so that

    python -m jaxft.report --runs=OUT/inputs --out=OUT [--compare=paper]

rebuilds the same tables and figures from the repository alone. Checkpoints, TensorBoard files and
unfinished evaluations stay behind. One field is dropped: the `prompt` of each prediction (5-shot
prompts are most of a predictions file's size, and no table reads them; metrics.json's template
and shot_ids say how jaxft.eval rebuilds them).

The new copy is written next to the old one and swapped in whole, so OUT/inputs never mixes two
studies' files and a failed copy leaves the previous one in place.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile

from jaxft.atomic import write_atomic
from jaxft.errors import WriteError
from jaxft.eval.resume import PREDICTIONS
from jaxft.jsonl import read_jsonl
from jaxft.report.collect import Runs

INPUTS = "inputs"
DROPPED = ("prompt",)


def inputs_dir(out_dir: str) -> str:
    return os.path.join(out_dir, INPUTS)


def _content(path: str) -> bytes:
    if os.path.basename(path) != PREDICTIONS:
        with open(path, "rb") as f:
            return f.read()
    rows = ({k: v for k, v in row.items() if k not in DROPPED} for row in read_jsonl(path))
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")


def keep_inputs(runs: Runs, out_dir: str) -> str | None:
    """Copy the report's inputs to OUT/inputs; returns that folder, or None when RUNS is it."""
    dest = inputs_dir(out_dir)
    if os.path.realpath(dest) == os.path.realpath(runs.root):
        return None  # a report rebuilt from its own kept inputs: they are already there
    contents = {rel: _content(os.path.join(runs.root, rel)) for rel in runs.inputs}  # read first
    os.makedirs(out_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=out_dir, prefix=f".{INPUTS}.tmp-")
    old = None
    try:
        for rel, data in contents.items():
            write_atomic(os.path.join(tmp, rel), data)
        if os.path.exists(dest):
            old = tempfile.mkdtemp(dir=out_dir, prefix=f".{INPUTS}.old-")
            os.replace(dest, os.path.join(old, INPUTS))
        os.replace(tmp, dest)
        tmp = None
    except OSError as e:
        if old is not None and not os.path.exists(dest):  # put the previous copy back
            os.replace(os.path.join(old, INPUTS), dest)
        if isinstance(e, WriteError):
            raise
        raise WriteError(dest, e) from e
    finally:
        for path in (tmp, old):
            if path is not None and os.path.exists(path):
                shutil.rmtree(path, ignore_errors=True)
    return dest
