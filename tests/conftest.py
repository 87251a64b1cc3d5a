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
