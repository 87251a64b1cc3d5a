"""Variable-length batches: lengths along time, the masks they imply, and reversal inside each example's length.

A batch of sequences of different lengths is padded at the end to a common size T; `lengths` (LongTensor [B])
holds the number of real positions of each example. Every part of the package that reads along time takes its
masks and reversals from here, so that padding is handled the same way everywhere:

  length_mask(lengths, T)       BoolTensor [B, T], True at real positions (t < lengths[b])
  masked_fill_padding(x, mask)  x with padded positions set to zero (NaN-safe: padding may hold anything)
  reverse_within(x, lengths)    x[b, :L_b] reversed along time, x[b, L_b:] left in place: a backward-in-time
                                recurrence over the reversed tensor starts at each example's last real position,
                                so padding at the end never flows into it
"""

from __future__ import annotations

import torch


def check_lengths(lengths, batch: int, size: int, name: str = "lengths", minimum: int = 1,
                  why: str = "") -> torch.Tensor:
    """Validate lengths for a batch of `batch` sequences padded to `size`; returns them as a LongTensor [B].

    ValueError (naming `name`, followed by `why` when given) unless lengths is an integer tensor of shape
    [batch] with minimum <= lengths[b] <= size.
    """
    if (not isinstance(lengths, torch.Tensor) or lengths.is_floating_point() or lengths.is_complex()
            or lengths.dtype == torch.bool or tuple(lengths.shape) != (batch,)):
        got = f"{lengths.dtype} {tuple(lengths.shape)}" if isinstance(lengths, torch.Tensor) else type(lengths).__name__
        raise ValueError(f"{name} must be an integer tensor of shape [{batch}] (one length per example), got {got}")
    if batch:
        low, high = int(lengths.min()), int(lengths.max())
        if low < minimum or high > size:
            raise ValueError(f"{name} must lie in [{minimum}, {size}] (the padded size){why}, got min {low}, "
                             f"max {high}")
    return lengths.long()


def length_mask(lengths: torch.Tensor, size: int, device: torch.device | str | None = None) -> torch.Tensor:
    """lengths [B] -> BoolTensor [B, size]: True at the real positions t < lengths[b]."""
    device = lengths.device if device is None else device
    return torch.arange(size, device=device)[None, :] < lengths.to(device)[:, None]


def masked_fill_padding(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """x [B, T, ...] with the positions where mask [B, T] is False set to zero (whatever they held, NaN
    included); gradients flow to the real positions only."""
    mask = mask.reshape(mask.shape + (1,) * (x.dim() - mask.dim()))
    return torch.where(mask, x, x.new_zeros(()))


def reverse_within(x: torch.Tensor, lengths: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """x [B, ..., T (at dim), ...] with the first lengths[b] positions of example b reversed along `dim` and the
    rest (padding) left in place. An involution: reverse_within(reverse_within(x, L), L) == x. Differentiable;
    costs one gather (a copy of x)."""
    dim = dim % x.dim()
    if dim == 0:
        raise ValueError("reverse_within: dim must not be the batch dimension 0")
    moved = x.movedim(dim, 1)
    B, T = moved.shape[0], moved.shape[1]
    t = torch.arange(T, device=x.device)[None, :]
    L = lengths.to(x.device)[:, None]
    source = torch.where(t < L, L - 1 - t, t) + torch.arange(B, device=x.device)[:, None] * T  # [B, T] rows
    out = moved.reshape(B * T, -1).index_select(0, source.reshape(-1)).reshape(moved.shape)
    return out.movedim(1, dim)


__all__ = ["check_lengths", "length_mask", "masked_fill_padding", "reverse_within"]
