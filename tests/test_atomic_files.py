"""Atomic writes: file mode from the umask, errors naming the target, and the clean-up of orphan temporaries."""

import errno
import os
import subprocess
import sys

import pytest

from melnet_fast import atomic_files
from melnet_fast.atomic_files import atomic_write_text, remove_orphans


@pytest.fixture
def umask():
    """Set the process umask for a test (returned function), restoring it afterwards."""
    old = os.umask(0o022)
    os.umask(old)
    yield os.umask
    os.umask(old)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_written_files_take_the_umasks_mode(tmp_path, umask, mask, mode):
    umask(mask)
    atomic_write_text(tmp_path / "metrics.csv", "a,b\n")
    assert (tmp_path / "metrics.csv").stat().st_mode & 0o777 == mode
    assert os.listdir(tmp_path) == ["metrics.csv"]


def test_a_failed_write_keeps_the_old_file_and_names_the_target(tmp_path, monkeypatch):
    target = tmp_path / "latest.pt"
    target.write_text("previous checkpoint")

    def full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device", src)

    monkeypatch.setattr(atomic_files.os, "replace", full)
    with pytest.raises(OSError, match="No space left on device") as caught:
        atomic_write_text(target, "new checkpoint")
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(target)
    assert target.read_text() == "previous checkpoint"
    assert os.listdir(tmp_path) == ["latest.pt"], "the temporary file is removed"


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_remove_orphans_takes_only_the_writers_files_of_dead_processes(tmp_path):
    dead = _dead_pid()
    orphans = [f".latest.pt.{dead}-k2x9_abc.tmp", f".best.safetensors.{dead}-q1w2e3r4.tmp"]
    kept = [f".latest.pt.{os.getpid()}-abcdefgh.tmp",  # a write in progress (this process)
            "latest.pt.tmp", "notes.tmp", f"latest.pt.{dead}-abcdefgh.tmp",  # not the writer's pattern
            "latest.pt"]
    for name in orphans + kept:
        (tmp_path / name).write_text("x")
    (tmp_path / f".dir.{dead}-abcdefgh.tmp").mkdir()  # a folder is never removed
    removed = remove_orphans(tmp_path)
    assert sorted(p.name for p in removed) == sorted(orphans)
    assert sorted(os.listdir(tmp_path)) == sorted(kept + [f".dir.{dead}-abcdefgh.tmp"])
    assert remove_orphans(tmp_path / "missing") == []


def test_the_writers_temporary_name_matches_the_orphan_pattern(tmp_path, monkeypatch):
    """The pattern that remove_orphans looks for is the one atomic_write_bytes writes (one source, pinned)."""
    seen = []
    real = atomic_files.os.replace

    def spy(src, dst):
        seen.append(os.path.basename(src))
        return real(src, dst)

    monkeypatch.setattr(atomic_files.os, "replace", spy)
    atomic_write_text(tmp_path / "config.json", "{}")
    match = atomic_files._TEMP_NAME.match(seen[0])
    assert match and match["target"] == "config.json" and int(match["pid"]) == os.getpid()
