"""The CUDA Gaussian-mixture NLL kernels (csrc/cuda/gmm_nll_kernel.cuh, the repository's file, compiled at test
time with the launch of csrc/cuda/gmm_nll.cu redone by emu_gmm.cpp / emulated_gmm.py) run on the CPU by the grid
emulator of this folder (all blocks alive at once, shared memory per block filled with garbage, guarded global
buffers), forward and all four gradients against the reference.

Bounds as the GPU test's (tests/gpu/test_gmm_nll_gpu.py): in every storage dtype, the error against float64 at
most twice that of the reference run in the same dtype, plus the helper's ulp floor. Rows not a multiple of the
128-row tile, K = 1, 3, 10, a grid-stride loop (more tiles than blocks), strided views and stride-0 upstream
gradients (bitwise equal to contiguous inputs), float64 storage, extreme values."""

import platform
import sys

import pytest
import torch

from tests.cuda_emulation import build_emulator, build_grid_emulator
from tests.cuda_emulation.emulated_gmm import emulated_gmm_nll_bwd, emulated_gmm_nll_fwd
from tests.ops.helpers import GMM_RESULTS, assert_error_within_reference, make_gmm_inputs
from tests.ops.test_gmm_nll_triton import extreme_inputs, small_sigma_inputs

pytestmark = [
    pytest.mark.skipif(build_emulator.find_compiler() is None,
                       reason="no C++ compiler ($CXX, g++, c++ or clang++) to build the CUDA emulator"),
    pytest.mark.skipif(not sys.platform.startswith("linux") or platform.machine() != "x86_64",
                       reason="the grid emulator's fiber switch is x86-64 assembly"),
    pytest.mark.usefixtures("one_thread"),
]

DTYPES = [torch.float32, torch.bfloat16, torch.float16]


@pytest.fixture(scope="module")
def harness():
    return build_grid_emulator.build("gmm_nll")


def upstream(shape, dtype, seed=1234):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)


def reference(inputs, grad):
    """[nll, dx, dmu, dlog_sigma, dlogit_pi] of the plain-PyTorch reference (autograd), in the inputs' dtype."""
    from melnet_fast.ops.gmm.reference import gmm_nll_ref

    leaves = [t.detach().requires_grad_() for t in inputs]
    out = gmm_nll_ref(*leaves)
    return [out.detach(), *torch.autograd.grad(out, leaves, grad)]


def emulated(exe, tmp_path, inputs, grad, sms=1, order=0, poison=0xFF):
    nll = emulated_gmm_nll_fwd(exe, tmp_path, *inputs, sms=sms, order=order, poison=poison)
    return [nll, *emulated_gmm_nll_bwd(exe, tmp_path, grad, *inputs, sms=sms, order=order, poison=poison)]


def check_against_reference(exe, tmp_path, inputs, sms=1, order=0):
    grad = upstream(inputs[0].shape, inputs[0].dtype)
    exact = reference([t.double() for t in inputs], grad.double())
    ref_low = reference(inputs, grad)
    for name, got, low, ex in zip(GMM_RESULTS, emulated(exe, tmp_path, inputs, grad, sms, order), ref_low, exact):
        assert got.dtype == inputs[0].dtype and got.shape == ex.shape, (name, got.dtype, got.shape)
        assert_error_within_reference(name, got, low, ex)


# (shape, K): 77 rows (part of one tile), 300 rows (three tiles, the last partial), K = 1
CASES = [((7, 11), 3), ((300,), 10), ((5, 33), 1)]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape, K", CASES, ids=[f"{'x'.join(map(str, s))}-K{k}" for s, k in CASES])
def test_matches_float64_reference(harness, tmp_path, shape, K, dtype):
    check_against_reference(harness, tmp_path, make_gmm_inputs(shape, K, dtype), order=K % 3)


def test_grid_stride_over_more_tiles_than_blocks(harness, tmp_path):
    """One SM: 16 blocks for 17 tiles of 128 rows, so block 0 takes a second tile (the last, partial one)."""
    check_against_reference(harness, tmp_path, make_gmm_inputs((16 * 128 + 77,), 3, torch.float32), order=2)


def test_extreme_and_small_sigma_inputs(harness, tmp_path):
    check_against_reference(harness, tmp_path, extreme_inputs())
    check_against_reference(harness, tmp_path, small_sigma_inputs())


def test_float64_storage_computes_in_float64(harness, tmp_path):
    inputs = make_gmm_inputs((4, 9), 10, torch.float64)
    grad = upstream((4, 9), torch.float64)
    for name, got, want in zip(GMM_RESULTS, emulated(harness, tmp_path, inputs, grad), reference(inputs, grad)):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12, msg=name)


def nan_gapped_views(inputs):
    """The same values in non-contiguous views whose gaps are NaN (a read of a gap poisons the result): mu and
    logit_pi slices of one [..., 3K] tensor, x with element stride 3, log_sigma with component stride 2."""
    x, mu, log_sigma, logit_pi = inputs
    K = mu.shape[-1]
    theta = torch.full((*mu.shape[:-1], 3 * K), float("nan"), dtype=mu.dtype)
    theta[..., :K] = mu
    theta[..., 2 * K:] = logit_pi
    x_view = torch.full((*x.shape, 3), float("nan"), dtype=x.dtype)[..., 1]
    x_view.copy_(x)
    ls_view = torch.full((*log_sigma.shape[:-1], 2 * K), float("nan"), dtype=mu.dtype)[..., ::2]
    ls_view.copy_(log_sigma)
    views = [x_view, theta[..., :K], ls_view, theta[..., 2 * K:]]
    for v, t in zip(views, inputs):
        assert not v.is_contiguous() and torch.equal(v, t)
    return views


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_strided_inputs_and_orders_give_identical_results(harness, tmp_path, dtype):
    """Strides change addresses, never the arithmetic; neither do thread order, shared-memory garbage or a
    stride-0 upstream gradient (nll.sum()): all bitwise equal."""
    inputs = make_gmm_inputs((5, 29), 10, dtype)
    grad = upstream((5, 29), dtype)
    want = emulated(harness, tmp_path, inputs, grad)
    got = emulated(harness, tmp_path, nan_gapped_views(inputs), grad, order=1, poison=0x00)
    shuffled = emulated(harness, tmp_path, inputs, grad, order=2, poison=0x5A)
    for name, w, g, s in zip(GMM_RESULTS, want, got, shuffled):
        assert torch.isfinite(w).all(), name
        assert torch.equal(g, w) and torch.equal(s, w), name
    ones = torch.ones((), dtype=dtype).expand(5, 29)
    summed = emulated_gmm_nll_bwd(harness, tmp_path, ones, *inputs)
    dense = emulated_gmm_nll_bwd(harness, tmp_path, ones.contiguous(), *inputs)
    for name, g, w in zip(GMM_RESULTS[1:], summed, dense):
        assert torch.equal(g, w), f"{name} with a stride-0 gradient"
