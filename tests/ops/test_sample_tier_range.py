"""The value range of the tier samplers: whatever the weights and the temperature, every drawn value is finite
and in [x_min, x_max] (below -> x_min, above or NaN -> x_max), the next element reads the kept value, and the
reference and cpu samplers keep the same values."""

import math

import pytest
import torch

import melnet_fast
from melnet_fast.log_mel_scale import CEILING, FLOOR, SAMPLE_RANGE
from melnet_fast.ops import sample_tier
from melnet_fast.ops.gmm.reference import gmm_nll_ref, keep_in_range
from tests.ops.test_sample_tier import backends_here, make_case, tier_forward


def diverging_case(dtype=torch.float64, head_scale=30.0, seed=0):
    """A tier whose head is scaled up: each drawn value feeds the next channel's input, so draws run away (to
    +-inf and NaN within a few channels without a range)."""
    x0, cz_t, cz_f, u, eps, w = make_case(2, 4, 9, 6, 2, 3, dtype=dtype, seed=seed)
    w[-2] = w[-2] * head_scale
    w[-1] = w[-1] * head_scale
    return x0, cz_t, cz_f, u, eps, w


def test_keep_in_range_rule():
    v = torch.tensor([-math.inf, -5.0, FLOOR, 0.3, CEILING, 7.0, math.inf, math.nan], dtype=torch.float64)
    got = keep_in_range(v, *SAMPLE_RANGE)
    want = torch.tensor([FLOOR, FLOOR, FLOOR, 0.3, CEILING, CEILING, CEILING, CEILING], dtype=torch.float64)
    assert torch.equal(got, want)


@pytest.mark.parametrize("temperature", [0.0, 1.0, 4.0])
@pytest.mark.parametrize("backend", backends_here())
def test_diverging_tier_gives_finite_samples_in_range(backend, temperature):
    x0, cz_t, cz_f, u, eps, w = diverging_case()
    with melnet_fast.use_backend(backend):
        x, _ = sample_tier(x0, cz_t, cz_f, u, eps, w, 2, 3, temperature)
    assert torch.isfinite(x).all()
    assert x.min() >= FLOOR and x.max() <= CEILING
    # The case does run away: without a range (a very wide one) its draws leave every plausible value.
    with melnet_fast.use_backend("reference"):
        wide, _ = sample_tier(x0, cz_t, cz_f, u, eps, w, 2, 3, temperature, value_range=(-1e30, 1e30))
    assert not ((wide >= FLOOR) & (wide <= CEILING)).all()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_cpu_keeps_the_same_values_as_the_reference(temperature, dtype):
    x0, cz_t, cz_f, u, eps, w = diverging_case(dtype, head_scale=4.0, seed=1)
    out = {}
    for backend in ("reference", "cpu"):
        with melnet_fast.use_backend(backend):
            out[backend] = sample_tier(x0, cz_t, cz_f, u, eps, w, 2, 3, temperature, value_range=(-0.5, 0.8))
    x, log_density = out["cpu"]
    assert ((x == -0.5) | (x == 0.8)).any() and ((x > -0.5) & (x < 0.8)).any()  # both kinds of draws happen
    tol = 1e-10 if dtype == torch.float64 else 1e-4
    torch.testing.assert_close(x, out["reference"][0], rtol=tol, atol=tol)
    torch.testing.assert_close(log_density, out["reference"][1], rtol=tol, atol=tol)
    # The log density is that of the kept values, which the next elements were conditioned on.
    mu, ls, lp = tier_forward(x.double(), cz_t.double(), cz_f.double(), [t.double() for t in w], 2, 3)
    expected = -gmm_nll_ref(x.double(), mu, ls, lp).sum(dim=(1, 2))
    torch.testing.assert_close(log_density.double(), expected, rtol=tol, atol=tol * 100)


@pytest.mark.parametrize("backend", backends_here())
def test_nan_weights_give_the_top_of_the_range(backend):
    """NaN has no side: a model whose parameters are NaN draws x_max everywhere, finite and easy to spot."""
    x0, cz_t, cz_f, u, eps, w = make_case(2, 3, 4, 5, 1, 2, seed=2)
    w[-1] = torch.full_like(w[-1], math.nan)
    with melnet_fast.use_backend(backend):
        x, _ = sample_tier(x0, cz_t, cz_f, u, eps, w, 1, 2, 1.0, n_prime=1)
    assert torch.equal(x[:, :1], x0[:, :1])
    assert (x[:, 1:] == CEILING).all()


def test_bad_value_range_names_the_argument():
    x0, cz_t, cz_f, u, eps, w = make_case(1, 2, 3, 4, 1, 2)
    for bad in [(1.0, 1.0), (2.0, -1.0), (-math.inf, 1.0), (0.0, math.nan), (0.0,), "ab", (True, 2.0), None]:
        with pytest.raises(ValueError, match="value_range"):
            sample_tier(x0, cz_t, cz_f, u, eps, w, 1, 2, value_range=bad)
