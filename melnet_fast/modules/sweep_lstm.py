"""SweepLSTM: the parameters of R one-dimensional LSTMs swept over a 2D grid, run by ops.lstm_sweep_2d."""

from __future__ import annotations

import math
from typing import Sequence, Tuple

import torch
from torch import nn

from melnet_fast import ops


class SweepLSTM(nn.Module):
    """R LSTMs of hidden size D over a [B, T, F, Din] grid, one per direction ("t+", "t-", "f+", "f-").

    Parameters: w_ih [R, 4D, Din], w_hh [R, 4D, D], bias [R, 4D] (gates i, f, g, o as nn.LSTM), and the
    trainable initial states h0, c0 [R, D] (paper, Appendix A). forward(x [B, T, F, Din]) -> [B, T, F, R*D],
    direction r in channels r*D:(r+1)*D.

    recompute (attribute, default False): run the sweep again in backward instead of keeping its gates and
    cell states (ops.lstm_sweep_2d(recompute=True)). Under torch.autocast the sweep runs in the autocast dtype
    (inputs and parameters cast, as autocast does for matmuls); its kernels keep the cell state in float32.
    """

    def __init__(self, input_size: int, hidden_size: int, directions: Sequence[str]):
        super().__init__()
        self.directions: Tuple[str, ...] = tuple(directions)
        self.input_size = input_size
        self.hidden_size = hidden_size
        R, D = len(self.directions), hidden_size
        self.w_ih = nn.Parameter(torch.empty(R, 4 * D, input_size))
        self.w_hh = nn.Parameter(torch.empty(R, 4 * D, D))
        self.bias = nn.Parameter(torch.empty(R, 4 * D))
        self.h0 = nn.Parameter(torch.empty(R, D))
        self.c0 = nn.Parameter(torch.empty(R, D))
        self.recompute = False
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """uniform(-1/sqrt(D), 1/sqrt(D)) for the weights and bias as nn.LSTM; zero initial states."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in (self.w_ih, self.w_hh, self.bias):
            nn.init.uniform_(p, -bound, bound)
        nn.init.zeros_(self.h0)
        nn.init.zeros_(self.c0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, T, F, Din] -> [B, T, F, R*D]."""
        params = (self.w_ih, self.w_hh, self.bias, self.h0, self.c0)
        device = x.device.type
        if torch.is_autocast_enabled(device):
            dtype = torch.get_autocast_dtype(device)
            with torch.autocast(device, enabled=False):
                return ops.lstm_sweep_2d(x.to(dtype), *(p.to(dtype) for p in params), self.directions,
                                         recompute=self.recompute)
        return ops.lstm_sweep_2d(x, *params, self.directions, recompute=self.recompute)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, directions={self.directions}"
