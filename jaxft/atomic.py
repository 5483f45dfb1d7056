"""Atomic file writes: a killed run never leaves a half-written metrics, predictions, report or export file."""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """A hidden temporary path beside `path` for the caller to write (e.g. a library writing its own
    file); renamed over `path` (atomic on POSIX) when the block ends, removed when it raises. The file
    gets the usual permissions (0666 minus the umask), not mkstemp's private 0600."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.tmp-")
    os.close(fd)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_atomic(path: str, data: str | bytes) -> None:
    """`data` (text as UTF-8) in `path`, whole or not at all."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)
