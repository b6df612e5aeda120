"""Files other jobs read are written under a temporary name and renamed; a failed write leaves nothing."""
import errno

import pytest

from carcolor import atomic


def _disk_full(tmp):
    tmp.write_bytes(b"x" * 1000)  # part of the file made it to disk
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_write_that_fails_leaves_neither_a_partial_file_nor_a_changed_one(tmp_path):
    path = tmp_path / "summary.json"
    path.write_text("old")
    with pytest.raises(OSError, match="No space left"):
        atomic.write_with(path, _disk_full)
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


def test_files_written_together_are_all_replaced_or_none(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text("old a")
    with pytest.raises(OSError):
        atomic.write_together({a: lambda tmp: tmp.write_text("new a"), b: _disk_full})
    assert a.read_text() == "old a" and sorted(p.name for p in tmp_path.iterdir()) == ["a.csv"]
    atomic.write_together({a: lambda tmp: tmp.write_text("new a"), b: lambda tmp: tmp.write_text("new b")})
    assert (a.read_text(), b.read_text()) == ("new a", "new b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "b.csv"]
