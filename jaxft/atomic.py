"""Atomic file writes: a killed run never leaves a half-written metrics, predictions, report or export file,
and a failed write (disk full, no permission) raises WriteError naming the file, with the previous
complete file still in place."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from typing import Iterator

from jaxft.errors import WriteError


def _as_write_error(path: str, error: OSError) -> WriteError:
    return error if isinstance(error, WriteError) else WriteError(path, error)


def _usual_mode(path: str, mode: int) -> None:
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, mode & ~umask)


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """A hidden temporary path beside `path` for the caller to write (e.g. a library writing its own
    file); renamed over `path` (atomic on POSIX) when the block ends, removed when it raises. The file
    gets the usual permissions (0666 minus the umask), not mkstemp's private 0600. An OSError on the
    way (the caller's writes included) becomes a WriteError naming `path`."""
    tmp = None
    try:
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.tmp-")
        os.close(fd)
        yield tmp
        _usual_mode(tmp, 0o666)
        os.replace(tmp, path)
    except OSError as e:
        raise _as_write_error(path, e) from e
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write_atomic(path: str, data: str | bytes) -> None:
    """`data` (text as UTF-8) in `path`, whole or not at all (flushed to disk before the rename)."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    if not isinstance(payload, bytes):
        raise TypeError(f"write_atomic({path!r}): data must be str or bytes, got {type(data).__name__}")
    with atomic_path(path) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_TRUNC)
        try:
            _write_all(fd, payload)
            os.fsync(fd)
        finally:
            os.close(fd)


def append_atomic(path: str, data: bytes, *, fsync: bool = False) -> None:
    """`data` appended to `path` (created if missing), whole or not at all: after a failed write the file
    is cut back to what it held before, so its complete lines stay complete."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    except OSError as e:
        raise _as_write_error(path, e) from e
    try:
        size = os.fstat(fd).st_size
        try:
            _write_all(fd, data)
            if fsync:
                os.fsync(fd)
        except OSError as e:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
            raise _as_write_error(path, e) from e
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_dir(out_dir: str) -> Iterator[str]:
    """A temporary directory beside `out_dir` for the caller to fill; on success it replaces `out_dir`
    (the previous one is put back if that fails), on error it is removed. An OSError on the way
    becomes a WriteError naming `out_dir`."""
    out_dir = os.path.abspath(out_dir)
    parent = os.path.dirname(out_dir)
    tmp = None
    try:
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.tmp-", dir=parent)
        _usual_mode(tmp, 0o777)  # mkdtemp's 0700 would make the export private
        yield tmp
        if not os.path.exists(out_dir):
            os.rename(tmp, out_dir)
            tmp = None
            return
        old = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.old-", dir=parent)
        try:
            os.rename(out_dir, os.path.join(old, "prev"))
            try:
                os.rename(tmp, out_dir)
                tmp = None
            except BaseException:
                os.rename(os.path.join(old, "prev"), out_dir)  # put the previous export back
                raise
        finally:
            shutil.rmtree(old, ignore_errors=True)
    except OSError as e:
        raise _as_write_error(out_dir, e) from e
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
