"""The second design of the cuda backend of lstm_sweep_2d (backend cuda_gemm: melnet_fast/ops/lstm_sweep/gemm_steps.py,
the epilogue kernels of csrc/cuda/lstm_epilogue.cuh and the narrow phase's persistent kernels of
csrc/cuda/lstm_narrow.cuh) with its kernels run by the emulators of this folder and its GEMMs in torch, under the
package's own GPU host: forward and all six gradients in float32, bfloat16 and float16 against the float64 reference
with the first design's bounds (test_lstm_step_emulated.py), at odd sizes, T > F, F > T and T = F, one to four
directions, lines of length 1, several line and unit tiles; the wide phase alone and with the narrow phase (the grid
emulator runs every block at once and checks every read of another block's rows against the arrival flags), the
phase boundary; the segmented recompute (per-line states) equal to the stored mode; results independent of thread
order and garbage."""

import sys

import pytest
import torch

from melnet_fast.ops import DIRECTION_CODES
from melnet_fast.ops.lstm_sweep import recompute
from melnet_fast.ops.lstm_sweep.gemm_steps import narrow_start
from tests.cuda_emulation import build_emulator, build_grid_emulator
from tests.cuda_emulation.emulated_sweep import EmulatedGemmSweep, EmulatedNarrow
from tests.cuda_emulation.test_lstm_step_emulated import (
    ALL4,
    DTYPES,
    assert_within_reference,
    case_id,
    check_against_reference,
    emulated,
    reference,
)
from tests.ops.helpers import SWEEP_RESULTS, make_sweep_inputs, random_like

pytestmark = [
    pytest.mark.skipif(build_emulator.find_compiler() is None,
                       reason="no C++ compiler ($CXX, g++, c++ or clang++) to build the CUDA emulator"),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the emulator's fibers use Linux's ucontext"),
    pytest.mark.usefixtures("one_thread"),
]

# Epilogue tiles: 32 lines x 32 units.
CASES = [
    (2, 5, 7, 6, 5, ALL4),  # H = 5, T < F: the time directions stop first
    (2, 9, 3, 3, 37, ["f-", "t+", "t-"]),  # two unit tiles; T > F: steps 3..8 run the time directions alone
    (3, 12, 11, 5, 70, ALL4),  # 33 and 36 lines: two line tiles; three unit tiles
    (2, 6, 6, 4, 33, ["t+", "f+"]),  # T = F: every direction active at every step
    (1, 5, 1, 2, 3, ["t+", "f-"]),  # frequency lines of length 1 (last step = first step)
    (2, 4, 6, 3, 17, ["t-"]),  # one direction
    (2, 6, 4, 5, 1, ["f+", "f-"]),  # H = 1, only frequency directions
    (1, 1, 4, 3, 6, ["t-", "f+"]),  # time lines of length 1
]


@pytest.fixture(scope="module")
def harness():
    return build_emulator.build(variants=("sm80",))["sm80"]


@pytest.fixture(scope="module")
def narrow_harness():
    return build_grid_emulator.build("sweep_narrow")


# Narrow phases (emulator tile: 32 lines x 16 units): (case, the phase the host must give the persistent kernels).
NARROW = [
    ((2, 9, 3, 3, 37, ["f-", "t+", "t-"]), (3, 9)),  # T > F: t+ and t- alone from step 3; three unit blocks
    ((2, 3, 7, 3, 21, ["t+", "f+", "f-"]), (3, 7)),  # F > T: f+ f- alone from step 3; 2 unit blocks
    ((3, 12, 11, 5, 40, ALL4), (11, 12)),  # one narrow step; 33 lines: two line blocks, three unit blocks
    ((1, 6, 2, 2, 3, ["t+"]), (1, 6)),  # one direction: narrow from step 1 (step 0 reads h0: a wide step)
    ((1, 5, 1, 2, 3, ["t+", "f-"]), (1, 5)),  # frequency lines of length 1
    ((2, 6, 6, 4, 33, ["t+", "f+"]), None),  # T = F over both axes: wide only
]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("index", range(len(NARROW)), ids=[case_id(c) for c, _ in NARROW])
def test_narrow_phase_matches_float64_reference(harness, narrow_harness, tmp_path, index, dtype):
    case, phase = NARROW[index]
    narrow = EmulatedNarrow(narrow_harness, tmp_path, order=index % 3, poison=(0xFF, 0x5A)[index % 2], runs=[])
    check_against_reference(EmulatedGemmSweep(harness, tmp_path, order=2, narrow=narrow), case, dtype)
    B, T, F, I, H, directions = case
    assert narrow_start([DIRECTION_CODES[d] for d in directions], T, F) == (phase[0] if phase else max(T, F))
    assert narrow.runs == ([("fwd", *phase), ("bwd", *phase)] if phase else [])


def test_narrow_phase_only_when_every_block_fits(harness, narrow_harness, tmp_path):
    """With room for fewer blocks than the phase needs (2 line blocks x 3 unit blocks x 2 directions), every step is
    a wide one, with the same results."""
    narrow = EmulatedNarrow(narrow_harness, tmp_path, capacity_blocks=11, runs=[])
    check_against_reference(EmulatedGemmSweep(harness, tmp_path, narrow=narrow), NARROW[2][0], torch.bfloat16)
    assert narrow.runs == []


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("index", range(len(CASES)), ids=[case_id(c) for c in CASES])
def test_matches_float64_reference(harness, tmp_path, index, dtype):
    sweep = EmulatedGemmSweep(harness, tmp_path, order=index % 3, poison=(0xFF, 0x5A)[index % 2])
    check_against_reference(sweep, CASES[index], dtype)


@pytest.mark.parametrize("directions", [["t+"], ["t-"], ["f+"], ["f-"], ["f-", "t-"], ["t+", "f+", "f-"], ALL4],
                         ids=".".join)
def test_every_direction_count(harness, tmp_path, directions):
    check_against_reference(EmulatedGemmSweep(harness, tmp_path, order=2), (2, 7, 4, 3, 16, directions),
                            torch.bfloat16)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_segmented_recompute_equals_stored_mode(harness, tmp_path, dtype):
    """lstm_sweep_2d(recompute=2) as cuda_gemm runs it (per-line states on the padded grid): the gradients equal
    the stored mode's (the same kernels and GEMMs on the same values, so bitwise in float32 up to the order of the
    weight-gradient sums over spans) and stay within the reference's bounds."""
    B, T, F, I, H, directions = 2, 5, 3, 3, 5, ["t+", "f-"]
    sweep = EmulatedGemmSweep(harness, tmp_path, order=1)
    inputs = make_sweep_inputs(B, T, F, I, H, len(directions), dtype)
    codes = [DIRECTION_CODES[d] for d in directions]
    leaves = [t.detach().requires_grad_() for t in inputs]
    y = recompute.segmented_sweep(recompute.OpSpans(sweep.forward, sweep.backward), *leaves, codes, 2)
    got = [y.detach(), *torch.autograd.grad(y, leaves, random_like(y, seed=1234))]
    stored = emulated(sweep, inputs, directions)
    exact = reference([t.double() for t in inputs], directions)
    for name, g, s, low, ex in zip(SWEEP_RESULTS, got, stored, reference(inputs, directions), exact):
        assert_within_reference(name, g, low, ex)
        tol = 1e-5 if dtype == torch.float32 else 2e-2
        torch.testing.assert_close(g.float(), s.float(), rtol=tol, atol=tol * s.abs().max().item(), msg=name)


def test_results_independent_of_thread_order_and_garbage(harness, narrow_harness, tmp_path):
    B, T, F, I, H, directions = 3, 11, 4, 4, 40, ["f-", "t+"]
    inputs = make_sweep_inputs(B, T, F, I, H, len(directions), torch.bfloat16, seed=1)
    runs = []
    for order, poison in ((0, 0xFF), (1, 0x00), (2, 0x5A)):
        narrow = EmulatedNarrow(narrow_harness, tmp_path, order=order, poison=poison)
        runs.append(emulated(EmulatedGemmSweep(harness, tmp_path, order, poison, narrow), inputs, directions))
    for run in runs[1:]:
        for name, a, b in zip(SWEEP_RESULTS, runs[0], run):
            assert torch.isfinite(a).all(), name
            assert torch.equal(a, b), f"{name} depends on thread order / garbage"
