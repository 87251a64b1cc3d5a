"""Triton kernels that apply the functions of melnet_fast.kernels.scalar_math (the Triton twin of
csrc/scalar_math.h) to a tensor, for test_scalar_math.py and tests/gpu/test_scalar_math_gpu.py. Imports triton:
import it lazily, after tests/conftest.py has set TRITON_INTERPRET where there is no GPU."""

import torch
import triton
import triton.language as tl

from melnet_fast.kernels import scalar_math as sm

FORMS = ("exp", "sigmoid", "tanh", "log")


@triton.jit
def _apply(x_ptr, y_ptr, n, FORM: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    v = tl.load(x_ptr + offs, mask=mask, other=1.0)
    if FORM == 0:
        y = sm.exp(v)
    elif FORM == 1:
        y = sm.sigmoid(v)
    elif FORM == 2:
        y = sm.tanh(v)
    else:
        y = sm.log(v)
    tl.store(y_ptr + offs, y, mask=mask)


@triton.jit
def _log_sum_exp(x_ptr, y_ptr, N: tl.constexpr):
    r = tl.program_id(0)
    v = tl.load(x_ptr + r * N + tl.arange(0, N)[None, :])
    tl.store(y_ptr + r + tl.arange(0, 1), sm.log_sum_exp(v, axis=1))


def apply(form: str, x: torch.Tensor) -> torch.Tensor:
    """The twin's `form` (one of FORMS) of every element of the float32 tensor x."""
    y = torch.empty_like(x)
    _apply[(triton.cdiv(x.numel(), 4096),)](x, y, x.numel(), FORM=FORMS.index(form), BLOCK=4096)
    return y


def log_sum_exp(rows: torch.Tensor) -> torch.Tensor:
    """The twin's log_sum_exp of every row of the float32 [n, N] tensor rows (N a power of two)."""
    out = torch.empty(rows.shape[0], dtype=rows.dtype, device=rows.device)
    _log_sum_exp[(rows.shape[0],)](rows.contiguous(), out, N=rows.shape[1])
    return out
