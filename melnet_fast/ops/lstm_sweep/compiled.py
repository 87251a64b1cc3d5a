"""Autograd and fake (meta) registrations of the compiled sweep ops melnet_fast::lstm_sweep_2d_fwd / _bwd.

The C++ kernels register per device (CPU now, CUDA later); this file gives them one autograd formula and
shape functions, so they work under autograd, torch.compile and opcheck on every device.
"""

from __future__ import annotations

import torch

from melnet_fast import _extension

DIRECTION_CODES = {"t+": 0, "t-": 1, "f+": 2, "f-": 3}


def _fwd_fake(x, w_ih, w_hh, bias, h0, c0, directions, save):
    B, T, F, _ = x.shape
    R, G, H = w_hh.shape
    y = x.new_empty(B, T, F, R * H)
    # Gates are kept in x's dtype; the cell state is float32 for half-precision inputs (the kernels' state).
    cell_dtype = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    if save:
        return y, x.new_empty(R, B, T, F, G), x.new_empty(R, B, T, F, H, dtype=cell_dtype)
    return y, x.new_empty(0), x.new_empty(0, dtype=cell_dtype)


def _bwd_fake(grad_y, x, w_ih, w_hh, h0, c0, y, gates, cell, directions):
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


def _backward(ctx, grad_y, _grad_gates, _grad_cell):
    x, w_ih, w_hh, h0, c0, y, gates, cell = ctx.saved_tensors
    if grad_y is None:
        grad_y = torch.zeros_like(y)
    dx, dw_ih, dw_hh, dbias, dh0, dc0 = torch.ops.melnet_fast.lstm_sweep_2d_bwd(
        grad_y, x, w_ih, w_hh, h0, c0, y, gates, cell, ctx.directions)
    return dx, dw_ih, dw_hh, dbias, dh0, dc0, None, None


if _extension.has_cpu_kernels():
    torch.library.register_fake("melnet_fast::lstm_sweep_2d_fwd")(_fwd_fake)
    torch.library.register_fake("melnet_fast::lstm_sweep_2d_bwd")(_bwd_fake)
    torch.library.register_autograd("melnet_fast::lstm_sweep_2d_fwd", _backward, setup_context=_setup_context)


def lstm_sweep_2d_compiled(x, w_ih, w_hh, bias, h0, c0, directions):
    """Run the compiled kernel of the tensors' device; saves what backward needs only when it will run."""
    codes = [DIRECTION_CODES[d] for d in directions]
    save = torch.is_grad_enabled() and any(
        t.requires_grad for t in (x, w_ih, w_hh, bias, h0, c0))
    y, _, _ = torch.ops.melnet_fast.lstm_sweep_2d_fwd(x, w_ih, w_hh, bias, h0, c0, codes, save)
    return y
