"""The cpu and cuda backends of sample_tier: the op melnet_fast::sample_tier of melnet_fast._C (the C++ sampler on
CPU tensors, the persistent CUDA kernel on CUDA tensors), the cpu backend of sample_tier_centralized (the C++
sampler with the per-frame step of a centralized stack and text attention), the "flags" variant of the cuda backend
(melnet_fast::sample_tier_flags, the second CUDA design) and their fake kernels; no autograd: sampling is not
differentiated."""

from __future__ import annotations

import torch

from melnet_fast import _extension
from melnet_fast.log_mel_scale import SAMPLE_RANGE
from melnet_fast.ops.tier_sampling.layout import fold_projections


def _fake(x, cz_t, cz_f, u, eps, weights, n_layers, n_mixtures, temperature, n_prime, x_min, x_max):
    return torch.empty_like(x), x.new_empty(x.shape[0])


def _fake_centralized(x, cz_t, cz_f, u, eps, weights, n_layers, n_mixtures, temperature, n_prime, x_min, x_max,
                      centralized_weights, attention_layer, memory, text_lengths, stop_threshold):
    U = 0 if memory is None else memory.shape[1]
    return (torch.empty_like(x), x.new_empty(x.shape[0]), x.new_empty(*x.shape[:2], U),
            x.new_empty(x.shape[0], dtype=torch.long))


if _extension.has_cpu_kernels():
    torch.library.register_fake("melnet_fast::sample_tier")(_fake)
    torch.library.register_fake("melnet_fast::sample_tier_flags")(_fake)
    torch.library.register_fake("melnet_fast::sample_tier_centralized")(_fake_centralized)


def sample_tier_cpp(x_init, cz_t, cz_f, u, eps, weights, n_layers, n_mixtures, temperature, n_prime, x_min, x_max):
    return torch.ops.melnet_fast.sample_tier(x_init, cz_t, cz_f, u, eps, list(weights), n_layers, n_mixtures,
                                             float(temperature), n_prime, float(x_min), float(x_max))


def sample_tier_cuda_flags(x_init, cz_t, cz_f, u, eps, weights, n_layers, n_mixtures, temperature, n_prime, x_min,
                           x_max):
    """The second CUDA sampler design (csrc/cuda/sample_tier_flags_kernel.cuh) on the folded list: the weights with
    their projections folded into the next matrices (layout.fold_projections, computed here on every call: L small
    products on the device)."""
    folded = list(weights) + fold_projections(weights, n_layers, n_mixtures)
    return torch.ops.melnet_fast.sample_tier_flags(x_init, cz_t, cz_f, u, eps, folded, n_layers, n_mixtures,
                                                   float(temperature), n_prime, float(x_min), float(x_max))


def sample_tier_centralized_cpp(x_init, cz_t, cz_f, u, eps, weights, n_layers, n_mixtures, temperature, n_prime,
                                centralized_weights, attention_layer, memory=None, text_lengths=None,
                                stop_threshold=None, x_min=SAMPLE_RANGE[0], x_max=SAMPLE_RANGE[1]):
    """The C++ CPU sampler with the per-frame step, in the reference's argument order. -> (x, log_density,
    alignment [B, T, U] or None without text, lengths [B]), as the reference sampler."""
    x, log_density, alignment, lengths = torch.ops.melnet_fast.sample_tier_centralized(
        x_init, cz_t, cz_f, u, eps, list(weights), n_layers, n_mixtures, float(temperature), n_prime, float(x_min),
        float(x_max), list(centralized_weights), attention_layer, memory, text_lengths,
        None if stop_threshold is None else float(stop_threshold))
    return x, log_density, alignment if memory is not None else None, lengths
