"""gmm_sample: draw statistics against the mixture's moments, temperature, tau = 0, reproducibility."""

import math

import pytest
import torch

from melnet_fast.ops import gmm_sample

N_DRAWS = 200_000
# Bounds of 5 standard errors: a correct sampler fails one check in ~1.7 million (and the seeds are fixed).
Z = 5.0

# A well separated three-component mixture: the component of every draw can be read off its value.
MU = torch.tensor([-10.0, 0.5, 12.0], dtype=torch.float64)
LOG_SIGMA = torch.tensor([0.3, -0.7, 0.0], dtype=torch.float64)
LOGIT_PI = torch.tensor([0.2, 1.1, -0.4], dtype=torch.float64)


def tempered(tau):
    """Weights and sigmas of the mixture a draw at temperature tau comes from: softmax(logits / tau), sigma tau."""
    return torch.softmax(LOGIT_PI / tau, dim=0), LOG_SIGMA.exp() * tau


def mixture_moments(pi, sigma):
    """Mean, variance and fourth central moment of sum_k pi_k N(MU_k, sigma_k^2)."""
    mean = (pi * MU).sum()
    d = MU - mean
    var = (pi * (sigma**2 + d**2)).sum()
    m4 = (pi * (d**4 + 6 * d**2 * sigma**2 + 3 * sigma**4)).sum()
    return mean.item(), var.item(), m4.item()


def draw(tau, dtype=torch.float64, seed=0):
    params = [p.to(dtype).expand(N_DRAWS, 3) for p in (MU, LOG_SIGMA, LOGIT_PI)]
    return gmm_sample(*params, temperature=tau, generator=torch.Generator().manual_seed(seed)).double()


@pytest.mark.parametrize("tau", [1.0, 0.5], ids=lambda t: f"tau{t}")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_moments_match_the_tempered_mixture(tau, dtype):
    pi, sigma = tempered(tau)
    mean, var, m4 = mixture_moments(pi, sigma)
    s = draw(tau, dtype)
    assert s.shape == (N_DRAWS,) and torch.isfinite(s).all()
    se_mean = math.sqrt(var / N_DRAWS)
    se_var = math.sqrt((m4 - var**2) / N_DRAWS)
    assert abs(s.mean().item() - mean) < Z * se_mean, f"mean {s.mean().item():.4f}, want {mean:.4f} +- {se_mean:.4f}"
    assert abs(s.var().item() - var) < Z * se_var, f"variance {s.var().item():.4f}, want {var:.4f} +- {se_var:.4f}"


@pytest.mark.parametrize("tau", [1.0, 0.5], ids=lambda t: f"tau{t}")
def test_component_frequencies_and_spreads(tau):
    pi, sigma = tempered(tau)
    s = draw(tau, seed=1)
    component = torch.bucketize(s, torch.tensor([-5.0, 6.0], dtype=torch.float64))  # midpoints between means
    for k in range(3):
        mine = s[component == k]
        p = pi[k].item()
        se = math.sqrt(p * (1 - p) / N_DRAWS)
        assert abs(mine.numel() / N_DRAWS - p) < Z * se, f"component {k}: frequency {mine.numel() / N_DRAWS:.4f}, " \
                                                          f"want {p:.4f}"
        # Within a component: mean MU_k and standard deviation sigma_k tau (normal: se of std = std / sqrt(2n)).
        n, sd = mine.numel(), sigma[k].item()
        assert abs(mine.mean().item() - MU[k].item()) < Z * sd / math.sqrt(n), f"component {k} mean"
        assert abs(mine.std().item() - sd) < Z * sd / math.sqrt(2 * n), f"component {k} std {mine.std().item()}"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_zero_temperature_returns_mean_of_most_probable_component(dtype):
    g = torch.Generator().manual_seed(3)
    mu = torch.randn(5, 7, 4, generator=g, dtype=dtype)
    log_sigma = torch.randn(5, 7, 4, generator=g, dtype=dtype)
    logit_pi = torch.randn(5, 7, 4, generator=g, dtype=dtype) * 3
    got = gmm_sample(mu, log_sigma, logit_pi, temperature=0.0, generator=torch.Generator().manual_seed(0))
    want = torch.empty(5, 7, dtype=dtype)
    for i in range(5):
        for j in range(7):
            want[i, j] = mu[i, j, max(range(4), key=lambda k: logit_pi[i, j, k].item())]
    assert torch.equal(got, want)


def test_same_generator_seed_gives_same_draws():
    g = torch.Generator().manual_seed(11)
    params = [torch.randn(64, 5, generator=g, dtype=torch.float32) for _ in range(3)]
    a = gmm_sample(*params, temperature=0.8, generator=torch.Generator().manual_seed(5))
    b = gmm_sample(*params, temperature=0.8, generator=torch.Generator().manual_seed(5))
    c = gmm_sample(*params, temperature=0.8, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
