"""The centralized stack of the initial tier (published version of the paper) and the text attention it drives.

    h^c_i[0] = W^c_0 x_{i-1}                      (the whole previous frame; frame -1 is zeros)
    h^c_i[l] = W^c_l LSTM^c_l(h^c[l-1])_i + h^c_i[l-1]     (one LSTM along time per layer, residual)
h^c_i[l] is broadcast over frequency and added to the input of layer l of the frequency-delayed stack
(TierNetwork). With text, the attention (ops.gmm_attention) reads h^c_i[a] once per frame, a = attention layer,
and its context, projected, is added to h^c_i[a] before anything reads it (layer a of the frequency-delayed
stack and layer a + 1 of this stack): everything at frame i still depends only on frames < i.
"""

from __future__ import annotations

import math
from typing import List, Tuple

import torch
from torch import nn

from melnet_fast.modules.sweep_lstm import SweepLSTM
from melnet_fast.modules.text_encoder import TextMemory
from melnet_fast.ops.gmm_attention import AttentionWeights, attention_step, initial_state

# Initial mean step of the attention positions, in symbols per frame of the initial tier (exp of the step bias),
# when neither the config nor the training data gives one.
DEFAULT_INITIAL_STEP = 0.5


class CentralizedLayer(nn.Module):
    """h^c[l] = W^c_l LSTM_t+(h^c[l-1]) + h^c[l-1]. Fields: lstm (one direction, along time), proj."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.lstm = SweepLSTM(hidden_size, hidden_size, ("t+",))
        self.proj = nn.Linear(hidden_size, hidden_size)

    def forward(self, hc: torch.Tensor) -> torch.Tensor:
        """hc [B, T, D] -> [B, T, D]."""
        return hc + self.proj(self.lstm(hc.unsqueeze(2)).squeeze(2))


class TextAttention(nn.Module):
    """The attention RNN and window map (see melnet_fast.ops.gmm_attention): an LSTM cell over
    [h^c_i[a] ; context_{i-1}] with trainable initial state, window = Linear(D, 3K'), and the projection of the
    context into the centralized stack (context_proj, D -> D)."""

    def __init__(self, hidden_size: int, n_mixtures: int, initial_step: float = DEFAULT_INITIAL_STEP,
                 initial_width: float = 1.0):
        super().__init__()
        D, K = hidden_size, n_mixtures
        self.n_mixtures = K
        bound = 1.0 / math.sqrt(D)
        self.w_ih = nn.Parameter(torch.empty(4 * D, 2 * D).uniform_(-bound, bound))
        self.w_hh = nn.Parameter(torch.empty(4 * D, D).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(4 * D).uniform_(-bound, bound))
        self.h0 = nn.Parameter(torch.zeros(D))
        self.c0 = nn.Parameter(torch.zeros(D))
        self.window = nn.Linear(D, 3 * K)
        with torch.no_grad():  # the window starts near its biases: steps of initial_step, widths initial_width
            self.window.weight.mul_(0.1)
            self.window.bias.zero_()
            self.window.bias[K:2 * K].fill_(math.log(initial_width))
        self.set_initial_step(initial_step)
        self.context_proj = nn.Linear(D, D)

    @torch.no_grad()
    def set_initial_step(self, step: float) -> None:
        """Set the position-step bias so that the untrained window advances about `step` symbols per frame
        (the speaking rate of the data: text symbols / initial-tier frames), instead of having to learn it."""
        if not (math.isfinite(step) and step > 0):
            raise ValueError(f"the attention's initial step must be a finite number > 0 (symbols per frame), "
                             f"got {step!r}")
        self.window.bias[:self.n_mixtures].fill_(math.log(step))

    def weights(self) -> AttentionWeights:
        return AttentionWeights(self.w_ih, self.w_hh, self.bias, self.h0, self.c0, self.window.weight,
                                self.window.bias)

    def forward(self, query: torch.Tensor, text: TextMemory) -> Tuple[torch.Tensor, torch.Tensor]:
        """query [B, T, D] (h^c[a]) -> (projected contexts [B, T, D], alignment phi [B, T, U]); one step a frame."""
        B, T, _ = query.shape
        weights = self.weights()
        state = initial_state(weights, B, text.memory.shape[-1])
        contexts, phis = [], []
        for i in range(T):
            state, phi, _ = attention_step(query[:, i], state, text.memory, text.lengths, weights)
            contexts.append(state.context)
            phis.append(phi)
        return self.context_proj(torch.stack(contexts, dim=1)), torch.stack(phis, dim=1)


class CentralizedStack(nn.Module):
    """The centralized stack of a tier with F channels, L layers of hidden size D, and optionally the text
    attention at level attention_layer (0 <= a < L). input_dropout: dropout on the previous frame it reads
    (training only); initial_step, initial_width: the attention window's start (TextAttention).

    forward(x [B, T, F], text TextMemory or None) -> (terms, alignment): terms[l] [B, T, D] = h^c[l + 1] for
    l = 0..L-1 (what layer l of the frequency-delayed stack adds), alignment [B, T, U] or None without text.
    """

    def __init__(self, n_channels: int, hidden_size: int, n_layers: int, attention_mixtures: int = 0,
                 attention_layer: int = 0, input_dropout: float = 0.0, initial_step: float = DEFAULT_INITIAL_STEP,
                 initial_width: float = 1.0):
        super().__init__()
        self.input_dropout = nn.Dropout(input_dropout)
        self.in_proj = nn.Linear(n_channels, hidden_size)
        self.layers = nn.ModuleList(CentralizedLayer(hidden_size) for _ in range(n_layers))
        self.attention_layer = attention_layer
        if attention_mixtures:
            self.attention = TextAttention(hidden_size, attention_mixtures, initial_step, initial_width)
        else:
            self.attention = None

    def forward(self, x: torch.Tensor, text: TextMemory | None = None
                ) -> Tuple[List[torch.Tensor], torch.Tensor | None]:
        if (text is None) != (self.attention is None):
            raise ValueError("text must be given exactly when the centralized stack has an attention"
                             if text is None else "this centralized stack has no attention: it takes no text")
        prev_frame = torch.nn.functional.pad(x, (0, 0, 1, 0))[:, :x.shape[1]]  # x[i-1], frame -1 = zeros
        hc = self.in_proj(self.input_dropout(prev_frame))  # dropout: training only
        alignment = None
        terms = []
        for level in range(len(self.layers) + 1):
            if level == self.attention_layer and self.attention is not None:
                context, alignment = self.attention(hc, text)
                hc = hc + context
            if level > 0:
                terms.append(hc)
            if level < len(self.layers):
                hc = self.layers[level](hc)
        return terms, alignment
