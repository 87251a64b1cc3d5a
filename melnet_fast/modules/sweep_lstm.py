"""SweepLSTM: the parameters of R one-dimensional LSTMs swept over a 2D grid, run by ops.lstm_sweep_2d."""

from __future__ import annotations

import math
from typing import Sequence, Tuple

import torch
from torch import nn

from melnet_fast import ops
from melnet_fast.lengths import reverse_within


class SweepLSTM(nn.Module):
    """R LSTMs of hidden size D over a [B, T, F, Din] grid, one per direction ("t+", "t-", "f+", "f-").

    Parameters: w_ih [R, 4D, Din], w_hh [R, 4D, D], bias [R, 4D] (gates i, f, g, o as nn.LSTM), and the
    trainable initial states h0, c0 [R, D] (paper, Appendix A). forward(x [B, T, F, Din], lengths=None) ->
    [B, T, F, R*D], direction r in channels r*D:(r+1)*D.

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

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, T, F, Din] -> [B, T, F, R*D].

        lengths: LongTensor [B] of real frames per example (the rest of T is padding at the end), or None (all
        T real). Only a backward-in-time direction ("t-") reads padding into real frames; with lengths it starts
        at each example's last real frame instead (run as "t+" over the example reversed within its length, a
        second sweep call). Outputs at padded frames are meaningless.
        """
        params = (self.w_ih, self.w_hh, self.bias, self.h0, self.c0)
        device = x.device.type
        if torch.is_autocast_enabled(device):
            dtype = torch.get_autocast_dtype(device)
            with torch.autocast(device, enabled=False):
                return self._sweep(x.to(dtype), [p.to(dtype) for p in params], lengths)
        return self._sweep(x, params, lengths)

    def _sweep(self, x: torch.Tensor, params, lengths: torch.Tensor | None) -> torch.Tensor:
        if lengths is None or "t-" not in self.directions:
            return ops.lstm_sweep_2d(x, *params, self.directions, recompute=self.recompute)
        back = self.directions.index("t-")
        rest = [r for r in range(len(self.directions)) if r != back]
        reversed_out = ops.lstm_sweep_2d(reverse_within(x, lengths), *(p[back:back + 1] for p in params), ("t+",),
                                         recompute=self.recompute)
        outs = {back: reverse_within(reversed_out, lengths)}
        if rest:
            index = torch.tensor(rest, device=x.device)
            y = ops.lstm_sweep_2d(x, *(p.index_select(0, index) for p in params),
                                  [self.directions[r] for r in rest], recompute=self.recompute)
            outs.update(zip(rest, y.split(self.hidden_size, dim=-1)))
        return torch.cat([outs[r] for r in range(len(self.directions))], dim=-1)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, directions={self.directions}"
