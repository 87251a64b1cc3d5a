"""The feature-extraction network of an upsampling tier (paper, section 5.1): non-causal, over x^<g."""

from __future__ import annotations

import torch
from torch import nn

from melnet_fast.modules.sweep_lstm import SweepLSTM

FEATURE_DIRECTIONS = ("t+", "t-", "f+", "f-")


class FeatureExtractionLayer(nn.Module):
    """h[l] = W_l [LSTM_t+ ; LSTM_t- ; LSTM_f+ ; LSTM_f-](h[l-1]) + h[l-1]. Fields: lstm, proj."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.lstm = SweepLSTM(hidden_size, hidden_size, FEATURE_DIRECTIONS)
        self.proj = nn.Linear(4 * hidden_size, hidden_size)

    def forward(self, h: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """h [B, T, F, D] -> [B, T, F, D]; lengths [B]: real frames per example (see SweepLSTM.forward)."""
        return h + self.proj(self.lstm(h, lengths))


class FeatureExtractionNetwork(nn.Module):
    """Features of the coarser tiers x^<g, on the grid of x^g: in_proj (1 -> D, no shift), then residual
    layers of four LSTMs along both axes in both directions.

    forward(context [B, T, F], lengths=None) -> [B, T, F, D]. lengths (LongTensor [B]): real frames of each
    example; the backward-in-time LSTMs then start at the last real frame, so the features of real frames do
    not depend on the padding after them (nor on how much there is).
    """

    def __init__(self, hidden_size: int, n_layers: int):
        super().__init__()
        self.in_proj = nn.Linear(1, hidden_size)
        self.layers = nn.ModuleList(FeatureExtractionLayer(hidden_size) for _ in range(n_layers))

    def forward(self, context: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        h = self.in_proj(context.unsqueeze(-1))
        for layer in self.layers:
            h = layer(h, lengths)
        return h
