"""Fake kernels and the autograd formula of the sweep ops. The fake kernels serve every pair of forward / backward
ops: melnet_fast::lstm_sweep_2d_fwd / _bwd (the C++ and CUDA kernels of melnet_fast._C), lstm_sweep_2d_fwd_triton /
_bwd_triton (the triton backend's custom ops) and the cuda_gemm pair. The formula here is registered for the
Python-defined pairs; the extension's pair has it as a C++ autograd kernel (csrc/op_autograd.cpp). With them the ops
work under autograd, torch.compile and opcheck.

Forward op (x, w_ih, w_hh, bias, h0, c0, directions, save) -> (y, gates, cell): y [B, T, F, R*H]; with save, the
activated gates [R, B, T, F, 4H] (x's dtype) and cell states [R, B, T, F, H] (float32 for 16-bit inputs) for the
backward, else two empty tensors. Backward op (grad_y, x, w_ih, w_hh, h0, c0, y, gates, cell, directions, dh_last,
dc_last) -> the gradients of x, w_ih, w_hh, bias, h0, c0. With one direction h0 and c0 may be per line
[1, lines, H]; dh_last, dc_last (or None) are the gradients reaching each line's last h and c from beyond the grid:
the spans of the segmented recompute (recompute.py), which calls the ops directly, outside autograd.
"""

from __future__ import annotations

import torch


def fwd_fake(x, w_ih, w_hh, bias, h0, c0, directions, save):
    B, T, F, _ = x.shape
    R, G, H = w_hh.shape
    y = x.new_empty(B, T, F, R * H)
    cell_dtype = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    if save:
        return y, x.new_empty(R, B, T, F, G), x.new_empty(R, B, T, F, H, dtype=cell_dtype)
    return y, x.new_empty(0), x.new_empty(0, dtype=cell_dtype)


def bwd_fake(grad_y, x, w_ih, w_hh, h0, c0, y, gates, cell, directions, dh_last=None, dc_last=None):
    return (torch.empty_like(x), torch.empty_like(w_ih), torch.empty_like(w_hh),
            w_hh.new_empty(w_hh.shape[0], w_hh.shape[1]), torch.empty_like(h0), torch.empty_like(c0))


def _setup_context(ctx, inputs, output):
    x, w_ih, w_hh, bias, h0, c0, directions, save = inputs
    y, gates, cell = output
    ctx.directions = directions
    # gates and cell are saved state, never differentiated: without this autograd fills a zero gradient of
    # their size (tens of megabytes) on every backward.
    ctx.set_materialize_grads(False)
    ctx.save_for_backward(x, w_ih, w_hh, h0, c0, y, gates, cell)


def register(fwd: str, bwd: str, autograd: bool = True) -> None:
    """Register the fake kernels of the ops named fwd and bwd ("namespace::name") and, with autograd, fwd's autograd
    formula, whose backward calls bwd. The extension's ops (melnet_fast::lstm_sweep_2d_fwd / _bwd) take autograd=False:
    their formula, the same, is a C++ autograd kernel (csrc/op_autograd.cpp), which runs about 0.2 ms faster per
    forward and backward. Both are checked against the reference (tests/ops/test_op_autograd.py,
    test_lstm_sweep_triton.py)."""
    bwd_op = getattr(getattr(torch.ops, bwd.split("::")[0]), bwd.split("::")[1])

    def backward(ctx, grad_y, _grad_gates, _grad_cell):
        x, w_ih, w_hh, h0, c0, y, gates, cell = ctx.saved_tensors
        if grad_y is None:
            grad_y = torch.zeros_like(y)
        grads = bwd_op(grad_y, x, w_ih, w_hh, h0, c0, y, gates, cell, ctx.directions)
        return (*grads, None, None)

    torch.library.register_fake(fwd)(fwd_fake)
    torch.library.register_fake(bwd)(bwd_fake)
    if autograd:
        torch.library.register_autograd(fwd, backward, setup_context=_setup_context)
