"""gmm_nll: every backend that runs on the CPU against "reference", value and all four gradients."""

import pytest
import torch

from tests.ops.helpers import (
    GMM_RESULTS,
    assert_close,
    assert_error_within_reference,
    gmm_value_and_grads,
    gmm_vs_float64,
    make_gmm_inputs,
)

CPU_BACKENDS = ["cpu"]

CASES = [
    pytest.param((3, 7, 5), 4, id="shape3x7x5-K4"),
    pytest.param((13,), 1, id="shape13-K1"),
    pytest.param((2, 3, 4, 5), 10, id="shape2x3x4x5-K10"),
    pytest.param((), 3, id="scalar-K3"),
]


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("shape, K", CASES)
def test_float64_matches_reference(backend, shape, K):
    # A handful of exp / log / sums of K terms per element: float64 rounding is near 1e-15, so 1e-10 is tight.
    inputs = make_gmm_inputs(shape, K, torch.float64)
    want = gmm_value_and_grads("reference", inputs)
    got = gmm_value_and_grads(backend, inputs)
    for name, g, w in zip(GMM_RESULTS, got, want):
        assert_close(name, g, w, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("shape, K", CASES)
def test_float32_error_within_reference_error(backend, shape, K):
    inputs32 = make_gmm_inputs(shape, K, torch.float32)
    for name, fast, ref32, exact in gmm_vs_float64(backend, inputs32):
        assert fast.dtype == torch.float32, f"{name}: dtype {fast.dtype}"
        assert_error_within_reference(name, fast, ref32, exact)
