"""Gaussian-mixture negative log-likelihood and sampling (the MelNet head's distribution)."""

from __future__ import annotations

import torch

from melnet_fast import backends
from melnet_fast.ops import dispatch
from melnet_fast.ops._checks import check_finite, check_same, check_tensor
from melnet_fast.ops.gmm import cpp_backend  # noqa: F401  (registers the C++ ops' fake kernels and autograd)
from melnet_fast.ops.gmm.reference import draw_noise, gmm_nll_ref, gmm_sample_from_noise, gmm_sample_ref

# The backends of gmm_nll, fastest first (the order "auto" tries; melnet_fast.tune() may prefer triton to cuda per
# shape). cpu and cuda are one function: the extension's op runs the kernel of the tensors' device.
OP = dispatch.register("gmm_nll", "x", [
    ("cuda", ["cuda"], "melnet_fast.ops.gmm.cpp_backend:gmm_nll_cpp"),
    ("triton", ["cuda", "cpu"], "melnet_fast.ops.gmm.triton_backend:gmm_nll_triton"),
    ("cpu", ["cpu"], "melnet_fast.ops.gmm.cpp_backend:gmm_nll_cpp"),
    ("reference", ["cpu", "cuda"], "melnet_fast.ops.gmm.reference:gmm_nll_ref"),
])
# Most mixture components the cuda kernel takes (one row of its shared-memory tile, csrc/cuda/gmm_nll.cu).
CUDA_MAX_K = 3071


def _check_params(mu, log_sigma, logit_pi, lead=None):
    check_tensor("mu", mu, layout=" [..., K]")
    if mu.dim() < 1 or mu.shape[-1] < 1:
        raise ValueError(f"mu must have shape [..., K] with K >= 1, got {tuple(mu.shape)}")
    if lead is not None and tuple(mu.shape[:-1]) != tuple(lead):
        raise ValueError(f"mu must have shape [..., K] with leading dimensions {tuple(lead)} (the shape of x), "
                         f"got {tuple(mu.shape)}")
    check_tensor("log_sigma", log_sigma, mu.dim(), tuple(mu.shape), layout=" [..., K] like mu")
    check_tensor("logit_pi", logit_pi, mu.dim(), tuple(mu.shape), layout=" [..., K] like mu")
    check_finite("log_sigma", log_sigma)


def gmm_nll(x: torch.Tensor, mu: torch.Tensor, log_sigma: torch.Tensor, logit_pi: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood of x under a K-component Gaussian mixture, element by element.

    Args:
        x: [...] values.
        mu, log_sigma, logit_pi: [..., K] means, log standard deviations and unnormalised log weights.
    Returns:
        [...] -log sum_k softmax(logit_pi)_k N(x; mu_k, exp(log_sigma_k)). Differentiable in all four.

    Dtypes: float32 and float64 on the CPU; float32, bfloat16 and float16 with the cuda and triton backends,
    which compute in float32 whatever the storage dtype (float64 CUDA tensors go to the reference).
    log_sigma must be finite: a ValueError at once on CPU tensors; on a GPU the check costs no host sync and is
    read by melnet_fast.ops.raise_deferred_errors() (see melnet_fast.ops._checks.check_finite).
    """
    check_tensor("x", x, layout=" [...]")
    _check_params(mu, log_sigma, logit_pi, lead=x.shape)
    check_same({"x": x, "mu": mu, "log_sigma": log_sigma, "logit_pi": logit_pi})
    if x.numel() == 0:
        return x.new_zeros(x.shape)
    K = mu.shape[-1]
    exclude = ()
    if K > CUDA_MAX_K:
        if backends.get_backend() == "cuda" and x.is_cuda:
            raise ValueError(f"mu: the cuda backend takes at most {CUDA_MAX_K} mixture components, got K={K}")
        exclude = ("cuda",)
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (x, mu, log_sigma, logit_pi))
    return OP(x, x, mu, log_sigma, logit_pi, shape_key=(tuple(x.shape), K, needs_grad), exclude=exclude)


def gmm_sample(mu: torch.Tensor, log_sigma: torch.Tensor, logit_pi: torch.Tensor, temperature: float = 1.0,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """One draw per element from the mixtures [..., K] -> [...].

    temperature tau in [0, 1] (or above): logits / tau and sigma * tau; tau = 0 returns the mean of the most
    probable component. Not differentiable. The draw is one inverse-CDF pick of a component from u ~ U[0, 1)
    and mu_k + tau sigma_k eps with eps ~ N(0, 1), both from `generator`: every backend and sampler shares
    this rule (gmm_sample_from_noise), so equal noise gives equal samples.
    """
    _check_params(mu, log_sigma, logit_pi)
    check_same({"mu": mu, "log_sigma": log_sigma, "logit_pi": logit_pi})
    if not isinstance(temperature, (int, float)) or not temperature >= 0:  # NaN fails >= too
        raise ValueError(f"temperature must be a number >= 0, got {temperature!r}")
    with torch.no_grad():
        return gmm_sample_ref(mu, log_sigma, logit_pi, float(temperature), generator)


__all__ = ["gmm_nll", "gmm_sample", "gmm_nll_ref", "gmm_sample_ref", "gmm_sample_from_noise", "draw_noise"]
