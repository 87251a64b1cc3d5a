"""Reference Gaussian-mixture NLL and sampling in plain PyTorch. The oracle of the tests."""

from __future__ import annotations

import torch

LOG_SQRT_2PI = 0.91893853320467274178  # log sqrt(2 pi), math::kLogSqrt2Pi of csrc/scalar_math.h


def component_log_density(x, mu, log_sigma, logit_pi):
    """log pi_k + log N(x; mu_k, sigma_k), shape [..., K]. z is formed with exp(-log_sigma) so that very small
    sigma and far outliers stay finite."""
    z = (x.unsqueeze(-1) - mu) * torch.exp(-log_sigma)
    log_pi = torch.log_softmax(logit_pi, dim=-1)
    return log_pi - 0.5 * z * z - log_sigma - LOG_SQRT_2PI


def gmm_nll_ref(x, mu, log_sigma, logit_pi):
    """x [...], others [..., K] -> [...]: -log sum_k pi_k N(x; mu_k, sigma_k)."""
    return -torch.logsumexp(component_log_density(x, mu, log_sigma, logit_pi), dim=-1)


def draw_noise(shape, device, dtype, generator=None):
    """The two random inputs of one draw per element: u ~ U[0, 1) picks the component, eps ~ N(0, 1)."""
    u = torch.rand(shape, device=device, dtype=dtype, generator=generator)
    eps = torch.randn(shape, device=device, dtype=dtype, generator=generator)
    return u, eps


def gmm_sample_from_noise(mu, log_sigma, logit_pi, temperature: float, u, eps):
    """Deterministic part of a draw, shared by every sampler so that equal noise gives equal samples.

    Component: the first k with cumsum(softmax(logit_pi / tau))_k > u (inverse CDF); value mu_k + tau sigma_k eps.
    tau = 0: the mean of the most probable component (first argmax).
    """
    if temperature == 0:
        k = logit_pi.argmax(dim=-1, keepdim=True)
        return mu.gather(-1, k).squeeze(-1)
    probs = torch.softmax(logit_pi / temperature, dim=-1)
    cdf = probs.cumsum(dim=-1)
    K = mu.shape[-1]
    k = (cdf <= u.unsqueeze(-1)).sum(dim=-1, keepdim=True).clamp_(max=K - 1)
    m = mu.gather(-1, k).squeeze(-1)
    s = log_sigma.gather(-1, k).squeeze(-1).exp()
    return m + temperature * s * eps


def keep_in_range(value, x_min: float, x_max: float):
    """The range rule of every tier sampler: a drawn value below x_min becomes x_min, one above x_max (or NaN,
    which has no side) x_max, so that a diverging model still gives finite samples and its runaways show at x_max."""
    return torch.nan_to_num(value, nan=x_max).clamp(x_min, x_max)


def gmm_sample_ref(mu, log_sigma, logit_pi, temperature: float = 1.0, generator=None):
    """[..., K] -> [...]: one draw per element."""
    u, eps = draw_noise(mu.shape[:-1], mu.device, mu.dtype, generator)
    return gmm_sample_from_noise(mu, log_sigma, logit_pi, temperature, u, eps)
