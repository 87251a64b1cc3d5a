"""The triton backend of gmm_nll: an autograd.Function over the kernels of melnet_fast.kernels.gmm_nll.

Two backward strategies, chosen by the environment variable MELNET_FAST_GMM_BWD (read at each call):
  fused      (default) the forward also writes the local gradients d nll / d(x, mu, log_sigma, logit_pi) in
             the same pass over the inputs; backward only scales them by the upstream gradient. Keeps the local
             gradients (as much memory as the inputs) instead of the inputs.
  recompute  the forward writes nll only and keeps the inputs; backward reads them and the upstream gradient
             once and recomputes the mixture (less memory traffic: no local gradients are written and re-read).
Without gradients only the forward kernel runs. Imports triton: import this module lazily.
"""

from __future__ import annotations

import os

import torch
from torch.autograd.function import once_differentiable

from melnet_fast.kernels import gmm_nll as kernels

BWD_MODES = ("fused", "recompute")
BWD_ENV = "MELNET_FAST_GMM_BWD"


def bwd_mode() -> str:
    """The backward strategy in force: MELNET_FAST_GMM_BWD, "fused" when unset."""
    mode = os.environ.get(BWD_ENV, "fused")
    if mode not in BWD_MODES:
        raise ValueError(f"{BWD_ENV} must be one of {', '.join(BWD_MODES)}, got {mode!r}")
    return mode


class _FusedGmmNll(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, mu, log_sigma, logit_pi):
        nll, *local = kernels.gmm_nll_fwd_local(x, mu, log_sigma, logit_pi)
        ctx.save_for_backward(*local)
        ctx.dtype = x.dtype
        return nll

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        return kernels.gmm_nll_scale(grad, *ctx.saved_tensors, ctx.dtype)


class _RecomputeGmmNll(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, mu, log_sigma, logit_pi):
        ctx.save_for_backward(x, mu, log_sigma, logit_pi)
        return kernels.gmm_nll_fwd(x, mu, log_sigma, logit_pi)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        return kernels.gmm_nll_bwd(grad, *ctx.saved_tensors)


def gmm_nll_triton(x: torch.Tensor, mu: torch.Tensor, log_sigma: torch.Tensor, logit_pi: torch.Tensor,
                   bwd: str | None = None) -> torch.Tensor:
    """x [...], mu / log_sigma / logit_pi [..., K] (checked by melnet_fast.ops.gmm_nll) -> nll [...].

    Differentiable in all four. bwd: "fused" or "recompute" (None: bwd_mode()). Storage float32, bfloat16 or
    float16 on CUDA (or CPU tensors under TRITON_INTERPRET=1); float32 math.
    """
    mode = bwd_mode() if bwd is None else bwd
    if mode not in BWD_MODES:
        raise ValueError(f"bwd must be one of {', '.join(BWD_MODES)}, got {mode!r}")
    inputs = (x, mu, log_sigma, logit_pi)
    if not (torch.is_grad_enabled() and any(t.requires_grad for t in inputs)):
        return kernels.gmm_nll_fwd(*inputs)
    if mode == "fused":
        return _FusedGmmNll.apply(*inputs)
    return _RecomputeGmmNll.apply(*inputs)
