"""The per-frame step of a tier with a centralized stack, in eager PyTorch, for the reference sampler: once
before each frame's per-element work it advances the centralized stack by one frame and, with text, the
attention, and gives what layer l of the frequency-delayed stack adds at this frame."""

from __future__ import annotations

from typing import List, Tuple

import torch

from melnet_fast.ops.gmm_attention import attention_step, initial_state
from melnet_fast.ops.lstm_sweep.reference import lstm_cell
from melnet_fast.ops.tier_sampling.centralized_weights import unpack


class CentralizedStep:
    """State of the centralized stack (and attention) of a batch of B rows between frames.

    step(prev_frame [B, F]) -> (terms, phi, beyond): terms[l] [B, D] = h^c[l + 1] at this frame, phi [B, U] the
    attention weights and beyond [B] the attention mass past the end of each text (None without text).
    """

    def __init__(self, weights, n_layers: int, attention_layer: int, batch: int,
                 memory: torch.Tensor | None = None, text_lengths: torch.Tensor | None = None):
        self.W = unpack(weights, n_layers)
        self.attention_layer = attention_layer
        self.memory, self.text_lengths = memory, text_lengths
        self.state = [(lay.h0[0].expand(batch, -1), lay.c0[0].expand(batch, -1)) for lay in self.W.layers]
        self.attention = None
        if self.W.attention is not None:
            self.attention = initial_state(self.W.attention, batch, memory.shape[-1])

    def step(self, prev_frame: torch.Tensor) -> Tuple[List[torch.Tensor], torch.Tensor | None, torch.Tensor | None]:
        W = self.W
        hc = torch.addmm(W.in_b, prev_frame, W.in_w.t())
        terms, phi, beyond = [], None, None
        for level in range(len(W.layers) + 1):
            if level == self.attention_layer and self.attention is not None:
                self.attention, phi, beyond = attention_step(hc, self.attention, self.memory, self.text_lengths,
                                                             W.attention)
                hc = hc + torch.addmm(W.context_b, self.attention.context, W.context_w.t())
            if level > 0:
                terms.append(hc)
            if level < len(W.layers):
                lay = W.layers[level]
                h, c = lstm_cell(hc, *self.state[level], lay.w_ih[0], lay.w_hh[0], lay.bias[0])
                self.state[level] = (h, c)
                hc = hc + torch.addmm(lay.proj_b, h, lay.proj_w.t())
        return terms, phi, beyond
