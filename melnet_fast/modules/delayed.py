"""The residual layers of a tier network: time-delayed (paper eq. 6) and frequency-delayed (eq. 7)."""

from __future__ import annotations

import torch
from torch import nn

from melnet_fast.modules.sweep_lstm import SweepLSTM

TIME_DIRECTIONS = ("t+", "f+", "f-")
FREQ_DIRECTIONS = ("f+",)


class TimeDelayedLayer(nn.Module):
    """h^t[l] = W^t_l [LSTM_t+ ; LSTM_f+ ; LSTM_f-](h^t[l-1]) + h^t[l-1]. Fields: lstm (3 directions), proj."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.lstm = SweepLSTM(hidden_size, hidden_size, TIME_DIRECTIONS)
        self.proj = nn.Linear(3 * hidden_size, hidden_size)

    def forward(self, ht: torch.Tensor) -> torch.Tensor:
        """ht [B, T, F, D] -> [B, T, F, D]."""
        return ht + self.proj(self.lstm(ht))


class FrequencyDelayedLayer(nn.Module):
    """h^f[l] = W^f_l LSTM_f+(h^f[l-1] + h^t[l]) + h^f[l-1]. Fields: lstm (one direction), proj."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.lstm = SweepLSTM(hidden_size, hidden_size, FREQ_DIRECTIONS)
        self.proj = nn.Linear(hidden_size, hidden_size)

    def forward(self, hf: torch.Tensor, ht: torch.Tensor) -> torch.Tensor:
        """hf, ht [B, T, F, D] (ht already of this layer) -> [B, T, F, D]."""
        return hf + self.proj(self.lstm(hf + ht))
