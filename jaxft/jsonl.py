"""The one JSON Lines reader (and appender): data files, metrics.jsonl, predictions and reports all read
rows the same way, and a bad line is a DataError naming the file and the line."""

from __future__ import annotations

import json
from typing import Any, Iterator

from jaxft.atomic import append_atomic
from jaxft.errors import DataError


def iter_jsonl(path: str, *, limit: int | None = None, torn_tail: bool = False) -> Iterator[tuple[str, dict]]:
    """(where, row) per non-blank line, `where` being "path:line" for messages; at most `limit` rows.

    `torn_tail=True` is for files this project appends to while it may be killed (metrics.jsonl): a
    last line that does not parse is what a kill mid-write left, so reading stops there instead of
    raising. A bad line with more after it is no torn tail but damage, and raises all the same.
    """
    count = 0
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if limit is not None and count >= limit:
                return
            where = f"{path}:{lineno}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                if torn_tail and not f.read().strip():
                    return
                raise DataError(f"{where}: not UTF-8 ({e})") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                if torn_tail and not f.read().strip():  # nothing after it: a kill cut the last line
                    return
                raise DataError(f"{where}: malformed JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(row, dict):
                raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
            count += 1
            yield where, row


def read_jsonl(path: str, **kwargs: Any) -> list[dict]:
    """Every row of `path` (see `iter_jsonl` for `limit` and `torn_tail`)."""
    return [row for _, row in iter_jsonl(path, **kwargs)]


def append_jsonl(path: str, rows: list[dict], *, fsync: bool = False, ensure_ascii: bool = True) -> None:
    """`rows` appended as one write, whole or not at all (jaxft.atomic.append_atomic: a failure raises
    WriteError naming `path` and leaves the lines before intact)."""
    if rows:
        data = "".join(json.dumps(row, ensure_ascii=ensure_ascii) + "\n" for row in rows)
        append_atomic(path, data.encode("utf-8"), fsync=fsync)
