"""The persistent cooperative tier sampler (csrc/cuda/sample_tier_kernel.cuh, the repository's file, compiled at
test time with the host side of csrc/cuda/sample_tier.cu redone by emu_sample_tier.cpp) run on the CPU by the
grid emulator of this folder (shim/emu_grid.h: every thread of a small grid is a fiber; grid.sync(), __syncthreads
and the warp shuffles are rendezvous), against the reference sampler fed the same u and eps.

Bounds as the GPU test's (tests/gpu/test_sample_tier_cuda_gpu.py, whose weight scaling and checks are reused): x
and the log density within 4x the float32 reference's error against float64 (plus the helper's ulp floor), the
same mixture component for every draw, and the accumulated log density equal to the density of the drawn sample.
Weights in bfloat16 / float16 are exact in float32, so the same bounds hold. Sizes cover the scalar path (D = 5,
and D = 12 for 16-bit weights) and the 16-byte path (D = 8, 16, and 12 for float32), one and four batch columns
per task (B < 4 and B >= 4), one to three layers, primes, temperatures 0, 0.7 and 1. The grid size (2 to 5 blocks)
and the thread order must not change a single bit."""

import platform
import sys

import pytest
import torch

from melnet_fast.log_mel_scale import CEILING, SAMPLE_RANGE
from melnet_fast.ops.tier_sampling.reference import sample_tier_ref
from tests.cuda_emulation import build_emulator, build_grid_emulator
from tests.cuda_emulation.emulated_sample_tier import emulated_sample_tier
from tests.gpu.test_sample_tier_cuda_gpu import FACTOR, chosen_components, expected_log_density, scaled_weights
from tests.ops.helpers import assert_error_within_reference
from tests.ops.test_sample_tier import make_case, saturating

pytestmark = [
    pytest.mark.skipif(build_emulator.find_compiler() is None,
                       reason="no C++ compiler ($CXX, g++, c++ or clang++) to build the CUDA emulator"),
    pytest.mark.skipif(not sys.platform.startswith("linux") or platform.machine() != "x86_64",
                       reason="the grid emulator's fiber switch is x86-64 assembly"),
    pytest.mark.usefixtures("one_thread"),
]


@pytest.fixture(scope="module")
def harness():
    return build_grid_emulator.build("sample_tier")


def make_inputs(B, T, F, D, L, K, seed=0):
    """float32 data and noise, float64 weights scaled as in the GPU test."""
    x0, cz_t, cz_f, u, eps, _ = make_case(B, T, F, D, L, K, seed=seed)
    return [t.float() for t in (x0, cz_t, cz_f, u, eps)], scaled_weights(D, L, K, seed)


def compare_to_reference(exe, tmp_path, B, T, F, D, L, K, tau, n_prime, weight_dtype, blocks, seed=0, order=0,
                         saturate=False, value_range=SAMPLE_RANGE):
    inputs, w64 = make_inputs(B, T, F, D, L, K, seed)
    if saturate:
        w64 = saturating(w64, L)
    weights = [t.to(weight_dtype) for t in w64]
    got, got_ld = emulated_sample_tier(exe, tmp_path, *inputs, weights, L, K, tau, n_prime, blocks, order=order,
                                       value_range=value_range)
    exact_w = [t.double() for t in weights]  # the rounded weights, exactly
    exact_in = [t.double() for t in inputs]
    # float32 bounds, as the kernels read them
    lo, hi = (float(torch.tensor(v, dtype=torch.float32)) for v in value_range)
    ref32, ref32_ld = sample_tier_ref(*inputs, [t.float() for t in weights], L, K, tau, n_prime, lo, hi)
    ref64, ref64_ld = sample_tier_ref(*exact_in, exact_w, L, K, tau, n_prime, lo, hi)
    assert torch.equal(got[:, :n_prime], inputs[0][:, :n_prime]), "the prime frames must be kept"
    tag = f"B{B}-T{T}-F{F}-D{D}-L{L}-K{K}-tau{tau}-prime{n_prime}-{weight_dtype}-blocks{blocks}"
    assert_error_within_reference(f"x {tag}", got, ref32, ref64, FACTOR)
    assert_error_within_reference(f"log_density {tag}", got_ld, ref32_ld, ref64_ld, FACTOR)
    _, cz_t64, cz_f64, u64, _ = exact_in
    k_got = chosen_components(got.double(), cz_t64, cz_f64, exact_w, L, K, tau, u64, n_prime)
    k_ref = chosen_components(ref64, cz_t64, cz_f64, exact_w, L, K, tau, u64, n_prime)
    assert torch.equal(k_got, k_ref), f"{tag}: {(k_got != k_ref).sum().item()} draws took another component"
    want = expected_log_density(got.double(), cz_t64, cz_f64, exact_w, L, K, n_prime)
    ref_want = expected_log_density(ref32.double(), cz_t64, cz_f64, exact_w, L, K, n_prime)
    err = (got_ld.double() - want).abs().max().item()
    ref_err = (ref32_ld.double() - ref_want).abs().max().item()
    floor = 8 * torch.finfo(torch.float32).eps * want.abs().max().item()
    assert err <= FACTOR * ref_err + floor, (f"{tag}: accumulated log density off the sample's density by {err:.3e} "
                                             f"(float32 reference: {ref_err:.3e})")
    return got, got_ld


F32, BF16, F16 = torch.float32, torch.bfloat16, torch.float16
# (B, T, F, D, L, K, temperature, n_prime, weight dtype, blocks)
CASES = [
    (1, 3, 5, 8, 1, 3, 1.0, 0, F32, 2),     # 16-byte loads (float32), one batch column, spread task numbering
    (1, 3, 5, 8, 2, 3, 0.7, 1, BF16, 3),    # 16-byte loads (bfloat16: D % 8 == 0), prime
    (3, 3, 5, 5, 3, 3, 0.7, 0, F32, 5),     # scalar path, three layers, more warps than most phases' tasks
    (3, 3, 5, 5, 2, 3, 0.0, 2, BF16, 2),    # scalar path, temperature 0, two primed frames
    (3, 3, 5, 12, 2, 3, 0.0, 0, F32, 2),    # 16-byte path for float32 (D % 4 == 0)
    (3, 3, 5, 12, 1, 3, 1.0, 1, BF16, 4),   # ... scalar for bfloat16 (D % 8 != 0)
    (5, 3, 5, 8, 2, 3, 1.0, 0, F32, 3),     # four batch columns per task (B >= 4), one clamped group
    (5, 2, 3, 16, 1, 10, 0.7, 1, F16, 2),   # float16 weights, K = 10
    (2, 3, 1, 5, 1, 1, 1.0, 0, F32, 2),     # one channel, one component
    (2, 3, 9, 40, 3, 10, 1.0, 0, F32, 4),   # the GPU test's largest case: 16-byte path over part of the warp
    (2, 3, 5, 8, 1, 3, 1.0, 3, F32, 2),     # every frame primed: x kept, log density 0
    (5, 2, 2, 8, 1, 300, 1.0, 0, F32, 2),   # 3K = 900: the head in chunks of 4 batch rows (4 + 1)
]


def case_id(c):
    B, T, F, D, L, K, tau, n_prime, dt, blocks = c
    return f"B{B}-T{T}-F{F}-D{D}-L{L}-K{K}-tau{tau}-prime{n_prime}-{str(dt)[6:]}-g{blocks}"


@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_matches_reference(harness, tmp_path, case):
    B, T, F, D, L, K, tau, n_prime, dt, blocks = case
    compare_to_reference(harness, tmp_path, B, T, F, D, L, K, tau, n_prime, dt, blocks, order=CASES.index(case) % 3)


@pytest.mark.parametrize("D", [5, 8], ids=["scalar", "vector"])
def test_saturated_gates(harness, tmp_path, D):
    """LSTM biases of +-1e30 saturate their gates (sigmoid 1 / 0, tanh +-1): the sample stays finite and equal to the
    reference's (the sampler's exp once had no clamp and made them NaN)."""
    compare_to_reference(harness, tmp_path, 2, 3, 5, D, 2, 3, 1.0, 0, F32, 3, seed=4, saturate=True)


@pytest.mark.parametrize("tau", [1.0, 0.0])
def test_drawn_values_kept_in_the_value_range(harness, tmp_path, tau):
    """A narrow range, so that draws fall below, inside and above it: the kernel keeps the reference's values."""
    got, _ = compare_to_reference(harness, tmp_path, 3, 3, 5, 8, 2, 3, tau, 0, F32, 3, value_range=(-0.3, 0.4))
    assert ((got == got.new_tensor(-0.3)) | (got == got.new_tensor(0.4))).any()
    assert ((got > -0.3) & (got < 0.4)).any()


def test_nan_weights_give_the_top_of_the_range(harness, tmp_path):
    inputs, w64 = make_inputs(2, 3, 4, 8, 1, 2, seed=4)
    weights = [t.float() for t in w64]
    weights[-1] = torch.full_like(weights[-1], float("nan"))  # the head's bias
    x, _ = emulated_sample_tier(harness, tmp_path, *inputs, weights, 1, 2, 1.0, 1, 2)
    assert torch.equal(x[:, :1], inputs[0][:, :1])
    assert (x[:, 1:] == torch.tensor(CEILING, dtype=torch.float32)).all()


def test_batch_of_more_than_one_launch(harness, tmp_path):
    """B = 66: two launches (64 + 2 rows) on the same scratch, the second with one batch column per task."""
    compare_to_reference(harness, tmp_path, 66, 2, 2, 4, 1, 2, 1.0, 0, F32, 2)


@pytest.mark.parametrize("B, D, dt", [(1, 8, BF16), (5, 5, F32)])
def test_result_independent_of_grid_size_and_thread_order(harness, tmp_path, B, D, dt):
    """Bitwise the same sample and log density on 2, 3 and 5 blocks, in any thread order, whatever garbage
    shared memory starts with: every task has one owner whatever the grid, and a race between phases (a missing
    grid barrier) or on shared memory would show here."""
    inputs, w64 = make_inputs(B, 3, 5, D, 2, 3, seed=3)
    weights = [t.to(dt) for t in w64]
    runs = [emulated_sample_tier(harness, tmp_path, *inputs, weights, 2, 3, 0.7, 1, blocks, order=order,
                                 poison=poison)
            for blocks, order, poison in ((2, 0, 0xFF), (5, 1, 0x00), (3, 2, 0x5A))]
    for x, ld in runs:
        assert torch.isfinite(x).all() and torch.isfinite(ld).all()
    for x, ld in runs[1:]:
        assert torch.equal(x, runs[0][0]) and torch.equal(ld, runs[0][1]), "the result depends on the grid size"
