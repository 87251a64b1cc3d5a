"""The cuda_gemm backend of lstm_sweep_2d, the second design of its cuda backend: the custom ops
melnet_fast::lstm_sweep_2d_fwd_gemm / _bwd_gemm, which run the shared GPU host (gpu_host) over the steps of
gemm_steps (recurrent products as cuBLAS GEMMs, then the epilogue ops melnet_fast::lstm_sweep_fwd_epilogue /
_bwd_epilogue of csrc/cuda/lstm_sweep_2d.cu; the narrow phase's persistent kernels lstm_sweep_fwd_narrow /
_bwd_narrow). Fake kernels and the autograd formula: registration.py.

"auto" runs it only where melnet_fast.tune() measured it faster than the first design at that shape (ops/dispatch.py,
ops/autotune.py); use_backend("cuda_gemm") forces it.
"""

from __future__ import annotations

import functools
from typing import Sequence

import torch

from melnet_fast.ops.lstm_sweep import gpu_host, registration
from melnet_fast.ops.lstm_sweep.cpp_backend import DIRECTION_CODES
from melnet_fast.ops.lstm_sweep.gemm_steps import GemmSteps


class CudaEpilogue:
    """gemm_steps.Epilogue: one launch of the epilogue kernel per call."""

    @staticmethod
    def forward(rec, pre, c0, y, c_run, gates, cell, codes, step, save):
        torch.ops.melnet_fast.lstm_sweep_fwd_epilogue(rec, pre, c0, y, c_run, gates, cell, list(codes), step, save)

    @staticmethod
    def backward(rec, grad_y, c0, gates, cell, dgates, dc_run, codes, step):
        torch.ops.melnet_fast.lstm_sweep_bwd_epilogue(rec, grad_y, c0, gates, cell, dgates, dc_run, list(codes), step)


class CudaNarrow:
    """gemm_steps.Narrow: the persistent kernels of the narrow phase, one cooperative launch per call."""

    @staticmethod
    @functools.lru_cache(maxsize=64)
    def _capacity(dtype: torch.dtype, H: int, device: int) -> tuple[int, int, int]:
        return tuple(torch.ops.melnet_fast.lstm_sweep_narrow_capacity(dtype, H))

    @classmethod
    def capacity(cls, dtype, H):
        return cls._capacity(dtype, H, torch.cuda.current_device())

    @staticmethod
    def forward(pre, w_hh, y, c_run, gates, cell, arrivals, codes, s_begin, s_end, save):
        torch.ops.melnet_fast.lstm_sweep_fwd_narrow(pre, w_hh, y, c_run, gates, cell, arrivals, list(codes), s_begin,
                                                    s_end, save)

    @staticmethod
    def backward(grad_y, w_hh, gates, cell, dgates, dc_run, arrivals, codes, s_begin, s_end):
        torch.ops.melnet_fast.lstm_sweep_bwd_narrow(grad_y, w_hh, gates, cell, dgates, dc_run, arrivals, list(codes),
                                                    s_begin, s_end)


STEPS = GemmSteps(CudaEpilogue, CudaNarrow)


@torch.library.custom_op("melnet_fast::lstm_sweep_2d_fwd_gemm", mutates_args=(), device_types="cuda")
def lstm_sweep_2d_fwd_gemm(x: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor, bias: torch.Tensor,
                           h0: torch.Tensor, c0: torch.Tensor, directions: Sequence[int],
                           save: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return gpu_host.forward(STEPS, x, w_ih, w_hh, bias, h0, c0, directions, save)


@torch.library.custom_op("melnet_fast::lstm_sweep_2d_bwd_gemm", mutates_args=(), device_types="cuda")
def lstm_sweep_2d_bwd_gemm(grad_y: torch.Tensor, x: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor,
                           h0: torch.Tensor, c0: torch.Tensor, y: torch.Tensor, gates: torch.Tensor,
                           cell: torch.Tensor, directions: Sequence[int], dh_last: torch.Tensor | None = None,
                           dc_last: torch.Tensor | None = None
                           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
                                      torch.Tensor]:
    return gpu_host.backward(STEPS, grad_y, x, w_ih, w_hh, h0, c0, y, gates, cell, directions, dh_last, dc_last)


registration.register("melnet_fast::lstm_sweep_2d_fwd_gemm", "melnet_fast::lstm_sweep_2d_bwd_gemm")


def lstm_sweep_2d_gemm(x: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor, bias: torch.Tensor,
                       h0: torch.Tensor, c0: torch.Tensor, directions) -> torch.Tensor:
    """x [B, T, F, I], w_ih [R, 4H, I], w_hh [R, 4H, H], bias [R, 4H], h0 / c0 [R, H] (checked by
    melnet_fast.ops.lstm_sweep_2d; any strides) -> y [B, T, F, R*H]; see lstm_sweep_2d for the contract.
    CUDA tensors, storage float32, bfloat16 or float16; cell state and accumulations float32. Saves the gates and
    cell states only when a gradient will be needed."""
    codes = [DIRECTION_CODES[d] for d in directions]
    save = torch.is_grad_enabled() and any(t.requires_grad for t in (x, w_ih, w_hh, bias, h0, c0))
    return torch.ops.melnet_fast.lstm_sweep_2d_fwd_gemm(x, w_ih, w_hh, bias, h0, c0, codes, save)[0]
