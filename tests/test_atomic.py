"""write_atomic: the old file survives a failed write, no temporary is left, permissions are the usual."""

import os

import pytest

from jaxft.atomic import write_atomic


def test_write_atomic_replaces_whole_files_with_normal_permissions(tmp_path):
    path = tmp_path / "sub" / "metrics.json"
    write_atomic(str(path), '{"a": 1}\n')
    assert path.read_text() == '{"a": 1}\n'
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    write_atomic(str(path), b"bytes too")
    assert path.read_bytes() == b"bytes too"


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "predictions.jsonl"
    path.write_text("old\n")
    with pytest.raises(TypeError):
        write_atomic(str(path), 123)  # neither str nor bytes: fails while writing
    assert path.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["predictions.jsonl"]
