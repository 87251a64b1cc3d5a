"""The cpu and cuda backends of sample_tier: the op melnet_fast::sample_tier of melnet_fast._C (the C++ sampler on
CPU tensors, the persistent CUDA kernel on CUDA tensors) and its fake kernel; no autograd: sampling is not
differentiated."""

from __future__ import annotations

import torch

from melnet_fast import _extension


def _fake(x, cz_t, cz_f, u, eps, weights, n_layers, n_mixtures, temperature, n_prime, x_min, x_max):
    return torch.empty_like(x), x.new_empty(x.shape[0])


if _extension.has_cpu_kernels():
    torch.library.register_fake("melnet_fast::sample_tier")(_fake)


def sample_tier_cpp(x_init, cz_t, cz_f, u, eps, weights, n_layers, n_mixtures, temperature, n_prime, x_min, x_max):
    return torch.ops.melnet_fast.sample_tier(x_init, cz_t, cz_f, u, eps, list(weights), n_layers, n_mixtures,
                                             float(temperature), n_prime, float(x_min), float(x_max))
