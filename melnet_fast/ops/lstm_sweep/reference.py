"""Reference 2D LSTM sweep: one torch LSTM (the kernel behind nn.LSTM) per direction. The oracle of the tests."""

from __future__ import annotations

from typing import Sequence

import torch


def lstm_cell(inp, h, c, w_ih, w_hh, bias):
    """One LSTM step, gates (i, f, g, o) as nn.LSTM. inp [N, Din], h, c [N, D], w_ih [4D, Din], w_hh [4D, D],
    bias [4D] -> (h, c) [N, D]."""
    gates = torch.addmm(bias, inp, w_ih.t()) + h @ w_hh.t()
    i, f, g, o = gates.chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def _run_lstm(seq: torch.Tensor, w_ih, w_hh, bias, h0, c0) -> torch.Tensor:
    """seq [L, N, I] -> hidden states [L, N, H], gates as nn.LSTM (i, f, g, o)."""
    n = seq.shape[1]
    hx = (h0.expand(1, n, -1).contiguous(), c0.expand(1, n, -1).contiguous())
    zero = torch.zeros_like(bias)
    out = torch.lstm(seq, hx, [w_ih, w_hh, bias, zero], True, 1, 0.0, False, False, False)[0]
    return out


def lstm_sweep_2d_ref(x: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor, bias: torch.Tensor,
                      h0: torch.Tensor, c0: torch.Tensor, directions: Sequence[str]) -> torch.Tensor:
    """x [B, T, F, I] -> [B, T, F, R*H]; see melnet_fast.ops.lstm_sweep_2d for the contract."""
    B, T, F, I = x.shape
    outs = []
    for r, d in enumerate(directions):
        if d[0] == "t":  # sequences along time, one per (b, f)
            seq = x.permute(1, 0, 2, 3).reshape(T, B * F, I)
        else:  # sequences along frequency, one per (b, t)
            seq = x.permute(2, 0, 1, 3).reshape(F, B * T, I)
        if d[1] == "-":
            seq = seq.flip(0)
        h = _run_lstm(seq, w_ih[r], w_hh[r], bias[r], h0[r], c0[r])
        if d[1] == "-":
            h = h.flip(0)
        H = h.shape[-1]
        if d[0] == "t":
            h = h.reshape(T, B, F, H).permute(1, 0, 2, 3)
        else:
            h = h.reshape(F, B, T, H).permute(1, 2, 0, 3)
        outs.append(h)
    return torch.cat(outs, dim=-1)
