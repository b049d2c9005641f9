"""Safe output: whole or not at all, and never over a directory that is not ours."""

from __future__ import annotations

import errno

import pytest

from sparsearch.errors import ConfigError, WriteError
from sparsearch.safe_io import atomic_dir, atomic_file, refuse_foreign, write_text


def test_a_file_is_replaced_whole_and_a_failure_keeps_the_previous_one(tmp_path) -> None:
    path = write_text(tmp_path / "out.json", "first\n")
    assert path.read_text() == "first\n" and oct(path.stat().st_mode & 0o777) == "0o644"
    with pytest.raises(RuntimeError), atomic_file(path) as tmp:
        assert tmp.suffix == ".json" and tmp.parent == tmp_path
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert path.read_text() == "first\n" and sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_an_os_error_becomes_one_write_error(tmp_path) -> None:
    message = r"out.txt: cannot write the summary \(No space left on device\); nothing"
    with pytest.raises(WriteError, match=message), atomic_file(tmp_path / "out.txt", "summary"):
        raise OSError(errno.ENOSPC, "No space left on device")
    assert list(tmp_path.iterdir()) == []


def test_a_directory_is_swapped_in_whole(tmp_path) -> None:
    out = tmp_path / "report"
    with atomic_dir(out, "report") as tmp:
        (tmp / "a.txt").write_text("1")
    with pytest.raises(WriteError, match="the previous report is kept"), atomic_dir(out, "report") as tmp:
        (tmp / "a.txt").write_text("2")
        raise OSError(errno.EFBIG, "File too large")
    assert (out / "a.txt").read_text() == "1" and sorted(p.name for p in tmp_path.iterdir()) == ["report"]
    with atomic_dir(out, "report") as tmp:
        (tmp / "b.txt").write_text("3")
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"]


def test_a_directory_that_is_not_ours_is_refused(tmp_path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    refuse_foreign(tmp_path / "new", lambda p: False, "a report")  # does not exist: fine
    refuse_foreign(tmp_path / "mine", lambda p: (p / "notes.txt").exists(), "a report")  # ours: fine
    with pytest.raises(ConfigError, match="mine exists and is not a report; refusing to replace it"):
        refuse_foreign(tmp_path / "mine", lambda p: False, "a report")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="refusing"):
        refuse_foreign(tmp_path / "file", lambda p: True, "a report")
