"""The triton backend of lstm_sweep_2d: an autograd.Function around the step kernels of
melnet_fast.kernels.lstm_sweep_2d plus the large matrix products of the shared GPU algorithm (torch / cuBLAS).

Forward: pre = x @ w_ih^T + bias for all directions in one GEMM, then max(T, F) fused step launches. Backward:
max(T, F) fused step launches giving dgates (the gradient of pre), then GEMMs for dx, dw_ih, dw_hh and sums for
dbias, dh0, dc0, every one accumulated in float32. Saves the gates and cell states only when a gradient will be
needed. Imports triton: import this module lazily.
"""

from __future__ import annotations

import functools

import torch
from torch.autograd.function import once_differentiable

from melnet_fast.kernels import lstm_sweep_2d as kernels
from melnet_fast.ops.lstm_sweep.compiled import DIRECTION_CODES

# Tests set this to fill every buffer the kernels must write completely with NaN first (see tests/conftest.py's
# poisoning of the C++ kernels' outputs).
POISON_OUTPUTS = False


def _mm_f32(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b accumulated and returned in float32 (exact fp32 for float32 inputs unless the caller enabled TF32)."""
    if a.dtype == torch.float32:
        return torch.mm(a, b)
    if a.is_cuda:  # cuBLAS with bf16/fp16 inputs and an fp32 result: no rounding of the sum to the input dtype
        return torch.mm(a, b, out_dtype=torch.float32)
    return torch.mm(a.float(), b.float())  # the CPU has no out_dtype matmul (interpreter tests only)


def _forward(x, w_ih, w_hh, bias, h0, c0, codes, save):
    B, T, F, I = x.shape
    R, G, _ = w_hh.shape
    pre = torch.addmm(bias.reshape(R * G), x.reshape(-1, I), w_ih.reshape(R * G, I).t())  # [rows, R*4H]
    return kernels.sweep_forward(pre.view(B, T, F, R * G), w_hh, h0, c0, codes, save, poison=POISON_OUTPUTS)


@functools.lru_cache(maxsize=64)
def _row_pairs(code: int, B: int, T: int, F: int, device: torch.device):
    """Row indices (int64, on device) for the dw_hh products of one direction, cached per shape:
    first [N]: the rows of the lines' first positions; wrong, partner: the first rows q whose row P away (in the
    direction of the previous position: q - P for '+', q + P for '-'; P = F along time, 1 along frequency) lies
    inside the grid, and that row, which belongs to another line."""
    first = kernels.first_rows(code, B, T, F)
    P = F if code < 2 else 1
    if code % 2 == 0:
        wrong = first[first >= P]
        partner = wrong - P
    else:
        wrong = first[first + P < B * T * F]
        partner = wrong + P
    return first.to(device), wrong.to(device), partner.to(device)


def _interior_dw_hh(dg: torch.Tensor, yr: torch.Tensor, code: int, B: int, T: int, F: int) -> torch.Tensor:
    """sum over the non-first positions q of a direction of outer(dg[q], yr[prev(q)]) -> float32 [4H, H].

    dg [rows, 4H] and yr [rows, H] are the direction's column slices of dgates and y (row = (b*T + t)*F + f);
    prev(q) = q - P for '+', q + P for '-', with P = F along time and 1 along frequency. One GEMM over the shifted
    2D views (no copy of dgates or y) pairs every row with the row P away; the only wrong pairs are those of
    first positions (the row P away ends another line), subtracted with a GEMM over at most N rows."""
    if (T if code < 2 else F) == 1:  # every position is a first position: no recurrent product at all
        return dg.new_zeros(dg.shape[1], yr.shape[1], dtype=torch.float32)
    P = F if code < 2 else 1
    _, wrong, partner = _row_pairs(code, B, T, F, dg.device)
    if code % 2 == 0:  # '+': h_prev of row q is at q - P
        main = _mm_f32(dg[P:].t(), yr[:-P])
    else:  # '-': h_prev of row q is at q + P
        main = _mm_f32(dg[:-P].t(), yr[P:])
    return main - _mm_f32(dg[wrong].t(), yr[partner])


def _backward(grad_y, x, w_ih, w_hh, h0, c0, gates, cell, y, codes, needs):
    B, T, F, I = x.shape
    R, G, H = w_hh.shape
    rows = B * T * F
    dgates, dc0 = kernels.sweep_backward(grad_y, w_hh, c0, gates, cell, codes, poison=POISON_OUTPUTS)
    dg2 = dgates.view(rows, R * G)
    dx = dw_ih = dw_hh = dbias = dh0 = None
    if needs[0]:
        dx = _mm_f32(dg2, w_ih.reshape(R * G, I)).to(x.dtype).view(B, T, F, I)
    if needs[1]:
        dw_ih = _mm_f32(dg2.t(), x.reshape(rows, I)).view(R, G, I).to(w_ih.dtype)
    if needs[3]:
        dbias = dg2.view(rows, R, G).sum(0, dtype=torch.float32).to(w_ih.dtype)
    if needs[2] or needs[4]:
        y2 = y.reshape(rows, R * H)
        dw, dh = [], []
        for r, code in enumerate(codes):
            dg = dg2[:, r * G:(r + 1) * G]
            first, _, _ = _row_pairs(code, B, T, F, x.device)
            first_sum = dg[first].sum(0, dtype=torch.float32)  # [4H]: dgates summed over every line's start
            dh.append(first_sum @ w_hh[r].float())  # dh0 = sum over lines of dgates_first @ w_hh
            if needs[2]:
                interior = _interior_dw_hh(dg, y2[:, r * H:(r + 1) * H], code, B, T, F)
                dw.append(interior + torch.outer(first_sum, h0[r].float()))  # first positions pair with h0
        dh0 = torch.stack(dh).to(h0.dtype) if needs[4] else None
        dw_hh = torch.stack(dw).to(w_hh.dtype) if needs[2] else None
    return dx, dw_ih, dw_hh, dbias, dh0, dc0.to(c0.dtype) if needs[5] else None


class _LstmSweep2dTriton(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w_ih, w_hh, bias, h0, c0, codes):
        y, gates, cell = _forward(x, w_ih, w_hh, bias, h0, c0, codes, save=True)
        ctx.codes = codes
        ctx.save_for_backward(x, w_ih, w_hh, h0, c0, gates, cell, y)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y):
        grads = _backward(grad_y, *ctx.saved_tensors, ctx.codes, ctx.needs_input_grad[:6])
        return (*grads, None)


def lstm_sweep_2d_triton(x: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor, bias: torch.Tensor,
                         h0: torch.Tensor, c0: torch.Tensor, directions) -> torch.Tensor:
    """x [B, T, F, I], w_ih [R, 4H, I], w_hh [R, 4H, H], bias [R, 4H], h0 / c0 [R, H] (checked by
    melnet_fast.ops.lstm_sweep_2d; any strides) -> y [B, T, F, R*H]; see lstm_sweep_2d for the contract.

    Differentiable in all six tensors. Storage float32, bfloat16 or float16 on CUDA (or CPU tensors under
    TRITON_INTERPRET=1); cell state and accumulations float32.
    """
    codes = tuple(DIRECTION_CODES[d] for d in directions)
    inputs = (x, w_ih, w_hh, bias, h0, c0)
    if not (torch.is_grad_enabled() and any(t.requires_grad for t in inputs)):
        return _forward(*inputs, codes, save=False)[0]
    return _LstmSweep2dTriton.apply(*inputs, codes)
