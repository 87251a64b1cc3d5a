"""Bad arguments raise ValueError naming the argument before any kernel runs; empty inputs give empty results."""

import importlib
import re

import pytest
import torch

import melnet_fast
from melnet_fast.ops import dispatch, gmm_nll, gmm_sample, lstm_sweep_2d
from tests.ops.helpers import make_gmm_inputs, make_sweep_inputs

BACKENDS = ["reference", "cpu"]
gmm_module = importlib.import_module("melnet_fast.ops.gmm")


@pytest.fixture
def no_kernels(monkeypatch):
    """Every implementation behind the public ops raises, so a check that comes too late fails the test."""
    def kernel_ran(*args, **kwargs):
        raise AssertionError("a kernel ran before the arguments were checked")

    for op in dispatch.REGISTRY.values():
        for backend in op.backends:
            monkeypatch.setitem(op._functions, backend.name, kernel_ran)
    monkeypatch.setattr(gmm_module, "gmm_sample_ref", kernel_ran)


def assert_names(excinfo, argument):
    message = str(excinfo.value)
    assert re.match(rf"{re.escape(argument)}\b", message), f"message does not start with {argument!r}: {message}"


def sweep_kwargs(**changes):
    x, w_ih, w_hh, bias, h0, c0 = make_sweep_inputs(2, 3, 4, 3, 2, 3, torch.float32)
    kwargs = dict(x=x, w_ih=w_ih, w_hh=w_hh, bias=bias, h0=h0, c0=c0, directions=["t+", "f+", "f-"])
    kwargs.update(changes)
    return kwargs


f32, f64 = torch.float32, torch.float64
SWEEP_CASES = [
    pytest.param("x", dict(x=torch.randn(2, 3, 4)), id="x-rank3"),
    pytest.param("x", dict(x=torch.randn(2, 3, 4, 3).tolist()), id="x-not-a-tensor"),
    pytest.param("x", dict(x=torch.ones(2, 3, 4, 3, dtype=torch.int64)), id="x-integer"),
    pytest.param("w_ih", dict(w_ih=torch.randn(3, 8)), id="w_ih-rank2"),
    pytest.param("w_ih", dict(w_ih=torch.randn(3, 8, 5)), id="w_ih-input-size"),
    pytest.param("w_hh", dict(w_hh=torch.randn(3, 7, 2)), id="w_hh-not-4H"),
    pytest.param("w_hh", dict(w_hh=torch.randn(4, 8, 2)), id="w_hh-four-sets-three-directions"),
    pytest.param("bias", dict(bias=torch.randn(3, 9)), id="bias-size"),
    pytest.param("bias", dict(bias=torch.randn(3, 8, 1)), id="bias-rank3"),
    pytest.param("h0", dict(h0=torch.randn(3, 3)), id="h0-hidden-size"),
    pytest.param("c0", dict(c0=torch.randn(2, 2)), id="c0-directions"),
    pytest.param("directions", dict(directions=["t+", "x+", "f-"]), id="directions-unknown"),
    pytest.param("directions", dict(directions=["t+", "t+", "f-"]), id="directions-repeated"),
    pytest.param("directions", dict(directions="t+"), id="directions-a-string"),
    pytest.param("directions", dict(directions=[]), id="directions-empty"),
    pytest.param("directions", dict(directions=["t+", "t-", "f+", "f-", "t+"]), id="directions-five"),
    pytest.param("w_hh", dict(w_hh=torch.randn(3, 8, 2, dtype=f64)), id="w_hh-float64-x-float32"),
    pytest.param("c0", dict(c0=torch.randn(3, 2, dtype=f64)), id="c0-float64-x-float32"),
    pytest.param("bias", dict(bias=torch.randn(3, 8, device="meta")), id="bias-other-device"),
]


@pytest.mark.usefixtures("no_kernels")
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("argument, changes", SWEEP_CASES)
def test_lstm_sweep_2d_rejects(backend, argument, changes):
    with melnet_fast.use_backend(backend), pytest.raises(ValueError) as excinfo:
        lstm_sweep_2d(**sweep_kwargs(**changes))
    assert_names(excinfo, argument)


def gmm_kwargs(**changes):
    x, mu, log_sigma, logit_pi = make_gmm_inputs((3, 4), 5, torch.float32)
    kwargs = dict(x=x, mu=mu, log_sigma=log_sigma, logit_pi=logit_pi)
    kwargs.update(changes)
    return kwargs


GMM_CASES = [
    pytest.param("x", dict(x=[0.0, 1.0]), id="x-not-a-tensor"),
    pytest.param("mu", dict(mu=torch.randn(3, 5, 5)), id="mu-leading-dims"),
    pytest.param("mu", dict(mu=torch.randn(3, 4, 0)), id="mu-K0"),
    pytest.param("log_sigma", dict(log_sigma=torch.randn(3, 4, 6)), id="log_sigma-K"),
    pytest.param("logit_pi", dict(logit_pi=torch.randn(3, 4)), id="logit_pi-rank"),
    pytest.param("log_sigma", dict(log_sigma=torch.full((3, 4, 5), float("inf"))), id="log_sigma-inf"),
    pytest.param("log_sigma", dict(log_sigma=torch.full((3, 4, 5), float("nan"))), id="log_sigma-nan"),
    pytest.param("logit_pi", dict(logit_pi=torch.randn(3, 4, 5, dtype=f64)), id="logit_pi-float64"),
    pytest.param("mu", dict(mu=torch.randn(3, 4, 5, device="meta")), id="mu-other-device"),
]


@pytest.mark.usefixtures("no_kernels")
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("argument, changes", GMM_CASES)
def test_gmm_nll_rejects(backend, argument, changes):
    with melnet_fast.use_backend(backend), pytest.raises(ValueError) as excinfo:
        gmm_nll(**gmm_kwargs(**changes))
    assert_names(excinfo, argument)


SAMPLE_CASES = [
    pytest.param("temperature", dict(temperature=-0.5), id="temperature-negative"),
    pytest.param("temperature", dict(temperature=float("nan")), id="temperature-nan"),
    pytest.param("temperature", dict(temperature="hot"), id="temperature-a-string"),
    pytest.param("log_sigma", dict(log_sigma=torch.full((3, 4, 5), float("-inf"))), id="log_sigma-inf"),
    pytest.param("logit_pi", dict(logit_pi=torch.randn(3, 4, 2)), id="logit_pi-K"),
]


@pytest.mark.usefixtures("no_kernels")
@pytest.mark.parametrize("argument, changes", SAMPLE_CASES)
def test_gmm_sample_rejects(argument, changes):
    kwargs = gmm_kwargs()
    del kwargs["x"]
    kwargs.update(changes)
    with pytest.raises(ValueError) as excinfo:
        gmm_sample(**kwargs)
    assert_names(excinfo, argument)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_lstm_sweep_2d_empty_batch(backend, dtype):
    x, *params = make_sweep_inputs(1, 3, 4, 3, 2, 3, dtype)
    with melnet_fast.use_backend(backend):
        y = lstm_sweep_2d(x[:0], *params, ["t-", "f+", "t+"])
    assert y.shape == (0, 3, 4, 6) and y.dtype == dtype


@pytest.mark.parametrize("backend", BACKENDS)
def test_gmm_nll_empty_input(backend):
    x, mu, log_sigma, logit_pi = make_gmm_inputs((0, 4), 3)
    with melnet_fast.use_backend(backend):
        assert gmm_nll(x, mu, log_sigma, logit_pi).shape == (0, 4)
