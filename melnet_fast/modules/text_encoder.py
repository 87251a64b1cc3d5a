"""TextEncoder: symbol ids -> the text memory the attention reads (character embedding + bidirectional LSTM)."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from melnet_fast.modules.sweep_lstm import SweepLSTM


class TextMemory(NamedTuple):
    """The encoded texts of a batch: memory [B, U, D] (zeros on padding) and lengths LongTensor [B] (symbols
    with end-of-text; positions u >= lengths[b] are padding)."""

    memory: torch.Tensor
    lengths: torch.Tensor


def reverse_within_lengths(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """x [B, U, ...] with row b's first lengths[b] positions reversed and its padding left in place
    (an involution: applying it twice gives x back)."""
    B, U = x.shape[:2]
    u = torch.arange(U, device=x.device)
    index = torch.where(u[None, :] < lengths[:, None], lengths[:, None] - 1 - u[None, :], u[None, :])
    index = index.view(B, U, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(1, index)


class TextEncoder(nn.Module):
    """memory = W [LSTM_fwd(e) ; LSTM_bwd(e)] with e = Embedding(ids): a bidirectional LSTM over the symbols.

    Both directions run through ops.lstm_sweep_2d (the text as a one-frame grid); the backward one reads each
    text reversed within its own length, so padding never flows into it and a text encodes the same alone or
    padded in a batch. Fields: embedding [n_symbols, D], forward_lstm, backward_lstm, proj (2D -> D).
    """

    def __init__(self, n_symbols: int, hidden_size: int):
        super().__init__()
        D = hidden_size
        self.embedding = nn.Embedding(n_symbols, D)
        self.forward_lstm = SweepLSTM(D, D, ("f+",))
        self.backward_lstm = SweepLSTM(D, D, ("f+",))
        self.proj = nn.Linear(2 * D, D)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> TextMemory:
        """ids LongTensor [B, U] (padding after lengths[b]), lengths LongTensor [B] -> TextMemory([B, U, D])."""
        e = self.embedding(ids)
        fwd = self.forward_lstm(e.unsqueeze(1)).squeeze(1)
        bwd = reverse_within_lengths(self.backward_lstm(reverse_within_lengths(e, lengths).unsqueeze(1)).squeeze(1),
                                     lengths)
        memory = self.proj(torch.cat([fwd, bwd], dim=-1))
        mask = torch.arange(ids.shape[1], device=ids.device)[None, :] < lengths[:, None]
        return TextMemory(memory * mask.unsqueeze(-1).to(memory.dtype), lengths)
