"""Non-contiguous inputs (slices of larger tensors, transposed views) give the results of contiguous ones."""

import pytest
import torch

import melnet_fast
from melnet_fast.ops import gmm_nll, lstm_sweep_2d
from tests.ops.helpers import (
    GMM_RESULTS,
    SWEEP_RESULTS,
    assert_close,
    gmm_value_and_grads,
    make_gmm_inputs,
    make_sweep_inputs,
    strided_sweep_inputs,
    sweep_value_and_grads,
)

BACKENDS = ["reference", "cpu"]


def strided_gmm_inputs(inputs):
    x, mu, log_sigma, logit_pi = inputs
    x_view = x.t().contiguous().t()
    mu_view = mu.transpose(0, 1).contiguous().transpose(0, 1)
    ls_view = torch.randn(*log_sigma.shape[:-1], 2 * log_sigma.shape[-1], dtype=x.dtype)[..., 1::2]
    ls_view.copy_(log_sigma)
    lp_view = torch.randn(2 * logit_pi.shape[0], *logit_pi.shape[1:], dtype=x.dtype)[::2]
    lp_view.copy_(logit_pi)
    views = [x_view, mu_view, ls_view, lp_view]
    for name, v, t in zip(("x", "mu", "log_sigma", "logit_pi"), views, inputs):
        assert not v.is_contiguous() and torch.equal(v, t), name
    return views


def _same(name, got, want, backend):
    # The cpu kernels copy their inputs to contiguous memory, so the results must be bit-identical; the
    # reference may pick another BLAS path for strided operands, so it gets float64 rounding room.
    if backend == "cpu":
        assert torch.equal(got, want), f"{name}: max abs difference {(got - want).abs().max().item():.3e}"
    else:
        assert_close(name, got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("directions", [["t+", "t-", "f+", "f-"], ["f-", "t+"]], ids=".".join)
def test_lstm_sweep_2d_strided_inputs(backend, directions):
    inputs = make_sweep_inputs(2, 5, 7, 3, 4, len(directions))
    want = sweep_value_and_grads(backend, inputs, directions)
    got = sweep_value_and_grads(backend, strided_sweep_inputs(inputs), directions)
    for name, g, w in zip(SWEEP_RESULTS, got, want):
        _same(name, g, w, backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gmm_nll_strided_inputs(backend):
    inputs = make_gmm_inputs((5, 6), K=3)
    want = gmm_value_and_grads(backend, inputs)
    got = gmm_value_and_grads(backend, strided_gmm_inputs(inputs))
    for name, g, w in zip(GMM_RESULTS, got, want):
        _same(name, g, w, backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_expanded_upstream_gradients(backend):
    # out.sum().backward() hands the backward kernels a stride-0 gradient.
    for op, inputs, extra in ((lstm_sweep_2d, make_sweep_inputs(2, 3, 5, 2, 3, 2), (["f+", "t-"],)),
                              (gmm_nll, make_gmm_inputs((4, 3), 5), ())):
        leaves = [t.requires_grad_() for t in inputs]
        with melnet_fast.use_backend(backend):
            out = op(*leaves, *extra)
        expanded = torch.autograd.grad(out.sum(), leaves, retain_graph=True)
        dense = torch.autograd.grad(out, leaves, torch.ones_like(out))
        for i, (e, d) in enumerate(zip(expanded, dense)):
            _same(f"{op.__name__} gradient {i}", e, d, backend)
