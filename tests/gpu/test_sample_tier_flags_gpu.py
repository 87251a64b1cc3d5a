"""The second design of the CUDA tier sampler (the "flags" variant of the cuda backend:
csrc/cuda/sample_tier_flags_kernel.cuh) on the device, against the reference sampler with the bounds of its
emulation test (tests/cuda_emulation/test_sample_tier_flags_emulated.py), against the first design (the same draws),
and across its knobs (grid size, layers resident in shared memory, the L2 window), which must not change a bit."""

import pytest
import torch

import melnet_fast
from melnet_fast.ops import sample_tier
from tests.cuda_emulation.test_sample_tier_flags_emulated import check_against_reference
from tests.gpu.test_sample_tier_cuda_gpu import (  # noqa: F401  (the autouse fixture applies here too)
    CASES,
    chosen_components,
    cuda_backend_and_exact_matmul,
    cuda_case,
    run_cuda,
)

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def run_flags(inputs, weights, L, K, tau, n_prime=0):
    with melnet_fast.use_backend("cuda"), melnet_fast.use_variant("sample_tier", "flags"):
        return sample_tier(*inputs, weights, L, K, tau, n_prime)


def compare(B, T, F, D, L, K, tau, n_prime, weight_dtype=torch.float32, seed=0):
    inputs, weights, _ = cuda_case(B, T, F, D, L, K, seed, weight_dtype)
    got, got_ld = run_flags(inputs, weights, L, K, tau, n_prime)
    assert got.dtype == torch.float32 and got.device == inputs[0].device
    check_against_reference(got, got_ld, inputs, weights, L, K, tau, n_prime,
                            f"B{B}-T{T}-F{F}-D{D}-L{L}-K{K}-tau{tau}-prime{n_prime}-{weight_dtype}")
    return inputs, weights, got, got_ld


@pytest.mark.parametrize("tau, n_prime", [(0.0, 0), (1.0, 0), (0.7, 1)])
@pytest.mark.parametrize("B,T,F,D,L,K", CASES)
def test_matches_reference(B, T, F, D, L, K, tau, n_prime):
    compare(B, T, F, D, L, K, tau, min(n_prime, T - 1))


@pytest.mark.parametrize("weight_dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("B,T,F,D,L,K", [CASES[0], CASES[1], CASES[3], CASES[4]])
def test_low_precision_weights(B, T, F, D, L, K, weight_dtype):
    compare(B, T, F, D, L, K, 1.0, 1, weight_dtype=weight_dtype)


@pytest.mark.parametrize("weight_dtype", [torch.float32, torch.bfloat16])
def test_same_draws_as_the_first_design(weight_dtype):
    """Both designs take the same mixture component for every draw and agree within the flags design's bound."""
    inputs, weights, got, _ = compare(3, 3, 7, 40, 3, 10, 1.0, 0, weight_dtype=weight_dtype, seed=2)
    first, _ = run_cuda(inputs, weights, 3, 10, 1.0)
    exact_w = [t.double().cpu() for t in weights]
    args = [t.double().cpu() for t in inputs]
    k_flags = chosen_components(got.double().cpu(), args[1], args[2], exact_w, 3, 10, 1.0, args[3], 0)
    k_first = chosen_components(first.double().cpu(), args[1], args[2], exact_w, 3, 10, 1.0, args[3], 0)
    assert torch.equal(k_flags, k_first)


def test_knobs_do_not_change_a_bit(monkeypatch):
    """Grid size (MELNET_FAST_SAMPLER_MAX_BLOCKS; 1 is raised to the 2 blocks the sweeps need), resident layers
    (MELNET_FAST_SAMPLER_RESIDENT_LAYERS), the L2 window (MELNET_FAST_SAMPLER_L2_WINDOW) and the sweep rows
    (MELNET_FAST_SAMPLER_SWEEP_ROWS) change where rows live and who computes them, not the numbers."""
    for B in (5, 1):
        inputs, weights, _ = cuda_case(B, 2, 5, 16, 3, 3, seed=6, weight_dtype=torch.bfloat16)
        base = run_flags(inputs, weights, 3, 3, 0.7)
        for name, value in (("MELNET_FAST_SAMPLER_MAX_BLOCKS", "7"), ("MELNET_FAST_SAMPLER_MAX_BLOCKS", "1"),
                            ("MELNET_FAST_SAMPLER_RESIDENT_LAYERS", "1"), ("MELNET_FAST_SAMPLER_RESIDENT_LAYERS", "0"),
                            ("MELNET_FAST_SAMPLER_L2_WINDOW", "0"), ("MELNET_FAST_SAMPLER_SWEEP_ROWS", "0")):
            monkeypatch.setenv(name, value)
            got = run_flags(inputs, weights, 3, 3, 0.7)
            monkeypatch.delenv(name)
            assert torch.equal(got[0], base[0]) and torch.equal(got[1], base[1]), f"{name}={value}"


def test_blizzard_initial_tier_shape():
    """The Blizzard initial tier's network (D = 512, 12 layers, K = 10) on a few frames, bfloat16 weights: part of
    the frequency-delayed stack resident in shared memory, the rest through the L2 window; the same draws as the
    first design."""
    inputs, weights, _ = cuda_case(1, 2, 6, 512, 12, 10, seed=1, weight_dtype=torch.bfloat16)
    got, got_ld = run_flags(inputs, weights, 12, 10, 1.0)
    first, first_ld = run_cuda(inputs, weights, 12, 10, 1.0)
    assert torch.isfinite(got).all() and torch.isfinite(got_ld).all()
    bound = 2 * 2.0 ** -8 * max(1.0, first.abs().max().item())  # FOLDED_REL x bfloat16 unit roundoff
    assert (got - first).abs().max().item() <= bound
