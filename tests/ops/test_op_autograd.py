"""The compiled autograd kernels of the extension's ops (csrc/op_autograd.cpp): each backward is the backward op on
what the forward saved, so autograd's gradients are exactly the backward op's, and they agree with the reference.
gradcheck (test_ops_gradcheck.py), opcheck (test_ops_opcheck.py) and torch.compile (tests/model/test_compile.py) go
through the same kernels; the same formula registered from Python for the triton ops is checked against the
reference by test_lstm_sweep_triton.py."""

import pytest
import torch

import melnet_fast
from melnet_fast.ops import lstm_sweep_2d
from melnet_fast.ops.lstm_sweep import DIRECTION_CODES
from tests.ops.helpers import assert_close, make_gmm_inputs, make_sweep_inputs, random_like, sweep_value_and_grads

ops = torch.ops.melnet_fast


def leaves(inputs):
    return [t.detach().requires_grad_() for t in inputs]


@pytest.mark.parametrize("directions", [["t+", "f+", "f-"], ["f-"]], ids=["t+.f+.f-", "f-"])
def test_sweep_autograd_is_the_backward_op_on_the_saved_forward(directions):
    inputs = make_sweep_inputs(2, 3, 5, 3, 4, len(directions), dtype=torch.float32)
    codes = [DIRECTION_CODES[d] for d in directions]
    xs = leaves(inputs)
    y, gates, cell = ops.lstm_sweep_2d_fwd(*xs, codes, True)
    assert y.requires_grad and y.grad_fn is not None
    grad_y = random_like(y, seed=3)
    got = torch.autograd.grad(y, xs, grad_y)
    x, w_ih, w_hh, _, h0, c0 = inputs
    want = ops.lstm_sweep_2d_bwd(grad_y, x, w_ih, w_hh, h0, c0, y.detach(), gates.detach(), cell.detach(), codes)
    for name, g, w in zip(("dx", "dw_ih", "dw_hh", "dbias", "dh0", "dc0"), got, want):
        assert torch.equal(g, w), name


def test_sweep_autograd_without_an_output_gradient_gives_zero_gradients():
    # Only the saved state (gates) reaches the loss: the sweep's gradient is that of y = 0, gates never differentiated.
    xs = leaves(make_sweep_inputs(1, 2, 3, 2, 3, 1, dtype=torch.float32))
    _, gates, _ = ops.lstm_sweep_2d_fwd(*xs, [0], True)
    grads = torch.autograd.grad(gates.sum(), xs)
    for g in grads:
        assert g is not None and not g.any()


def test_sweep_autograd_only_where_asked():
    inputs = make_sweep_inputs(2, 3, 4, 3, 2, 2, dtype=torch.float64)
    x, w_ih, w_hh, bias, h0, c0 = inputs
    w_hh = w_hh.detach().requires_grad_()
    with melnet_fast.use_backend("cpu"):
        y = lstm_sweep_2d(x, w_ih, w_hh, bias, h0, c0, ["t+", "f-"])
    (dw_hh,) = torch.autograd.grad(y, [w_hh], random_like(y, seed=1234))
    want = sweep_value_and_grads("reference", inputs, ["t+", "f-"])[3]
    assert_close("dw_hh", dw_hh, want, rtol=1e-10, atol=1e-12)


def test_sweep_without_gradients_builds_no_graph():
    inputs = make_sweep_inputs(1, 2, 2, 2, 2, 1, dtype=torch.float32)
    y, gates, cell = ops.lstm_sweep_2d_fwd(*inputs, [2], False)
    assert y.grad_fn is None and not y.requires_grad and gates.numel() == 0 and cell.numel() == 0
    with torch.no_grad():
        y = ops.lstm_sweep_2d_fwd(*leaves(inputs), [2], True)[0]
    assert y.grad_fn is None


def test_gmm_autograd_is_the_backward_op_and_matches_the_reference():
    inputs = make_gmm_inputs((3, 4), 3, dtype=torch.float64)
    xs = leaves(inputs)
    nll = ops.gmm_nll_fwd(*xs)
    grad = random_like(nll, seed=5)
    got = torch.autograd.grad(nll, xs, grad)
    want = ops.gmm_nll_bwd(grad, *inputs)
    for name, g, w in zip(("dx", "dmu", "dlog_sigma", "dlogit_pi"), got, want):
        assert torch.equal(g, w), name
    ref = leaves(inputs)
    with melnet_fast.use_backend("reference"):
        ref_grads = torch.autograd.grad(melnet_fast.ops.gmm_nll(*ref), ref, grad)
    for name, g, w in zip(("dx", "dmu", "dlog_sigma", "dlogit_pi"), got, ref_grads):
        assert_close(name, g, w, rtol=1e-9, atol=1e-11)
