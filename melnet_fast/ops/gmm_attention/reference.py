"""Reference of the Graves-style Gaussian-mixture attention over a text memory (Graves 2013, section 5), with
each symbol's weight the mixture's mass on that symbol's unit interval (a difference of logistic CDFs).

One step, for one frame i (the attention runs once per frame of the initial tier):
    s_i = LSTMCell([q_i ; w_{i-1}], s_{i-1})                     (the attention RNN, fed its last context)
    (k^, b^, a^) = W s_i + b                                      (K' components each)
    kappa_i = kappa_{i-1} + exp(k^)    width = exp(b^)    alpha = softmax(a^)
    phi_i(u) = sum_k alpha_k [sigmoid((u + 1 - kappa_k) / width_k) - sigmoid((u - kappa_k) / width_k)]
               for the symbols u < length of the text, 0 on padding
    w_i = sum_u phi_i(u) m_u                                      (the context)
    beyond_i = 1 - sum_k alpha_k sigmoid((length - kappa_k) / width_k)   (the mass past the end: the stop signal)
Symbol u covers positions [u, u + 1); kappa starts at 0 and only moves forward.
"""

from __future__ import annotations

from typing import NamedTuple, Tuple

import torch

from melnet_fast.ops.lstm_sweep.reference import lstm_cell


class AttentionState(NamedTuple):
    """What the attention carries from frame to frame: its RNN state h, c [B, H], the last context [B, Dm] and
    the positions kappa [B, K']."""

    h: torch.Tensor
    c: torch.Tensor
    context: torch.Tensor
    kappa: torch.Tensor


class AttentionWeights(NamedTuple):
    """The attention's parameters: RNN cell w_ih [4H, Dq + Dm], w_hh [4H, H], bias [4H], initial h0, c0 [H];
    window map window_w [3K', H], window_b [3K'] read as (position steps, log widths, weight logits)."""

    w_ih: torch.Tensor
    w_hh: torch.Tensor
    bias: torch.Tensor
    h0: torch.Tensor
    c0: torch.Tensor
    window_w: torch.Tensor
    window_b: torch.Tensor


def initial_state(weights: AttentionWeights, batch: int, memory_dim: int) -> AttentionState:
    """The state before frame 0: trainable h0, c0; zero context; kappa = 0."""
    H = weights.h0.shape[0]
    K = weights.window_w.shape[0] // 3
    zeros = weights.h0.new_zeros
    return AttentionState(weights.h0.expand(batch, H), weights.c0.expand(batch, H), zeros(batch, memory_dim),
                          zeros(batch, K))


def gmm_attention_window(kappa: torch.Tensor, log_width: torch.Tensor, logit_alpha: torch.Tensor,
                         text_lengths: torch.Tensor, n_symbols: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """kappa, log_width, logit_alpha [B, K'], text_lengths LongTensor [B] -> (phi [B, U], beyond [B]) with
    U = n_symbols: the mass of the window on each symbol (0 at and after text_lengths[b]) and past the end."""
    alpha = torch.softmax(logit_alpha, dim=-1)
    inv_width = torch.exp(-log_width)
    u = torch.arange(n_symbols + 1, device=kappa.device, dtype=kappa.dtype)
    cdf = torch.sigmoid((u[None, :, None] - kappa[:, None, :]) * inv_width[:, None, :])  # [B, U + 1, K']
    mass = ((cdf[:, 1:] - cdf[:, :-1]) * alpha[:, None, :]).sum(-1)  # [B, U]
    mask = u[None, :-1] < text_lengths[:, None].to(kappa.dtype)
    phi = torch.where(mask, mass, torch.zeros_like(mass))
    end = text_lengths.to(kappa.dtype)[:, None]
    beyond = 1 - (alpha * torch.sigmoid((end - kappa) * inv_width)).sum(-1)
    return phi, beyond


def attention_step(query: torch.Tensor, state: AttentionState, memory: torch.Tensor, text_lengths: torch.Tensor,
                   weights: AttentionWeights) -> Tuple[AttentionState, torch.Tensor, torch.Tensor]:
    """One frame: query [B, Dq] (the centralized stack at this frame), memory [B, U, Dm], text_lengths [B] ->
    (new state, phi [B, U], beyond [B]); the new state's context [B, Dm] is the frame's context."""
    h, c = lstm_cell(torch.cat([query, state.context], dim=-1), state.h, state.c, weights.w_ih, weights.w_hh,
                     weights.bias)
    params = torch.addmm(weights.window_b, h, weights.window_w.t())
    K = params.shape[-1] // 3
    kappa = state.kappa + torch.exp(params[:, :K])
    phi, beyond = gmm_attention_window(kappa, params[:, K:2 * K], params[:, 2 * K:], text_lengths, memory.shape[1])
    context = torch.bmm(phi.unsqueeze(1), memory).squeeze(1)
    return AttentionState(h, c, context, kappa), phi, beyond
