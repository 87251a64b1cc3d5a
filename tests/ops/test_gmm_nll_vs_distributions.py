"""gmm_nll against torch.distributions.MixtureSameFamily, and its stability at extreme parameters."""

import math

import pytest
import torch
from torch.distributions import Categorical, MixtureSameFamily, Normal

import melnet_fast
from melnet_fast.ops import gmm_nll
from tests.ops.helpers import GMM_RESULTS, assert_close, gmm_value_and_grads, make_gmm_inputs, random_like

BACKENDS = ["reference", "cpu"]
LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def distribution_nll(x, mu, log_sigma, logit_pi):
    mixture = MixtureSameFamily(Categorical(logits=logit_pi), Normal(mu, log_sigma.exp()), validate_args=False)
    return -mixture.log_prob(x)


def distribution_value_and_grads(inputs):
    leaves = [t.detach().clone().requires_grad_() for t in inputs]
    nll = distribution_nll(*leaves)
    return [nll.detach()] + list(torch.autograd.grad(nll, leaves, random_like(nll, seed=1234)))


def extreme_inputs(kind: str, dtype=torch.float64):
    """x [6, 5], parameters [6, 5, K=4] with one kind of extreme value."""
    x, mu, log_sigma, logit_pi = make_gmm_inputs((6, 5), 4, torch.float64, seed=7)
    if kind == "logits-1e4":
        logit_pi = logit_pi * 5e3  # spreads of ~1e4 between components
    elif kind == "sigma-tiny":
        log_sigma = torch.full_like(log_sigma, -20.0)
        x = mu[..., 0] + log_sigma[..., 0].exp() * x  # within a few sigma of component 0
    elif kind == "sigma-huge":
        log_sigma = torch.full_like(log_sigma, 20.0)
    elif kind == "outlier-1e6":
        x = mu[..., 0] + 1e6
    elif kind == "outlier-1e6-sigma-tiny":
        x = mu[..., 0] + 1e6
        log_sigma = torch.full_like(log_sigma, -20.0)
    elif kind == "all-extremes":
        x = x + 1e6 * torch.sign(x)
        log_sigma = torch.tensor([-20.0, 0.0, 20.0, -5.0], dtype=torch.float64).expand_as(mu).clone()
        logit_pi = logit_pi * 5e3
    else:
        raise AssertionError(kind)
    return [t.to(dtype) for t in (x, mu, log_sigma, logit_pi)]


EXTREMES = ["logits-1e4", "sigma-tiny", "sigma-huge", "outlier-1e6", "outlier-1e6-sigma-tiny", "all-extremes"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["random", *EXTREMES])
def test_float64_matches_mixture_same_family(backend, kind):
    # float64 keeps every case meaningful (z^2 <= 1e30, logits 1e4 apart): values and gradients agree to
    # rounding, relative to each element's size.
    inputs = make_gmm_inputs((4, 3, 5), 6) if kind == "random" else extreme_inputs(kind)
    want = distribution_value_and_grads(inputs)
    got = gmm_value_and_grads(backend, inputs)
    for name, g, w in zip(GMM_RESULTS, got, want):
        assert_close(name, g, w, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("kind", EXTREMES)
def test_extremes_stay_finite(backend, dtype, kind):
    for name, t in zip(GMM_RESULTS, gmm_value_and_grads(backend, extreme_inputs(kind, dtype))):
        bad = ~torch.isfinite(t)
        assert not bad.any(), f"{name}: {int(bad.sum())} non-finite values, first at {bad.nonzero()[0].tolist()}"


# Hand-computed single elements (K = 2) where one component carries all the posterior weight w.
# nll = 0.5 z^2 + log_sigma + log sqrt(2 pi) - log pi for the winning component, z = (x - mu) / sigma;
# d/dx = z / sigma, d/dmu = -z / sigma, d/dlog_sigma = 1 - z^2 (times w), d/dlogit = pi - w.
def far_outlier_case():
    # Component 0 is very narrow and 1e6 away (log density ~ -1e29); component 1 wins despite pi ~ e^-2e4.
    x, mu, ls, lp = 1e6, (0.0, 5.0), (-20.0, 0.0), (1e4, -1e4)
    z = x - mu[1]
    nll = 0.5 * z * z + ls[1] + LOG_SQRT_2PI + 2e4  # -log pi_1 = 2e4 + log(1 + e^-2e4)
    grads = (z, (0.0, -z), (0.0, 1.0 - z * z), (1.0, -1.0))
    return (x, mu, ls, lp), nll, grads


def narrow_peak_case():
    # x sits on a component with sigma = e^-20; the other has sigma = e^20 and weight e^-40 of the first.
    x, mu, ls, lp = 0.5, (0.5, 3.0), (-20.0, 20.0), (0.0, 0.0)
    a0 = math.log(0.5) - ls[0] - LOG_SQRT_2PI
    z1 = (x - mu[1]) * math.exp(-ls[1])
    a1 = math.log(0.5) - 0.5 * z1 * z1 - ls[1] - LOG_SQRT_2PI
    w1 = 1.0 / (1.0 + math.exp(a0 - a1))
    nll = -(a0 + math.log1p(math.exp(a1 - a0)))
    dz1 = w1 * z1 * math.exp(-ls[1])
    grads = (dz1, (0.0, -dz1), (1.0 - w1, w1 * (1 - z1 * z1)), (0.5 - (1 - w1), 0.5 - w1))
    return (x, mu, ls, lp), nll, grads


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype, rtol", [
    pytest.param(torch.float64, 1e-12, id="float64"),
    pytest.param(torch.float32, 1e-6, id="float32"),  # ~8 ulps of a short chain of float32 operations
])
@pytest.mark.parametrize("make_case", [far_outlier_case, narrow_peak_case], ids=lambda f: f.__name__[:-5])
def test_hand_computed_value_and_gradients(backend, dtype, rtol, make_case):
    (x, mu, ls, lp), nll, (dx, dmu, dls, dlp) = make_case()
    leaves = [torch.tensor(v, dtype=dtype, requires_grad=True) for v in (x, mu, ls, lp)]
    with melnet_fast.use_backend(backend):
        out = gmm_nll(*leaves)
    out.backward()
    want = [nll, dx, dmu, dls, dlp]
    got = [out.detach()] + [t.grad for t in leaves]
    for name, g, w in zip(GMM_RESULTS, got, want):
        # atol covers gradients that are exactly 0 or 1e-18 (a weight of e^-40) in exact arithmetic.
        assert_close(name, g, torch.tensor(w, dtype=dtype), rtol=rtol, atol=1e-12)
