"""The cuda backend's second design (cuda_gemm: recurrent products as cuBLAS GEMMs with fused epilogues, the narrow
phase as a persistent kernel synchronised by flags): float32, bfloat16 and float16 at the first design's cases and
bounds against the float64 reference, the narrow phase engaged where it should be (and its absence), a
Blizzard-sized layer, non-contiguous inputs, the segmented recompute, agreement with the first design, and "auto"
keeping the first design without a measurement. Skipped without a GPU (the device code runs in the CPU emulator:
tests/cuda_emulation/test_lstm_sweep_gemm_emulated.py)."""

import pytest
import torch

import melnet_fast
from melnet_fast.ops import autotune, dispatch, lstm_sweep_2d
from melnet_fast.ops.lstm_sweep import gemm_backend
from tests.gpu.test_lstm_sweep_cuda_gpu import (
    CASES,
    DTYPES,
    LARGE,
    check_noncontiguous_inputs,
    cuda_inputs,
    value_and_grads,
)
from tests.gpu.test_lstm_sweep_cuda_gpu import check_against_reference as check_cuda
from tests.ops.helpers import SWEEP_RESULTS

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.fixture(autouse=True)
def exact_float32(monkeypatch):
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)


@pytest.fixture
def narrow_runs(monkeypatch):
    """The narrow phases the host launches: [(fwd|bwd, s_begin, s_end)]."""
    runs = []
    fwd, bwd = gemm_backend.CudaNarrow.forward, gemm_backend.CudaNarrow.backward

    def spy_fwd(*args):
        runs.append(("fwd", args[-3], args[-2]))
        fwd(*args)

    def spy_bwd(*args):
        runs.append(("bwd", args[-2], args[-1]))
        bwd(*args)

    monkeypatch.setattr(gemm_backend.CudaNarrow, "forward", staticmethod(spy_fwd))
    monkeypatch.setattr(gemm_backend.CudaNarrow, "backward", staticmethod(spy_bwd))
    return runs


def check_against_reference(inputs, directions, recompute=False):
    return check_cuda(inputs, directions, recompute, backend="cuda_gemm")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("B, T, F, I, H, directions", CASES + LARGE)
def test_error_within_reference_error(B, T, F, I, H, directions, dtype):
    check_against_reference(cuda_inputs(B, T, F, I, H, len(directions), dtype), directions)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_narrow_phase_at_a_blizzard_like_layer(dtype, narrow_runs):
    """t+ f+ f- with T > F at H = I = 512: the wide phase for the first F steps, then one persistent launch each way
    for the time direction alone (96 lines: one line block of 128, 16 unit blocks of 32)."""
    B, T, F, I, H, directions = 32, 11, 3, 512, 512, ["t+", "f+", "f-"]
    check_against_reference(cuda_inputs(B, T, F, I, H, len(directions), dtype), directions)
    if dtype == torch.float32:  # a float32 W_hh slice (256 KB) exceeds shared memory: wide steps only
        assert narrow_runs == []
    else:
        assert narrow_runs == [("fwd", 3, 11), ("bwd", 3, 11)]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_narrow_phase_with_two_long_directions_and_partial_tiles(dtype, narrow_runs):
    # 150 time lines: two line blocks (the second partial); H = 70: three unit blocks (the last partial).
    directions = ["f-", "t+", "t-"]
    check_against_reference(cuda_inputs(3, 9, 50, 7, 70, len(directions), dtype), directions)
    assert narrow_runs == [("fwd", 9, 50), ("bwd", 9, 50)]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_noncontiguous_inputs(dtype):
    check_noncontiguous_inputs(dtype, backend="cuda_gemm")


@pytest.mark.parametrize("mode", [True, 3], ids=["k-sqrt", "k3"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_recompute_within_reference_error_and_equal_to_stored(dtype, mode):
    directions = ["t+", "f+", "f-", "t-"]
    inputs = cuda_inputs(2, 7, 13, 6, 37, len(directions), dtype)
    got = check_against_reference(inputs, directions, recompute=mode)
    stored = value_and_grads("cuda_gemm", inputs, directions)
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    for name, g, s in zip(SWEEP_RESULTS, got, stored):
        torch.testing.assert_close(g.float(), s.float(), rtol=tol, atol=tol * s.abs().max().item(), msg=name)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_agrees_with_the_first_design(dtype):
    """Both designs against each other at a Blizzard-width layer: within the sum of their bounds' scale (each is
    checked against the reference above; this catches a shared mistake the reference would not show, e.g. both
    wrong the same way only where the phases differ)."""
    directions = ["t+", "f+", "f-"]
    inputs = cuda_inputs(4, 9, 4, 512, 512, len(directions), dtype)
    first = value_and_grads("cuda", inputs, directions)
    second = value_and_grads("cuda_gemm", inputs, directions)
    for name, a, b in zip(SWEEP_RESULTS, first, second):
        scale = a.float().abs().max().item()
        assert (a.float() - b.float()).abs().max().item() <= 8 * torch.finfo(dtype).eps * scale, name


def test_auto_keeps_the_first_design_without_a_measurement(monkeypatch):
    monkeypatch.delenv(autotune.CACHE_ENV, raising=False)
    autotune.clear()
    x = torch.randn(1, 3, 4, 2, device="cuda")
    op = dispatch.REGISTRY["lstm_sweep_2d"]
    assert op.resolve(x, shape_key=((1, 3, 4, 2), 1, 2, ("t+",))) == "cuda"
    with melnet_fast.use_backend("cuda_gemm"):
        assert op.resolve(x) == "cuda_gemm"
        assert dispatch.REGISTRY["gmm_nll"].resolve(x) == "cuda"  # no second design: the first


def test_tune_times_both_designs():
    inputs = [t.requires_grad_() for t in cuda_inputs(2, 9, 4, 16, 32, 3, torch.bfloat16)]
    autotune.clear()
    try:
        melnet_fast.tune(lambda: lstm_sweep_2d(*inputs, ["t+", "f+", "f-"]).sum().backward())
        chosen = [b for (op, *_), b in autotune.choices().items() if op == "lstm_sweep_2d"]
        assert len(chosen) == 1 and chosen[0] in ("cuda", "cuda_gemm", "triton"), chosen
    finally:
        autotune.clear()
