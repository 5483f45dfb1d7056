"""The one JSON Lines reader: data files, metrics.jsonl, predictions and reports all read rows the same
way, and a bad line is a DataError naming the file and the line."""

from __future__ import annotations

import json
from typing import Any, Iterator

from jaxft.errors import DataError


def iter_jsonl(path: str, *, limit: int | None = None, torn_tail: bool = False) -> Iterator[tuple[str, dict]]:
    """(where, row) per non-blank line, `where` being "path:line" for messages; at most `limit` rows.

    `torn_tail=True` is for files this project appends to while it may be killed (metrics.jsonl): a
    line that does not parse, and everything after it, is what a kill mid-write left, so reading stops
    there instead of raising.
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
                if torn_tail:
                    return
                raise DataError(f"{where}: not UTF-8 ({e})") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                if torn_tail:
                    return
                raise DataError(f"{where}: malformed JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(row, dict):
                raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
            count += 1
            yield where, row


def read_jsonl(path: str, **kwargs: Any) -> list[dict]:
    """Every row of `path` (see `iter_jsonl` for `limit` and `torn_tail`)."""
    return [row for _, row in iter_jsonl(path, **kwargs)]
