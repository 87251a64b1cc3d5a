"""The guided-attention loss (Tachibana et al. 2017, "Efficiently trainable text-to-speech system based on deep
convolutional networks with guided attention", section 4.1): the attention's mass away from the diagonal.

    W[t, u] = 1 - exp(-((u + 0.5) / N - (t + 0.5) / T)^2 / (2 g^2))      (N symbols, T real frames of a clip)
    loss = mean over the real frames t of sum_u A[t, u] W[t, u]

Text and speech run at a roughly constant rate, so an alignment near the diagonal is the right start; the term
only guides (its weight decays during training), the model's NLL does not include it. Cell centres are used so
that the exact diagonal costs nothing when N = T.
"""

from __future__ import annotations

import torch


def guided_attention_loss(alignment: torch.Tensor, text_lengths: torch.Tensor, frame_lengths: torch.Tensor | None,
                          sigma: float) -> torch.Tensor:
    """alignment [B, T, U] (attention weights over the symbols of every frame), text_lengths LongTensor [B]
    (symbols N_b, end-of-text included), frame_lengths LongTensor [B] (real frames T_b) or None (all T), sigma
    the band's width g -> a scalar in [0, 1): the mean over real frames of the mass off the diagonal band."""
    if alignment.dim() != 3:
        raise ValueError(f"alignment must be [B, T, U], got {tuple(alignment.shape)}")
    B, T, U = alignment.shape
    if text_lengths.shape != (B,):
        raise ValueError(f"text_lengths must be [B={B}], got {tuple(text_lengths.shape)}")
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma!r}")
    if frame_lengths is None:
        frame_lengths = torch.full((B,), T, dtype=torch.long, device=alignment.device)
    elif frame_lengths.shape != (B,):
        raise ValueError(f"frame_lengths must be [B={B}] or None, got {tuple(frame_lengths.shape)}")
    dtype = alignment.dtype
    t = torch.arange(T, device=alignment.device, dtype=dtype)
    u = torch.arange(U, device=alignment.device, dtype=dtype)
    n_frames = frame_lengths.to(dtype).clamp(min=1)[:, None, None]
    n_symbols = text_lengths.to(dtype).clamp(min=1)[:, None, None]
    offset = (u[None, None, :] + 0.5) / n_symbols - (t[None, :, None] + 0.5) / n_frames  # [B, T, U]
    weight = 1 - torch.exp(-offset.square() / (2 * sigma * sigma))
    real = (t[None, :] < frame_lengths[:, None].to(dtype)).to(dtype)  # [B, T]
    per_frame = (alignment * weight).sum(-1) * real
    return per_frame.sum() / real.sum().clamp(min=1)
