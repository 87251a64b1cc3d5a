"""The triton backend of gmm_nll: custom ops over the kernels of melnet_fast.kernels.gmm_nll (torch.library, so that
autograd, torch.compile and opcheck see them like the C++ ops).

Two backward strategies, chosen by the environment variable MELNET_FAST_GMM_BWD (read at each call):
  fused      (default) the forward also writes the local gradients d nll / d(x, mu, log_sigma, logit_pi) in
             the same pass over the inputs (melnet_fast::gmm_nll_fwd_local_triton); backward only scales them by
             the upstream gradient (gmm_nll_scale_triton). Keeps the local gradients (as much memory as the inputs)
             instead of the inputs.
  recompute  the forward writes nll only and keeps the inputs (gmm_nll_fwd_triton); backward reads them and the
             upstream gradient once and recomputes the mixture (gmm_nll_bwd_triton): less memory traffic.
Without gradients only the forward kernel runs. Imports triton: import this module lazily.
"""

from __future__ import annotations

import os

import torch

from melnet_fast.kernels import gmm_nll as kernels

BWD_MODES = ("fused", "recompute")
BWD_ENV = "MELNET_FAST_GMM_BWD"

Tensor = torch.Tensor


def bwd_mode() -> str:
    """The backward strategy in force: MELNET_FAST_GMM_BWD, "fused" when unset."""
    mode = os.environ.get(BWD_ENV, "fused")
    if mode not in BWD_MODES:
        raise ValueError(f"{BWD_ENV} must be one of {', '.join(BWD_MODES)}, got {mode!r}")
    return mode


@torch.library.custom_op("melnet_fast::gmm_nll_fwd_triton", mutates_args=())
def gmm_nll_fwd_triton(x: Tensor, mu: Tensor, log_sigma: Tensor, logit_pi: Tensor) -> Tensor:
    return kernels.gmm_nll_fwd(x, mu, log_sigma, logit_pi)


@torch.library.custom_op("melnet_fast::gmm_nll_bwd_triton", mutates_args=())
def gmm_nll_bwd_triton(grad: Tensor, x: Tensor, mu: Tensor, log_sigma: Tensor,
                       logit_pi: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    return kernels.gmm_nll_bwd(grad, x, mu, log_sigma, logit_pi)


@torch.library.custom_op("melnet_fast::gmm_nll_fwd_local_triton", mutates_args=())
def gmm_nll_fwd_local_triton(x: Tensor, mu: Tensor, log_sigma: Tensor,
                             logit_pi: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    return kernels.gmm_nll_fwd_local(x, mu, log_sigma, logit_pi)


@torch.library.custom_op("melnet_fast::gmm_nll_scale_triton", mutates_args=())
def gmm_nll_scale_triton(grad: Tensor, lx: Tensor, lmu: Tensor, lls: Tensor, llp: Tensor,
                         dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    return kernels.gmm_nll_scale(grad, lx, lmu, lls, llp, dtype)


# ---- fake kernels: the shapes and dtypes the kernels' launchers allocate


@gmm_nll_fwd_triton.register_fake
def _(x, mu, log_sigma, logit_pi):
    return x.new_empty(x.shape)


@gmm_nll_bwd_triton.register_fake
def _(grad, x, mu, log_sigma, logit_pi):
    return x.new_empty(x.shape), x.new_empty(mu.shape), x.new_empty(mu.shape), x.new_empty(mu.shape)


@gmm_nll_fwd_local_triton.register_fake
def _(x, mu, log_sigma, logit_pi):
    ldt = kernels.local_grad_dtype(x.dtype)
    return (x.new_empty(x.shape), x.new_empty(x.shape, dtype=ldt),
            *(x.new_empty(mu.shape, dtype=ldt) for _ in range(3)))


@gmm_nll_scale_triton.register_fake
def _(grad, lx, lmu, lls, llp, dtype):
    return lx.new_empty(lx.shape, dtype=dtype), *(lx.new_empty(lmu.shape, dtype=dtype) for _ in range(3))


# ---- autograd


def _setup_recompute(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _backward_recompute(ctx, grad):
    return gmm_nll_bwd_triton(grad, *ctx.saved_tensors)


def _setup_fused(ctx, inputs, output):
    _, *local = output
    ctx.dtype = inputs[0].dtype
    ctx.set_materialize_grads(False)  # the local gradients are outputs only to be saved, never differentiated
    ctx.save_for_backward(*local)


def _backward_fused(ctx, grad, *_local_grads):
    return gmm_nll_scale_triton(grad, *ctx.saved_tensors, ctx.dtype)


gmm_nll_fwd_triton.register_autograd(_backward_recompute, setup_context=_setup_recompute)
gmm_nll_fwd_local_triton.register_autograd(_backward_fused, setup_context=_setup_fused)


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
    if mode == "fused" and torch.is_grad_enabled() and any(t.requires_grad for t in inputs):
        return gmm_nll_fwd_local_triton(*inputs)[0]
    return gmm_nll_fwd_triton(*inputs)
