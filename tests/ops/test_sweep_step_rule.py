"""One step rule for every sweep backend: the Python host of the GPU backends (gpu_host) mirrors
csrc/sweep_geometry.h, which the CPU kernel, the CUDA step kernels and their emulator use; all directions advance
together for as many steps as the longest direction has positions."""

import itertools

import pytest

from melnet_fast import _extension
from melnet_fast.ops.lstm_sweep import gpu_host


def direction_sets():
    for r in range(1, 5):
        yield from itertools.permutations(range(4), r)


@pytest.mark.parametrize("B, T, F", [(1, 1, 1), (2, 3, 7), (3, 7, 3), (1, 5, 5), (2, 1, 6)])
def test_python_host_mirrors_the_sweep_geometry(B, T, F):
    ext = _extension.extension()
    assert ext is not None, "the compiled extension must be built for this test"
    for codes in direction_sets():
        steps, lines = ext.sweep_geometry(list(codes), B, T, F)
        assert gpu_host.sweep_steps(codes, T, F) == steps, codes
        assert gpu_host.line_counts(codes, B, T, F) == lines, codes


def test_the_rule():
    assert gpu_host.sweep_steps([0, 2], 4, 9) == 9  # both axes: max(T, F)
    assert gpu_host.sweep_steps([2, 3], 9, 4) == 4  # frequency only: F, not max(T, F)
    assert gpu_host.sweep_steps([1], 9, 4) == 9
