"""The triton backend of lstm_sweep_2d: the custom ops melnet_fast::lstm_sweep_2d_fwd_triton / _bwd_triton
(torch.library, so that autograd, torch.compile and opcheck see them like the C++ ops), which run the shared GPU host
(gpu_host: projections, step loop, gradient GEMMs) over the step kernels of melnet_fast.kernels.lstm_sweep_2d.
Fake kernels and the autograd formula: registration.py. Imports triton: import this module lazily.
"""

from __future__ import annotations

from typing import Sequence

import torch

from melnet_fast.kernels import lstm_sweep_2d as kernels
from melnet_fast.ops.lstm_sweep import gpu_host, registration
from melnet_fast.ops.lstm_sweep.cpp_backend import DIRECTION_CODES


class TritonSteps:
    """gpu_host.StepKernels of the triton backend: one launch of the fused Triton kernels per call."""

    forward_step = staticmethod(kernels.forward_step)
    backward_step = staticmethod(kernels.backward_step)


@torch.library.custom_op("melnet_fast::lstm_sweep_2d_fwd_triton", mutates_args=())
def lstm_sweep_2d_fwd_triton(x: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor, bias: torch.Tensor,
                             h0: torch.Tensor, c0: torch.Tensor, directions: Sequence[int],
                             save: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return gpu_host.forward(TritonSteps, x, w_ih, w_hh, bias, h0, c0, directions, save)


@torch.library.custom_op("melnet_fast::lstm_sweep_2d_bwd_triton", mutates_args=())
def lstm_sweep_2d_bwd_triton(grad_y: torch.Tensor, x: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor,
                             h0: torch.Tensor, c0: torch.Tensor, y: torch.Tensor, gates: torch.Tensor,
                             cell: torch.Tensor, directions: Sequence[int], dh_last: torch.Tensor | None = None,
                             dc_last: torch.Tensor | None = None
                             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
                                        torch.Tensor]:
    return gpu_host.backward(TritonSteps, grad_y, x, w_ih, w_hh, h0, c0, y, gates, cell, directions, dh_last,
                             dc_last)


registration.register("melnet_fast::lstm_sweep_2d_fwd_triton", "melnet_fast::lstm_sweep_2d_bwd_triton")


def lstm_sweep_2d_triton(x: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor, bias: torch.Tensor,
                         h0: torch.Tensor, c0: torch.Tensor, directions) -> torch.Tensor:
    """x [B, T, F, I], w_ih [R, 4H, I], w_hh [R, 4H, H], bias [R, 4H], h0 / c0 [R, H] (checked by
    melnet_fast.ops.lstm_sweep_2d; any strides) -> y [B, T, F, R*H]; see lstm_sweep_2d for the contract.

    Differentiable in all six tensors. Storage float32, bfloat16 or float16 on CUDA (or CPU tensors under
    TRITON_INTERPRET=1); cell state and accumulations float32. Saves the gates and cell states only when a gradient
    will be needed.
    """
    codes = [DIRECTION_CODES[d] for d in directions]
    save = torch.is_grad_enabled() and any(t.requires_grad for t in (x, w_ih, w_hh, bias, h0, c0))
    return torch.ops.melnet_fast.lstm_sweep_2d_fwd_triton(x, w_ih, w_hh, bias, h0, c0, codes, save)[0]
