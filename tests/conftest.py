"""Fixtures for every test: kernel outputs poisoned with NaN, and the backend selection left as found.

Without a CUDA device the Triton kernels run in Triton's CPU interpreter (TRITON_INTERPRET=1, read when a kernel
is defined, so set here before any test imports melnet_fast.kernels); tests keep them at small sizes.
"""

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import melnet_fast
from melnet_fast import _extension


@pytest.fixture(autouse=True)
def poison_kernel_outputs():
    """Fill every output buffer of the C++ kernels with NaN before they write it, so that a kernel leaving
    part of an output unwritten fails the comparisons instead of passing on leftover memory."""
    ext = _extension.extension()
    if ext is None:  # no compiled kernels: the tests of the cpu backend fail on their own
        yield
        return
    ext.set_poison_outputs(True)
    try:
        yield
    finally:
        ext.set_poison_outputs(False)


@pytest.fixture(autouse=True)
def restore_backend():
    """A test that calls set_backend must not change the backend of the tests that follow."""
    previous = melnet_fast.get_backend()
    yield
    melnet_fast.set_backend(previous)


@pytest.fixture
def one_thread():
    """torch on one thread for the test: tiny models and STFTs run fastest so on a shared 2-core machine (a
    second thread only adds contention: measured 4.6x slower on the audio inversion tests)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def small_fs(tmp_path):
    """A fresh 1 MiB tmpfs (unmounted afterwards), for full-disk and read-only probes. Skipped where mounting
    is not allowed (it needs root or CAP_SYS_ADMIN); `chmod` cannot stand in since root ignores permissions."""
    import shutil
    import subprocess

    where = tmp_path / "small_fs"
    where.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command to make a small file system with")
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(where)], capture_output=True,
                          text=True)
    if made.returncode:
        pytest.skip(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {made.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill_file_system(folder) -> None:
    """Write zeros into `folder` until its file system is full."""
    fd = os.open(os.path.join(folder, "filler"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:  # full
        pass
    finally:
        os.close(fd)


def remount_read_only(folder) -> None:
    import subprocess

    subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True, capture_output=True)
