"""torch.library.opcheck on the registered compiled ops: schema (no hidden mutation or aliasing), autograd
registration, fake (meta) kernels and AOT dispatch agree with the real kernels."""

import pytest
import torch

from melnet_fast.ops import DIRECTION_CODES
from tests.ops.helpers import make_gmm_inputs, make_sweep_inputs

ops = torch.ops.melnet_fast

SWEEP_CASES = [
    pytest.param(2, 3, 4, 3, 2, ["t+", "f-", "t-"], id="B2-T3-F4-I3-H2-t+.f-.t-"),
    pytest.param(1, 4, 1, 2, 3, ["t+", "f+"], id="B1-T4-F1-I2-H3-t+.f+"),  # single-row directions
]


def sweep_args(B, T, F, I, H, directions, requires_grad):
    inputs = [t.requires_grad_(requires_grad) for t in make_sweep_inputs(B, T, F, I, H, len(directions))]
    return inputs, [DIRECTION_CODES[d] for d in directions]


@pytest.mark.parametrize("B, T, F, I, H, directions", SWEEP_CASES)
def test_lstm_sweep_2d_fwd_saving(B, T, F, I, H, directions):
    inputs, codes = sweep_args(B, T, F, I, H, directions, requires_grad=True)
    torch.library.opcheck(ops.lstm_sweep_2d_fwd.default, (*inputs, codes, True))


@pytest.mark.parametrize("B, T, F, I, H, directions", SWEEP_CASES)
def test_lstm_sweep_2d_fwd_not_saving(B, T, F, I, H, directions):
    # save=False is the inference call (the Python layer passes it only when no gradient is wanted); its
    # backward refuses to run by design, so the inputs do not require grad here.
    inputs, codes = sweep_args(B, T, F, I, H, directions, requires_grad=False)
    y, gates, cell = ops.lstm_sweep_2d_fwd(*inputs, codes, False)
    assert gates.numel() == 0 and cell.numel() == 0
    torch.library.opcheck(ops.lstm_sweep_2d_fwd.default, (*inputs, codes, False))


@pytest.mark.parametrize("B, T, F, I, H, directions", SWEEP_CASES)
def test_lstm_sweep_2d_bwd(B, T, F, I, H, directions):
    inputs, codes = sweep_args(B, T, F, I, H, directions, requires_grad=False)
    x, w_ih, w_hh, bias, h0, c0 = inputs
    y, gates, cell = ops.lstm_sweep_2d_fwd(*inputs, codes, True)
    grad_y = torch.randn_like(y)
    torch.library.opcheck(ops.lstm_sweep_2d_bwd.default, (grad_y, x, w_ih, w_hh, h0, c0, y, gates, cell, codes))


@pytest.mark.parametrize("requires_grad", [True, False], ids=["grad", "nograd"])
def test_gmm_nll_fwd(requires_grad):
    inputs = [t.requires_grad_(requires_grad) for t in make_gmm_inputs((3, 5), 4)]
    torch.library.opcheck(ops.gmm_nll_fwd.default, tuple(inputs))


def test_gmm_nll_bwd():
    x, mu, log_sigma, logit_pi = make_gmm_inputs((3, 5), 4)
    torch.library.opcheck(ops.gmm_nll_bwd.default, (torch.randn_like(x), x, mu, log_sigma, logit_pi))


@pytest.mark.parametrize("text", [True, False], ids=["text", "centralized-stack-only"])
def test_sample_tier_centralized(text):
    from melnet_fast.log_mel_scale import SAMPLE_RANGE
    from tests.ops.test_sample_tier import make_case
    from tests.ops.test_sample_tier_centralized import centralized_case

    B, T, F, D, L = 2, 4, 3, 4, 2
    x0, cz_t, cz_f, u, eps, w = make_case(B, T, F, D, L, 2)
    cw, memory, lengths = centralized_case(B, T, F, D, L, 2 if text else 0, [3, 2])
    torch.library.opcheck(ops.sample_tier_centralized.default,
                          (x0, cz_t, cz_f, u, eps, w, L, 2, 1.0, 0, *SAMPLE_RANGE, cw, 1, memory, lengths,
                           0.5 if text else None))
