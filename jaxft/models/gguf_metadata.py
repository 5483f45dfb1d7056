"""A GGUF file's key/value metadata, read in one pass without the tensor table.

gguf's GGUFReader builds a numpy view per string of every array, which for a 262,144-token
vocabulary (Gemma 3) takes tens of seconds on a small CPU; the tokenizer needs only the values,
so this reads them with struct from one memory map (well under a second for the same file).
Layout (ggml's docs/gguf.md): "GGUF", version u32, tensor count u64, key/value count u64, then
each key (u64 length + UTF-8), its value type u32 and value; all little-endian.
"""

from __future__ import annotations

import mmap
import struct
from typing import Any

import numpy as np

from jaxft.errors import WeightLoadError

# fixed-size value types: gguf.GGUFValueType ids -> struct format / numpy dtype
_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


def read_metadata(path: str) -> dict[str, Any]:
    """{key: value}: numbers, bools and strings as Python values, arrays as lists."""
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m, memoryview(m) as buf:
            return _parse(buf, path)
    except (OSError, ValueError) as e:
        raise WeightLoadError(f"{path}: cannot be read as a GGUF file: {e}") from None


def _parse(buf: memoryview, path: str) -> dict[str, Any]:
    if bytes(buf[:4]) != b"GGUF":
        raise WeightLoadError(f"{path}: not a GGUF file (no 'GGUF' magic)")
    version, = struct.unpack_from("<I", buf, 4)
    if version < 2:
        raise WeightLoadError(f"{path}: GGUF version {version} is not supported (2 and later are)")
    _, n_kv = struct.unpack_from("<QQ", buf, 8)
    pos, out = 24, {}
    try:
        for _ in range(n_kv):
            key, pos = _string(buf, pos)
            kind, = struct.unpack_from("<I", buf, pos)
            out[key], pos = _value(buf, pos + 4, kind, key, path)
        return out
    except struct.error:
        raise WeightLoadError(f"{path}: GGUF metadata is truncated") from None


def _string(buf: memoryview, pos: int) -> tuple[str, int]:
    n, = struct.unpack_from("<Q", buf, pos)
    return str(buf[pos + 8:pos + 8 + n], "utf-8", errors="replace"), pos + 8 + n


def _value(buf: memoryview, pos: int, kind: int, key: str, path: str) -> tuple[Any, int]:
    if kind in _SCALAR:
        fmt = _SCALAR[kind]
        return struct.unpack_from(fmt, buf, pos)[0], pos + struct.calcsize(fmt)
    if kind == _STRING:
        return _string(buf, pos)
    if kind != _ARRAY:
        raise WeightLoadError(f"{path}: GGUF key {key!r} has unknown value type {kind}")
    elem, n = struct.unpack_from("<IQ", buf, pos)
    pos += 12
    if elem in _SCALAR:
        dtype = np.dtype(_SCALAR[elem])
        arr = np.frombuffer(buf, dtype, count=n, offset=pos).copy()
        return arr.tolist(), pos + n * dtype.itemsize
    items = []  # strings (a vocabulary) or, rarely, arrays: one by one
    for _ in range(n):
        v, pos = _value(buf, pos, elem, key, path)
        items.append(v)
    return items, pos
