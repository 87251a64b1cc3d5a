"""The cpu and cuda backends of lstm_sweep_2d: the ops melnet_fast::lstm_sweep_2d_fwd / _bwd of melnet_fast._C.

On CPU tensors they run the fused C++ sweep (csrc/lstm_sweep_2d_cpu.cpp). On CUDA tensors they run the GPU host
(gpu_host: projections, step loop, gradient GEMMs), registered here as their CUDA kernels, over the step ops
melnet_fast::lstm_sweep_fwd_step / _bwd_step (csrc/cuda/lstm_sweep_2d.cu). Fake kernels and autograd:
registration.py.
"""

from __future__ import annotations

import torch

from melnet_fast import _extension
from melnet_fast.ops.lstm_sweep import gpu_host, registration

DIRECTION_CODES = {"t+": 0, "t-": 1, "f+": 2, "f-": 3}


class CudaSteps:
    """gpu_host.StepKernels of the cuda backend: one launch of the fused CUDA kernels per call."""

    @staticmethod
    def forward_step(step, pre, w_hh, h0, c0, y, c_run, gates, cell, codes, save):
        torch.ops.melnet_fast.lstm_sweep_fwd_step(pre, w_hh, h0, c0, y, c_run, gates, cell, list(codes), step, save)

    @staticmethod
    def backward_step(step, grad_y, w_hh, c0, gates, cell, dgates, dc_run, codes):
        torch.ops.melnet_fast.lstm_sweep_bwd_step(grad_y, w_hh, c0, gates, cell, dgates, dc_run, list(codes), step)


def _fwd_cuda(x, w_ih, w_hh, bias, h0, c0, directions, save):
    return gpu_host.forward(CudaSteps, x, w_ih, w_hh, bias, h0, c0, directions, save)


def _bwd_cuda(grad_y, x, w_ih, w_hh, h0, c0, y, gates, cell, directions, dh_last=None, dc_last=None):
    return gpu_host.backward(CudaSteps, grad_y, x, w_ih, w_hh, h0, c0, y, gates, cell, directions, dh_last, dc_last)


if _extension.has_cpu_kernels():
    registration.register("melnet_fast::lstm_sweep_2d_fwd", "melnet_fast::lstm_sweep_2d_bwd", autograd=False)
    if _extension.has_cuda_kernels():
        torch.library.impl("melnet_fast::lstm_sweep_2d_fwd", "CUDA")(_fwd_cuda)
        torch.library.impl("melnet_fast::lstm_sweep_2d_bwd", "CUDA")(_bwd_cuda)


def lstm_sweep_2d_cpp(x, w_ih, w_hh, bias, h0, c0, directions):
    """Run the extension's sweep on the tensors' device; saves what backward needs only when it will run."""
    codes = [DIRECTION_CODES[d] for d in directions]
    save = torch.is_grad_enabled() and any(t.requires_grad for t in (x, w_ih, w_hh, bias, h0, c0))
    y, _, _ = torch.ops.melnet_fast.lstm_sweep_2d_fwd(x, w_ih, w_hh, bias, h0, c0, codes, save)
    return y
