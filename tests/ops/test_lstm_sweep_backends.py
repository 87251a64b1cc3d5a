"""lstm_sweep_2d: every backend that runs on the CPU against "reference", forward and all six gradients."""

import pytest
import torch

from melnet_fast.ops import DIRECTION_CODES
from tests.ops.helpers import (
    SWEEP_RESULTS,
    assert_close,
    assert_error_within_reference,
    make_sweep_inputs,
    sweep_value_and_grads,
)

# Backends compared with "reference" here ("auto" is covered in test_backend_selection.py).
CPU_BACKENDS = ["cpu"]

ALL4 = ["t+", "t-", "f+", "f-"]


def case(B, T, F, I, H, directions):
    return pytest.param(B, T, F, I, H, directions, id=f"B{B}-T{T}-F{F}-I{I}-H{H}-{'.'.join(directions)}")


CASES = [
    case(3, 7, 13, 6, 5, ALL4),  # T < F
    case(2, 11, 4, 3, 7, ["f-", "t+", "t-"]),  # T > F, three directions in a scrambled order
    case(2, 6, 6, 5, 4, ["t-", "f+", "f-", "t+"]),  # T == F, all four scrambled
    case(3, 5, 7, 4, 1, ALL4),  # H = 1
    *[case(2, 5, 3, 3, 6, [d]) for d in DIRECTION_CODES],  # each direction alone
    case(1, 5, 1, 2, 3, ["t+", "f-"]),  # one sequence along time, sequences of length 1 along frequency
    case(1, 1, 6, 2, 3, ["f-", "t-"]),  # one sequence along frequency
]

# Large enough that the cpu kernels split a direction's lines into several blocks (csrc/sweep_lines_cpu.h), with
# full register tiles in every column panel, and that backward's GEMMs go through oneDNN (csrc/gemm.h).
LARGE = [case(2, 20, 33, 16, 64, ["t+", "f-", "t-"])]


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("B, T, F, I, H, directions", CASES)
def test_float64_matches_reference(backend, B, T, F, I, H, directions):
    # float64 with O(10) dependent steps and sums over <= 300 rows: rounding stays near 1e-14 (measured), so
    # 1e-10 leaves four orders of margin while any wrong index or formula shows up at 1e-3 or more.
    inputs = make_sweep_inputs(B, T, F, I, H, len(directions), torch.float64)
    want = sweep_value_and_grads("reference", inputs, directions)
    got = sweep_value_and_grads(backend, inputs, directions)
    for name, g, w in zip(SWEEP_RESULTS, got, want):
        assert_close(name, g, w, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("B, T, F, I, H, directions", CASES + LARGE)
def test_float32_error_within_reference_error(backend, B, T, F, I, H, directions):
    inputs32 = make_sweep_inputs(B, T, F, I, H, len(directions), torch.float32)
    exact = sweep_value_and_grads("reference", [t.double() for t in inputs32], directions)
    ref32 = sweep_value_and_grads("reference", inputs32, directions)
    got = sweep_value_and_grads(backend, inputs32, directions)
    for name, g, r, e in zip(SWEEP_RESULTS, got, ref32, exact):
        assert g.dtype == torch.float32, f"{name}: dtype {g.dtype}"
        assert_error_within_reference(name, g, r, e)


@pytest.mark.parametrize("backend", ["reference", *CPU_BACKENDS])
def test_inputs_are_left_unchanged(backend):
    # Single-row directions (B=1, F=1 along time) once let the kernel run its state in the caller's h0 / c0.
    directions = ["t+", "f-"]
    inputs = make_sweep_inputs(1, 4, 1, 3, 2, len(directions))
    copies = [t.clone() for t in inputs]
    sweep_value_and_grads(backend, inputs, directions)
    for name, t, c in zip(("x", "w_ih", "w_hh", "bias", "h0", "c0"), inputs, copies):
        assert torch.equal(t, c), f"{name} was modified by the {backend} backend"


@pytest.mark.parametrize("threads", [1, 3, 4])
def test_cpu_at_other_thread_counts(threads):
    # The cpu kernels size their line blocks for the thread count (csrc/lstm_sweep_2d_cpu.cpp: line_blocks), so each
    # count cuts the lines differently; directions of different line counts (120 along time, 27 along frequency) and
    # lengths give blocks of several sizes and part-filled row tiles.
    directions = ["t+", "f-", "t-", "f+"]
    inputs = make_sweep_inputs(3, 9, 40, 5, 7, len(directions), torch.float64)
    want = sweep_value_and_grads("reference", inputs, directions)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        got = sweep_value_and_grads("cpu", inputs, directions)
    finally:
        torch.set_num_threads(before)
    for name, g, w in zip(SWEEP_RESULTS, got, want):
        assert_close(name, g, w, rtol=1e-10, atol=1e-10)
