"""torch.library.opcheck on every registered op that runs on the CPU: schema (no hidden mutation or aliasing),
autograd registration, fake (meta) kernels and AOT dispatch agree with the real kernels. The C++ ops, and the
triton backend's custom ops in Triton's interpreter; the CUDA step ops of the sweep need a GPU
(tests/gpu/test_ops_opcheck_gpu.py)."""

import importlib.util

import pytest
import torch

from melnet_fast import backends
from melnet_fast.log_mel_scale import SAMPLE_RANGE
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


def test_sample_tier():
    from tests.ops.test_sample_tier import make_case

    x0, cz_t, cz_f, u, eps, weights = make_case(2, 3, 4, 5, 2, 3, dtype=torch.float32, seed=2)
    # The default value range, and a narrow one that keeps some draws at its bounds.
    for temperature, n_prime, (lo, hi) in ((1.0, 0, SAMPLE_RANGE), (0.0, 1, (-0.3, 0.4))):
        torch.library.opcheck(ops.sample_tier.default,
                              (x0, cz_t, cz_f, u, eps, weights, 2, 3, temperature, n_prime, lo, hi))


@pytest.mark.parametrize("text", [True, False], ids=["text", "centralized-stack-only"])
def test_sample_tier_centralized(text):
    from tests.ops.test_sample_tier import make_case
    from tests.ops.test_sample_tier_centralized import centralized_case

    B, T, F, D, L = 2, 4, 3, 4, 2
    x0, cz_t, cz_f, u, eps, w = make_case(B, T, F, D, L, 2)
    cw, memory, lengths = centralized_case(B, T, F, D, L, 2 if text else 0, [3, 2])
    torch.library.opcheck(ops.sample_tier_centralized.default,
                          (x0, cz_t, cz_f, u, eps, w, L, 2, 1.0, 0, *SAMPLE_RANGE, cw, 1, memory, lengths,
                           0.5 if text else None))


# ---- The triton backend's custom ops, in Triton's interpreter (tests/conftest.py sets it where there is no GPU)

triton_only = pytest.mark.skipif(importlib.util.find_spec("triton") is None or not backends.interpreting_triton(),
                                 reason="needs triton and its interpreter (no GPU here) or a GPU")


@triton_only
@pytest.mark.parametrize("save", [True, False], ids=["save", "nosave"])
def test_lstm_sweep_2d_triton_ops(save):
    from melnet_fast.ops.lstm_sweep import triton_backend  # noqa: F401  (registers the ops; imports triton)

    inputs, codes = sweep_args(1, 2, 3, 2, 2, ["t+", "f-"], requires_grad=save)
    inputs = [t.float().detach().requires_grad_(save) for t in inputs]
    torch.library.opcheck(ops.lstm_sweep_2d_fwd_triton.default, (*inputs, codes, save))
    if save:
        y, gates, cell = ops.lstm_sweep_2d_fwd_triton(*[t.detach() for t in inputs], codes, True)
        x, w_ih, w_hh, _, h0, c0 = [t.detach() for t in inputs]
        torch.library.opcheck(ops.lstm_sweep_2d_bwd_triton.default,
                              (torch.randn_like(y), x, w_ih, w_hh, h0, c0, y, gates, cell, codes))


@triton_only
def test_gmm_nll_triton_ops():
    from melnet_fast.ops.gmm import triton_backend  # noqa: F401  (registers the ops; imports triton)

    inputs = [t.float() for t in make_gmm_inputs((3, 5), 4)]
    grad = torch.randn(3, 5)
    for requires_grad in (True, False):
        leaves = [t.detach().requires_grad_(requires_grad) for t in inputs]
        torch.library.opcheck(ops.gmm_nll_fwd_triton.default, tuple(leaves))
        torch.library.opcheck(ops.gmm_nll_fwd_local_triton.default, tuple(leaves))
    torch.library.opcheck(ops.gmm_nll_bwd_triton.default, (grad, *inputs))
    _, *local = ops.gmm_nll_fwd_local_triton(*inputs)
    torch.library.opcheck(ops.gmm_nll_scale_triton.default, (grad, *local, torch.float32))
