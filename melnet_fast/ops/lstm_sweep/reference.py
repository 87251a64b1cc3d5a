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


def _sequences(x: torch.Tensor, direction: str) -> torch.Tensor:
    """x [B, T, F, I] -> the direction's sequences [L, lines, I] in its own order: along time one per (b, f) (line
    b*F + f), along frequency one per (b, t) (line b*T + t)."""
    B, T, F, I = x.shape
    if direction[0] == "t":
        seq = x.permute(1, 0, 2, 3).reshape(T, B * F, I)
    else:
        seq = x.permute(2, 0, 1, 3).reshape(F, B * T, I)
    return seq.flip(0) if direction[1] == "-" else seq


def _grid(h: torch.Tensor, direction: str, B: int, T: int, F: int) -> torch.Tensor:
    """The inverse of _sequences for hidden states: [L, lines, H] -> [B, T, F, H]."""
    if direction[1] == "-":
        h = h.flip(0)
    H = h.shape[-1]
    if direction[0] == "t":
        return h.reshape(T, B, F, H).permute(1, 0, 2, 3)
    return h.reshape(F, B, T, H).permute(1, 2, 0, 3)


def _run_lstm(seq: torch.Tensor, w_ih, w_hh, bias, h, c) -> tuple[torch.Tensor, torch.Tensor]:
    """seq [L, N, I], initial states h, c [N, H] -> hidden states [L, N, H] and the last cell states [N, H]; gates
    as nn.LSTM (i, f, g, o)."""
    hx = (h.unsqueeze(0).contiguous(), c.unsqueeze(0).contiguous())
    zero = torch.zeros_like(bias)
    out, _, c_last = torch.lstm(seq, hx, [w_ih, w_hh, bias, zero], True, 1, 0.0, False, False, False)
    return out, c_last[0]


def lstm_sweep_2d_ref(x: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor, bias: torch.Tensor,
                      h0: torch.Tensor, c0: torch.Tensor, directions: Sequence[str]) -> torch.Tensor:
    """x [B, T, F, I] -> [B, T, F, R*H]; see melnet_fast.ops.lstm_sweep_2d for the contract."""
    B, T, F, _ = x.shape
    outs = []
    for r, d in enumerate(directions):
        seq = _sequences(x, d)
        n, H = seq.shape[1], h0.shape[1]
        h, _ = _run_lstm(seq, w_ih[r], w_hh[r], bias[r], h0[r].expand(n, H), c0[r].expand(n, H))
        outs.append(_grid(h, d, B, T, F))
    return torch.cat(outs, dim=-1)


def sweep_lines_ref(x: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor, bias: torch.Tensor,
                    h: torch.Tensor, c: torch.Tensor, direction: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One direction from every line's own initial state: x [B, T, F, I], w_ih [4H, I], w_hh [4H, H], bias [4H],
    h, c [lines, H] -> y [B, T, F, H] and the lines' last cell states [lines, H]."""
    B, T, F, _ = x.shape
    out, c_last = _run_lstm(_sequences(x, direction), w_ih, w_hh, bias, h, c)
    return _grid(out, direction, B, T, F), c_last
