"""Checks before long work: paths that cannot be written and sizes that cannot fit are named up front."""

import pytest

from melnet_fast import MelNetConfig
from melnet_fast.train import preflight
from melnet_fast.train.preflight import PreflightError
from tests.conftest import fill_file_system, remount_read_only


def test_writable_directory(tmp_path):
    assert preflight.writable_directory(tmp_path / "a" / "b", "--out").is_dir()
    (tmp_path / "file").write_text("x")
    with pytest.raises(PreflightError, match=r"^--out .*file is a file; expected a directory"):
        preflight.writable_directory(tmp_path / "file", "--out")
    with pytest.raises(PreflightError, match=r"^--out .*file/run: .*file is a file, not a directory"):
        preflight.writable_directory(tmp_path / "file" / "run", "--out")


def test_writable_file(tmp_path):
    assert preflight.writable_file(tmp_path / "new" / "x.wav", "--out") == tmp_path / "new" / "x.wav"
    with pytest.raises(PreflightError, match="is a directory; expected a file name"):
        preflight.writable_file(tmp_path / "new", "--out")
    (tmp_path / "file").write_text("x")
    with pytest.raises(PreflightError, match="is a file, not a directory"):
        preflight.writable_file(tmp_path / "file" / "x.wav", "--out")


def test_read_only_file_system(small_fs):
    (small_fs / "runs").mkdir()
    remount_read_only(small_fs)
    for check, path in ((preflight.writable_directory, small_fs / "runs"),
                        (preflight.writable_directory, small_fs / "new"),
                        (preflight.writable_file, small_fs / "runs" / "x.wav")):
        with pytest.raises(PreflightError, match=r"^--out .*(Read-only file system)"):
            check(path, "--out")


def test_full_file_system(small_fs):
    preflight.free_disk(small_fs, 100_000, "--out", "one checkpoint")
    fill_file_system(small_fs)
    with pytest.raises(PreflightError, match=r"--out .*: one checkpoint needs about 97.7 KiB of disk, its file "
                                             r"system has 0 B free"):
        preflight.free_disk(small_fs / "run", 100_000, "--out", "one checkpoint")


def test_memory_check_names_the_argument():
    preflight.enough_memory(1, "cpu", "--batch-size", "a batch")
    with pytest.raises(PreflightError, match=r"^--seconds: sampling needs about 1024.0 TiB of memory, cpu has .* "
                                             r"available$"):
        preflight.enough_memory(2**50, "cpu", "--seconds", "sampling")


def test_estimates_grow_with_the_work():
    c = MelNetConfig.preset("small")
    base = preflight.training_bytes(c, 8, 64, (1, 2, 3))
    params = 16 * sum(c.parameter_counts())
    assert preflight.training_bytes(c, 16, 64, (1, 2, 3)) - params == pytest.approx(2 * (base - params))
    assert preflight.training_bytes(c, 8, 64, (1, 2, 3), recompute=True) < base
    assert preflight.training_bytes(c, 8, 64, (1,)) < base
    assert preflight.sampling_bytes(c, 2, 128) == 2 * preflight.sampling_bytes(c, 1, 128)
    assert preflight.inversion_bytes(c, 200) > preflight.inversion_bytes(c, 100)
