"""An evaluation's output directory that survives a kill: finished predictions are appended to
`predictions.partial.jsonl` in complete, flushed and fsynced chunks as decoding goes, under
`fingerprint.json` (everything that decides the predictions). A rerun with the same fingerprint
continues with the problems not yet done; a different one is refused, or starts over where the
caller says so (training and the study, whose evaluations are derived outputs).

Reading (the constructor) and writing (`prepare`) are separate steps, so that several processes
can all read the same state before the one that writes changes it.
"""

from __future__ import annotations

import json
import os
from typing import Any

from jaxft.atomic import write_atomic
from jaxft.errors import ConfigError

PARTIAL = "predictions.partial.jsonl"
FINGERPRINT = "fingerprint.json"
PREDICTIONS = "predictions.jsonl"
METRICS = "metrics.json"
IF_CHANGED = ("error", "restart")


def _changes(stored: dict | None, args: dict) -> str:
    if stored is None:
        return f"no {FINGERPRINT}, so the arguments it was run with are unknown"

    def show(v):
        text = json.dumps(v)
        return text if len(text) <= 40 else text[:37] + "..."

    keys = [k for k in dict.fromkeys([*stored, *args]) if stored.get(k) != args.get(k)]
    return ", ".join(f"{k}: {show(stored.get(k))} -> {show(args.get(k))}" for k in keys)


def _complete(row: Any, n: int) -> bool:
    return (isinstance(row, dict) and isinstance(row.get("index"), int) and 0 <= row["index"] < n
            and isinstance(row.get("generation"), str) and isinstance(row.get("generated_tokens"), int))


class EvalOutput:
    """`done` maps problem index -> finished row ({"index", "id", "generation", "generated_tokens"});
    `metrics` is the stored metrics.json when the evaluation already finished with these arguments."""

    def __init__(self, output_dir: str, args: dict[str, Any], *, n: int, overwrite: bool = False,
                 if_changed: str = "error", write: bool = True, log=print):
        if if_changed not in IF_CHANGED:
            raise ValueError(f"if_changed={if_changed!r}; allowed: {', '.join(IF_CHANGED)}")
        self.dir, self.write, self.log = output_dir, write, log
        self.args = json.loads(json.dumps(args))  # as it reads back from JSON (tuples become lists)
        self.done: dict[int, dict] = {}
        self.metrics: dict | None = None
        self._keep_bytes: int | None = None  # the partial file's readable prefix, when it has a torn tail
        self.fresh = overwrite
        stored = self._read_json(FINGERPRINT)
        existing = [f for f in (PARTIAL, PREDICTIONS, METRICS) if os.path.exists(self._path(f))]
        if not overwrite and (stored is not None or existing) and stored != self.args:
            changes = _changes(stored, self.args)
            if if_changed == "error":
                raise ConfigError(f"{output_dir}: holds an evaluation with other arguments ({changes}); rerun "
                                  f"with the same arguments to continue it, or pass --overwrite to start over")
            log(f"eval: {output_dir} holds an evaluation with other arguments ({changes}); starting over")
            self.fresh = True
        if self.fresh or stored is None:
            self.fresh = True
            return
        if os.path.exists(self._path(METRICS)) and os.path.exists(self._path(PREDICTIONS)):
            self.metrics = self._read_json(METRICS)
        elif os.path.exists(self._path(PARTIAL)):
            self._read_partial(n)

    def _path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def _read_json(self, name: str) -> Any:
        try:
            with open(self._path(name)) as f:
                return json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            raise ConfigError(f"{self._path(name)}: unreadable ({e}); pass --overwrite to start over") from e

    def _read_partial(self, n: int) -> None:
        with open(self._path(PARTIAL), "rb") as f:
            data = f.read()
        offset = 0
        for line in data.splitlines(keepends=True):
            try:
                row = json.loads(line) if line.endswith(b"\n") else None
            except ValueError:
                row = None
            if not _complete(row, n):
                break  # a chunk cut by a kill: it and anything after it are redone
            self.done.setdefault(row["index"], row)
            offset += len(line)
        if offset < len(data):
            self._keep_bytes = offset

    def prepare(self) -> None:
        """Start over (fresh) or cut a torn tail off the partial file; only where this process writes."""
        if not self.write:
            return
        os.makedirs(self.dir, exist_ok=True)
        if self.fresh:
            for name in (METRICS, PREDICTIONS, PARTIAL):  # the finished-marker first
                if os.path.exists(self._path(name)):
                    os.remove(self._path(name))
            write_atomic(self._path(FINGERPRINT), json.dumps(self.args, indent=2, sort_keys=True) + "\n")
        elif self.metrics is not None and os.path.exists(self._path(PARTIAL)):
            os.remove(self._path(PARTIAL))  # killed between the final files and this cleanup
        elif self._keep_bytes is not None:
            with open(self._path(PARTIAL), "r+b") as f:
                f.truncate(self._keep_bytes)
                os.fsync(f.fileno())
        if self.done:
            self.log(f"eval: {self.dir}: {len(self.done)} problems already done, continuing")

    def append(self, rows: list[dict]) -> None:
        """One chunk of finished rows: a single write, flushed and fsynced before decoding goes on."""
        for row in rows:
            self.done[row["index"]] = row
        if not self.write or not rows:
            return
        data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")
        with open(self._path(PARTIAL), "ab") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    def finish(self, rows: list[dict], metrics: dict) -> None:
        """predictions.jsonl (problem order) and metrics.json (written last: it marks the end), then the
        partial file goes."""
        if not self.write:
            return
        write_atomic(self._path(PREDICTIONS), "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        write_atomic(self._path(METRICS), json.dumps(metrics, indent=2) + "\n")
        if os.path.exists(self._path(PARTIAL)):
            os.remove(self._path(PARTIAL))
