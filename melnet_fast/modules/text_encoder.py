"""TextEncoder: symbol ids -> the text memory the attention reads (character embedding + bidirectional LSTM)."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from melnet_fast.lengths import length_mask, masked_fill_padding
from melnet_fast.modules.sweep_lstm import SweepLSTM


class TextMemory(NamedTuple):
    """The encoded texts of a batch: memory [B, U, D] (zeros on padding) and lengths LongTensor [B] (symbols
    with end-of-text; positions u >= lengths[b] are padding)."""

    memory: torch.Tensor
    lengths: torch.Tensor


class TextEncoder(nn.Module):
    """memory = W [LSTM_fwd(e) ; LSTM_bwd(e)] with e = Embedding(ids): a bidirectional LSTM over the symbols.

    The LSTMs run through ops.lstm_sweep_2d with the text along the time axis of a one-channel grid, in the
    directions ("t+", "t-") with the texts' lengths, so the backward one starts at each text's last symbol:
    padding never flows into it, and a text encodes the same alone or padded in a batch.
    Fields: embedding [n_symbols, D], lstm (2 directions), proj (2D -> D).
    """

    def __init__(self, n_symbols: int, hidden_size: int):
        super().__init__()
        D = hidden_size
        self.embedding = nn.Embedding(n_symbols, D)
        self.lstm = SweepLSTM(D, D, ("t+", "t-"))
        self.proj = nn.Linear(2 * D, D)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> TextMemory:
        """ids LongTensor [B, U] (padding after lengths[b]), lengths LongTensor [B] -> TextMemory([B, U, D])."""
        h = self.lstm(self.embedding(ids).unsqueeze(2), lengths).squeeze(2)
        memory = masked_fill_padding(self.proj(h), length_mask(lengths, ids.shape[1]))
        return TextMemory(memory, lengths)
