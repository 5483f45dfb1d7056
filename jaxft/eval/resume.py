"""An evaluation's output directory that survives a kill: finished predictions are appended to
`predictions.partial.jsonl` in complete, flushed and fsynced chunks as decoding goes, under
`fingerprint.json` (everything that decides the predictions). A rerun with the same fingerprint
continues with the problems not yet done; a different one is refused, or starts over where the
caller says so (training and the study, whose evaluations are derived outputs). A failed write (disk
full, no permission) raises WriteError naming the file and loses no finished row: the rerun continues
from what is on disk. A damaged line before the last one is a DataError naming file and line.

Reading (the constructor) and writing (`prepare`) are separate steps, so that several processes
can all read the same state before the one that writes changes it.
"""

from __future__ import annotations

import json
import os
from typing import Any

from jaxft.atomic import write_atomic
from jaxft.errors import ConfigError, DataError, WriteError
from jaxft.jsonl import append_jsonl

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
        path = self._path(PARTIAL)
        with open(path, "rb") as f:
            data = f.read()
        offset = 0
        lines = data.splitlines(keepends=True)
        for lineno, line in enumerate(lines, start=1):
            try:
                row = json.loads(line) if line.endswith(b"\n") else None
            except ValueError:
                row = None
            if not _complete(row, n):
                if any(rest.strip() for rest in lines[lineno:]):  # not the last line: damage, not a kill
                    raise DataError(f"{path}:{lineno}: not a complete prediction row (index 0..{n - 1}, "
                                    f"generation, generated_tokens) with more rows after it; pass --overwrite "
                                    f"to start over")
                break  # a chunk cut by a kill: it is redone
            self.done.setdefault(row["index"], row)
            offset += len(line)
        if offset < len(data):
            self._keep_bytes = offset

    def prepare(self) -> None:
        """Start over (fresh) or cut a torn tail off the partial file; only where this process writes."""
        if not self.write:
            return
        try:
            os.makedirs(self.dir, exist_ok=True)
            if self.fresh:
                for name in (METRICS, PREDICTIONS, PARTIAL):  # the finished-marker first
                    if os.path.exists(self._path(name)):
                        os.remove(self._path(name))
            elif self.metrics is not None and os.path.exists(self._path(PARTIAL)):
                os.remove(self._path(PARTIAL))  # killed between the final files and this cleanup
            elif self._keep_bytes is not None:
                with open(self._path(PARTIAL), "r+b") as f:
                    f.truncate(self._keep_bytes)
                    os.fsync(f.fileno())
        except OSError as e:
            raise WriteError(e.filename or self.dir, e) from e
        if self.fresh:
            write_atomic(self._path(FINGERPRINT), json.dumps(self.args, indent=2, sort_keys=True) + "\n")
        if self.done:
            self.log(f"eval: {self.dir}: {len(self.done)} problems already done, continuing")

    def append(self, rows: list[dict]) -> None:
        """One chunk of finished rows: a single write, flushed and fsynced before decoding goes on."""
        if self.write:
            append_jsonl(self._path(PARTIAL), rows, fsync=True, ensure_ascii=False)
        for row in rows:
            self.done[row["index"]] = row

    def finish(self, rows: list[dict], metrics: dict) -> None:
        """predictions.jsonl (problem order) and metrics.json (written last: it marks the end), then the
        partial file goes."""
        if not self.write:
            return
        write_atomic(self._path(PREDICTIONS), "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        write_atomic(self._path(METRICS), json.dumps(metrics, indent=2) + "\n")
        try:
            if os.path.exists(self._path(PARTIAL)):
                os.remove(self._path(PARTIAL))
        except OSError as e:  # both final files are complete: a later run removes it (prepare)
            self.log(f"eval: cannot remove {self._path(PARTIAL)}: {e.strerror or e}")
