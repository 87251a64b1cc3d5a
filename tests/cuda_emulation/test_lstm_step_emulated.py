"""The CUDA step kernels of lstm_sweep_2d (csrc/cuda/lstm_step.cuh, the repository's file, compiled at test time)
run on the CPU by the emulator of this folder (see README.md), one step at a time under the package's own GPU host
(melnet_fast/ops/lstm_sweep/gpu_host.py, which runs them on a GPU too): forward and all six gradients in float32,
bfloat16 and float16 against the float64 reference, at odd sizes (H = 1, 5, 17, 37, 70), several line and unit
tiles, T > F and F > T, one to four directions; the segmented recompute (per-line states on the padded grid); the
sm_75 variant (FMA path for 16-bit types); results independent of thread order and shared-memory garbage; and the
emulator's own checks. Skipped only where no C++ compiler is found.

Bounds as the GPU test's (tests/gpu/test_lstm_sweep_cuda_gpu.py), judged against the reference run in the same
dtype: the largest error at most 2x the reference's plus a floor (8 ulps of the largest value in float32, 1 ulp
in 16-bit, where 8 would be loose), and in 16-bit the RMS error at most 2x the reference's. Measured on CASES
over four seeds: the largest error at most 3.9 ulps above 2x the reference's in float32 (6.5 for dc0, a sum over
lines), 0.5 ulp in 16-bit; 16-bit RMS at most 1.9x the reference's (dh0 and dc0, not bounded by RMS, 5.4x)."""

import sys

import numpy as np
import pytest
import torch

from melnet_fast.ops import DIRECTION_CODES, lstm_sweep_2d_ref
from melnet_fast.ops.lstm_sweep import recompute
from tests.cuda_emulation import build_emulator
from tests.cuda_emulation.emulated_sweep import EmulatedSweep, EmulatorError, run_harness
from tests.ops.helpers import SWEEP_RESULTS, assert_error_within_reference, make_sweep_inputs, random_like

pytestmark = [
    pytest.mark.skipif(build_emulator.find_compiler() is None,
                       reason="no C++ compiler ($CXX, g++, c++ or clang++) to build the CUDA emulator"),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the emulator's fibers use Linux's ucontext"),
    pytest.mark.usefixtures("one_thread"),
]

ALL4 = ["t+", "t-", "f+", "f-"]
DTYPES = [torch.float32, torch.bfloat16, torch.float16]
# Tiles: 32 lines per block, 32 units forward, 64 backward, reductions staged 32 deep.
CASES = [
    (2, 5, 7, 6, 5, ALL4),  # H = 5 (a fraction of a tile), T < F
    (2, 9, 3, 3, 37, ["f-", "t+", "t-"]),  # two forward unit tiles, partial reduction chunks; T > F
    (3, 12, 11, 5, 70, ALL4),  # 33 and 36 lines: two line tiles; three forward, two backward unit tiles
    (2, 7, 16, 6, 64, ["t-", "f+"]),  # exactly one full tile of 32 time lines, whole unit tiles
    (1, 5, 1, 2, 3, ["t+", "f-"]),  # frequency lines of length 1
    (2, 4, 6, 3, 17, ["t-"]),  # one direction; steps 4 and 5 have none active
    (2, 6, 4, 5, 1, ["f+", "f-"]),  # H = 1, only frequency directions with T > F
]


def case_id(case):
    B, T, F, I, H, directions = case
    return f"B{B}-T{T}-F{F}-I{I}-H{H}-{'.'.join(directions)}"


@pytest.fixture(scope="module")
def harness():
    """{variant: executable}, built from the repository's kernel source (cached across runs by content)."""
    return build_emulator.build()


def reference(inputs, directions, seed=1234):
    """[y, dx, dw_ih, dw_hh, dbias, dh0, dc0] of the plain-PyTorch reference with a fixed upstream gradient."""
    leaves = [t.detach().requires_grad_() for t in inputs]
    y = lstm_sweep_2d_ref(*leaves, directions)
    return [y.detach(), *torch.autograd.grad(y, leaves, random_like(y, seed=seed))]


def emulated(sweep: EmulatedSweep, inputs, directions, seed=1234):
    """The same through the emulated cuda backend (forward with save=True, then backward)."""
    codes = [DIRECTION_CODES[d] for d in directions]
    x, w_ih, w_hh, _, h0, c0 = inputs
    y, gates, cell = sweep.forward(*inputs, codes, save=True)
    grads = sweep.backward(random_like(y, seed=seed), x, w_ih, w_hh, h0, c0, y, gates, cell, codes)
    return [y, *grads]


def assert_within_reference(name, fast, ref_low, exact):
    assert fast.dtype == ref_low.dtype and fast.shape == exact.shape, (name, fast.dtype, fast.shape)
    if fast.dtype == torch.float32:
        assert_error_within_reference(name, fast, ref_low, exact)
        return
    assert torch.isfinite(fast).all(), f"{name}: {int((~torch.isfinite(fast)).sum())} non-finite elements"
    err = (fast.double() - exact).abs().max().item()
    ref_err = (ref_low.double() - exact).abs().max().item()
    floor = torch.finfo(fast.dtype).eps * exact.abs().max().item()
    assert err <= 2 * ref_err + floor, f"{name}: error {err:.3e} above 2 x reference {ref_err:.3e} + {floor:.1e}"
    if name not in ("dh0", "dc0"):  # [R, H] sums over every line: too few elements for a stable RMS
        rms = (fast.double() - exact).pow(2).mean().sqrt().item()
        ref_rms = (ref_low.double() - exact).pow(2).mean().sqrt().item()
        assert rms <= 2 * ref_rms, f"{name}: RMS error {rms:.3e} above 2 x reference {ref_rms:.3e}"


def check_against_reference(sweep, case, dtype):
    B, T, F, I, H, directions = case
    inputs = make_sweep_inputs(B, T, F, I, H, len(directions), dtype)
    exact = reference([t.double() for t in inputs], directions)
    ref_low = reference(inputs, directions)
    for name, got, low, ex in zip(SWEEP_RESULTS, emulated(sweep, inputs, directions), ref_low, exact):
        assert_within_reference(name, got, low, ex)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("index", range(len(CASES)), ids=[case_id(c) for c in CASES])
def test_matches_float64_reference(harness, tmp_path, index, dtype):
    # Thread orders and shared-memory garbage vary over the cases (each case is deterministic).
    sweep = EmulatedSweep(harness["sm80"], tmp_path, order=index % 3, poison=(0xFF, 0x5A)[index % 2])
    check_against_reference(sweep, CASES[index], dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_segmented_recompute_matches_float64_reference(harness, tmp_path, dtype):
    # lstm_sweep_2d(recompute=2) as the cuda backend runs it: the GPU host's per-line states (padded grid) over
    # the emulated kernels, spans of 2 positions that divide neither T = 5 nor F = 3.
    B, T, F, I, H, directions = 2, 5, 3, 3, 5, ["t+", "f-"]
    sweep = EmulatedSweep(harness["sm80"], tmp_path, order=1)
    inputs = make_sweep_inputs(B, T, F, I, H, len(directions), dtype)
    leaves = [t.detach().requires_grad_() for t in inputs]
    y = recompute.segmented_sweep(recompute.OpSpans(sweep.forward, sweep.backward), *leaves,
                                  [DIRECTION_CODES[d] for d in directions], 2)
    got = [y.detach(), *torch.autograd.grad(y, leaves, random_like(y, seed=1234))]
    exact = reference([t.double() for t in inputs], directions)
    for name, g, low, ex in zip(SWEEP_RESULTS, got, reference(inputs, directions), exact):
        assert_within_reference(name, g, low, ex)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_pre_sm80_fma_path_matches_float64_reference(harness, tmp_path, dtype):
    # Built as for sm_75: 16-bit types take the FMA product (float32 always does) with its own smem padding.
    check_against_reference(EmulatedSweep(harness["sm75"], tmp_path, order=2), CASES[2], dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_results_independent_of_thread_order_and_smem_garbage(harness, tmp_path, dtype):
    """Bit-identical results whatever order the threads run in between barriers and whatever garbage shared
    memory starts with: a race, or a read of shared memory that no thread wrote, changes them. Also save=False
    gives the same y and keeps nothing."""
    B, T, F, I, H, directions = 3, 11, 4, 4, 40, ["f-", "t+"]  # 33 frequency lines: two tiles; two unit tiles
    inputs = make_sweep_inputs(B, T, F, I, H, len(directions), dtype, seed=1)
    codes = [DIRECTION_CODES[d] for d in directions]
    runs = []
    for order, poison in ((0, 0xFF), (1, 0x00), (2, 0x5A)):
        sweep = EmulatedSweep(harness["sm80"], tmp_path, order=order, poison=poison)
        fwd = sweep.forward(*inputs, codes, save=True)
        runs.append([*fwd, *emulated(sweep, inputs, directions)[1:]])
        y, gates, cell = sweep.forward(*inputs, codes, save=False)
        assert torch.equal(y, fwd[0]), "save=False changes y"
        assert gates.numel() == 0 and cell.numel() == 0
    names = ["y", "gates", "cell", *SWEEP_RESULTS[1:]]
    for run in runs[1:]:
        for name, a, b in zip(names, runs[0], run):
            assert torch.isfinite(a).all(), name
            assert torch.equal(a, b), f"{name} depends on thread order / smem garbage"


# ---- The emulator's own checks, on small kernels of emu_selftest.h that break one rule each ----

def selftest(harness, tmp_path, name, order=0, poison=0xFF, a=None, b=None):
    for label, t in (("a", a), ("b", b)):
        if t is not None:
            t.contiguous().view(torch.int16).numpy().tofile(tmp_path / f"{label}.bin")
    run_harness(harness["sm80"], ["selftest", name, order, poison, tmp_path])
    return torch.from_numpy(np.fromfile(tmp_path / "out.bin", dtype=np.float32))


@pytest.mark.parametrize("name, message", [
    ("early_return", "returned .* while .* wait at __syncthreads"),
    ("two_sites", "wait at different __syncthreads"),
    ("wmma_misaligned", "not 32-byte aligned"),
    ("wmma_divergent", "made other wmma calls"),
    ("guard_write", "out written 1 bytes past its end"),
])
def test_emulator_reports_broken_rules(harness, tmp_path, name, message):
    with pytest.raises(EmulatorError, match=message):
        selftest(harness, tmp_path, name)


@pytest.mark.parametrize("poison", [0x5A, 0xFF])
def test_emulator_fills_shared_memory_per_block(harness, tmp_path, poison):
    # Both blocks read before writing: the second must not see what the first wrote.
    out = selftest(harness, tmp_path, "smem_garbage", poison=poison)
    assert (out.view(torch.int32) == int.from_bytes(bytes([poison]) * 4, "little", signed=True)).all()


def test_emulator_exposes_races(harness, tmp_path):
    in_order = selftest(harness, tmp_path, "race", order=0)
    reversed_ = selftest(harness, tmp_path, "race", order=1)
    assert not torch.equal(in_order.view(torch.int32), reversed_.view(torch.int32))


def test_emulated_wmma(harness, tmp_path):
    g = torch.Generator().manual_seed(0)
    a = torch.randn(16, 16, generator=g).bfloat16()
    b = torch.randn(16, 16, generator=g).bfloat16()
    out = selftest(harness, tmp_path, "wmma", a=a, b=b).view(2, 16, 16)
    # Products of bfloat16 values are exact in float32; only the accumulation order differs from torch's.
    torch.testing.assert_close(out[0], a.float() @ b.float(), rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(out[1], b.float() @ a.float(), rtol=1e-6, atol=1e-5)  # (A^T B^T)^T


def test_emulated_16bit_conversions(harness, tmp_path):
    """The shim's conversions bit for bit against torch's (both round to nearest even): every 16-bit pattern to
    float32, and float32 edge cases (halfway points, subnormals, overflow) plus random values to 16 bits."""
    bits = torch.arange(-(1 << 15), 1 << 15, dtype=torch.int32).to(torch.int16)
    bits.numpy().tofile(tmp_path / "bits16.bin")
    g = torch.Generator().manual_seed(0)
    edge = [0.0, -0.0, 1.0, 65504.0, 65519.99, 65520.0, 65536.0, 6.1e-5, 6.0e-8, 2.9e-8, 3.0e-8, 1e-45, 3.4e38,
            float("inf"), -float("inf"), 1.0 + 2.0**-8, 1.0 + 3 * 2.0**-8, 1.0 + 2.0**-11, 1.0 + 3 * 2.0**-11]
    f32 = torch.cat([torch.tensor(edge), -torch.tensor(edge), torch.randn(20000, generator=g) * 10.0**
                     torch.randint(-9, 6, (20000,), generator=g)]).float()
    f32.numpy().tofile(tmp_path / "f32.bin")
    run_harness(harness["sm80"], ["convert", tmp_path])
    for dtype, suffix in ((torch.bfloat16, "bf16"), (torch.float16, "f16")):
        got = torch.from_numpy(np.fromfile(tmp_path / f"{suffix}.bin", dtype=np.int16))
        assert torch.equal(got, f32.to(dtype).view(torch.int16)), suffix
        back = torch.from_numpy(np.fromfile(tmp_path / f"from_{suffix}.bin", dtype=np.float32))
        want = bits.view(dtype).float()
        nan = want.isnan()
        assert torch.equal(back.isnan(), nan) and torch.equal(back[~nan], want[~nan]), suffix
