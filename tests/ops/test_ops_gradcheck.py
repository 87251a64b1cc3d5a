"""torch.autograd.gradcheck in float64 on the cpu backend (tiny shapes): the analytic backward kernels
against finite differences of the forward kernels."""

import pytest
import torch

import melnet_fast
from melnet_fast.ops import gmm_nll, lstm_sweep_2d
from tests.ops.helpers import make_gmm_inputs, make_sweep_inputs


@pytest.mark.parametrize("B, T, F, I, H, directions", [
    pytest.param(2, 3, 2, 2, 2, ["t+", "t-", "f+", "f-"], id="B2-T3-F2-I2-H2-t+.t-.f+.f-"),
    pytest.param(1, 2, 3, 3, 1, ["f-", "t+"], id="B1-T2-F3-I3-H1-f-.t+"),
])
def test_lstm_sweep_2d_gradcheck(B, T, F, I, H, directions):
    inputs = [t.requires_grad_() for t in make_sweep_inputs(B, T, F, I, H, len(directions))]
    with melnet_fast.use_backend("cpu"):
        assert torch.autograd.gradcheck(lambda *a: lstm_sweep_2d(*a, directions), inputs)


@pytest.mark.parametrize("shape, K", [pytest.param((3, 2), 3, id="shape3x2-K3"),
                                      pytest.param((4,), 1, id="shape4-K1")])
def test_gmm_nll_gradcheck(shape, K):
    inputs = [t.requires_grad_() for t in make_gmm_inputs(shape, K)]
    with melnet_fast.use_backend("cpu"):
        assert torch.autograd.gradcheck(gmm_nll, inputs)
