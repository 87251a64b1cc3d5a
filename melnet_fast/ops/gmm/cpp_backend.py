"""The cpu and cuda backends of gmm_nll: the ops melnet_fast::gmm_nll_fwd / _bwd of melnet_fast._C (C++ kernels on
CPU tensors, CUDA kernels on CUDA tensors) and their fake kernels. Their autograd formula is a C++ autograd kernel
(csrc/op_autograd.cpp): the backward op recomputes the posteriors from the saved inputs in one fused pass."""

from __future__ import annotations

import torch

from melnet_fast import _extension


def _fwd_fake(x, mu, log_sigma, logit_pi):
    return torch.empty_like(x)


def _bwd_fake(grad, x, mu, log_sigma, logit_pi):
    return torch.empty_like(x), torch.empty_like(mu), torch.empty_like(log_sigma), torch.empty_like(logit_pi)


if _extension.has_cpu_kernels():
    torch.library.register_fake("melnet_fast::gmm_nll_fwd")(_fwd_fake)
    torch.library.register_fake("melnet_fast::gmm_nll_bwd")(_bwd_fake)


def gmm_nll_cpp(x, mu, log_sigma, logit_pi):
    return torch.ops.melnet_fast.gmm_nll_fwd(x, mu, log_sigma, logit_pi)
