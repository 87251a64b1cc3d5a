"""The multiscale partition of a spectrogram into tiers (paper, section 5): split, interleave and the orders.

With G tiers: x^G, x^<G = split(x, axis(G)); then x^g, x^<g = split(x^<g+1, axis(g)) down to x^1 = x^<2.
axis(g) is frequency for even g and time for odd g (Figure 5: tiers 1 and 2 interleave along frequency,
tier 3 with them along time). Every function takes the positions of the time and frequency dimensions, so the
same recursion splits spectrograms [B, T, F], mixture parameters [B, T, F, K] and features [B, T, F, C].
"""

from __future__ import annotations

from typing import List, Tuple

import torch


def split(x: torch.Tensor, axis: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """(even rows, odd rows) of x along dimension `axis` (views, no copy)."""
    even = [slice(None)] * x.dim()
    odd = [slice(None)] * x.dim()
    even[axis] = slice(0, None, 2)
    odd[axis] = slice(1, None, 2)
    return x[tuple(even)], x[tuple(odd)]


def interleave(even: torch.Tensor, odd: torch.Tensor, axis: int) -> torch.Tensor:
    """Inverse of split: rows of `even` at even positions of dimension `axis`, rows of `odd` at odd ones.

    even and odd agree on every other dimension; along `axis` even has as many rows as odd or one more.
    """
    axis = axis % even.dim()
    n_even, n_odd = even.shape[axis], odd.shape[axis]
    rest_even = even.shape[:axis] + even.shape[axis + 1:]
    rest_odd = odd.shape[:axis] + odd.shape[axis + 1:]
    if rest_even != rest_odd or n_even - n_odd not in (0, 1):
        raise ValueError(f"interleave: shapes {tuple(even.shape)} and {tuple(odd.shape)} do not come from one "
                         f"split along dimension {axis}")
    if n_even == n_odd:  # the common case: one copy
        return torch.stack([even, odd], dim=axis + 1).flatten(axis, axis + 1)
    shape = list(even.shape)
    shape[axis] = n_even + n_odd
    out = even.new_empty(shape)
    out_even, out_odd = split(out, axis)
    out_even.copy_(even)
    out_odd.copy_(odd)
    return out


def tier_axis(g: int) -> str:
    """The axis along which tier g (>= 2) is split off from x^<g+1: "frequency" for even g, "time" for odd g."""
    if g < 2:
        raise ValueError(f"tier {g} is not split off (tier 1 is what remains of the recursion)")
    return "frequency" if g % 2 == 0 else "time"


def split_counts(n_tiers: int) -> Tuple[int, int]:
    """(splits along time, splits along frequency) made by the recursion over n_tiers tiers."""
    return (n_tiers - 1) // 2, n_tiers // 2


def check_divisible(T: int, F: int, n_tiers: int) -> None:
    """ValueError unless T and F survive the recursion: T % 2**time_splits == 0 and F % 2**freq_splits == 0."""
    time_splits, freq_splits = split_counts(n_tiers)
    for name, size, splits, axis in (("T", T, time_splits, "time"), ("F", F, freq_splits, "frequency")):
        if size % (2 ** splits):
            raise ValueError(f"{name}={size} must be divisible by {2 ** splits}: {n_tiers} tiers split the "
                             f"{axis} axis in two {splits} times (pad or crop the spectrogram)")


def _dim(axis: str, time_dim: int, freq_dim: int) -> int:
    return freq_dim if axis == "frequency" else time_dim


def split_tiers(x: torch.Tensor, n_tiers: int, time_dim: int = 1, freq_dim: int = 2
                ) -> Tuple[List[torch.Tensor], List[torch.Tensor | None]]:
    """Partition x into its tiers.

    Returns (tiers, contexts): tiers[g-1] = x^g and contexts[g-1] = x^<g (None for g = 1), for g = 1..n_tiers.
    x^g and x^<g have the same shape. Sizes are checked by the caller (see check_divisible).
    """
    tiers: List[torch.Tensor | None] = [None] * n_tiers
    contexts: List[torch.Tensor | None] = [None] * n_tiers
    rest = x
    for g in range(n_tiers, 1, -1):
        tiers[g - 1], rest = split(rest, _dim(tier_axis(g), time_dim, freq_dim))
        contexts[g - 1] = rest
    tiers[0] = rest
    return tiers, contexts


def merge_tiers(tiers: List[torch.Tensor], time_dim: int = 1, freq_dim: int = 2) -> torch.Tensor:
    """Inverse of split_tiers: x^<g+1 = interleave(x^g, x^<g, axis(g)) for g = 2..G, from x^<2 = x^1."""
    out = tiers[0]
    for g in range(2, len(tiers) + 1):
        out = interleave(tiers[g - 1], out, _dim(tier_axis(g), time_dim, freq_dim))
    return out


def _divisors(n_tiers: int) -> List[Tuple[int, int]]:
    """[(d_t, d_f) for g = 1..n_tiers]: tier g's grid is (T // d_t, F // d_f) of a [T, F] spectrogram."""
    out: List[Tuple[int, int]] = [(1, 1)] * n_tiers
    d_t = d_f = 1
    for g in range(n_tiers, 1, -1):
        if tier_axis(g) == "time":
            d_t *= 2
        else:
            d_f *= 2
        out[g - 1] = (d_t, d_f)
    out[0] = (d_t, d_f)
    return out


def tier_shapes(T: int, F: int, n_tiers: int) -> List[Tuple[int, int]]:
    """[(T_g, F_g) for g = 1..n_tiers]: the grid of each tier of a [T, F] spectrogram."""
    check_divisible(T, F, n_tiers)
    return [(T // d_t, F // d_f) for d_t, d_f in _divisors(n_tiers)]


def crop_lengths(lengths: torch.Tensor, n_tiers: int) -> torch.Tensor:
    """Lengths in frames [B] rounded down to a multiple of the time factor 2 ** (splits along time).

    A variable-length example is cropped, not padded, per tier: the frames past its last whole multiple count
    as padding in every tier, so each tier's real frames have their whole context in the coarser tiers.
    """
    factor = 2 ** split_counts(n_tiers)[0]
    return lengths - lengths % factor


def tier_lengths(lengths: torch.Tensor, n_tiers: int) -> List[torch.Tensor]:
    """[real frames of tier g, LongTensor [B], for g = 1..n_tiers] of full-resolution lengths [B] (cropped
    first, see crop_lengths); tier g's context x^<g has the same lengths as x^g."""
    cropped = crop_lengths(lengths, n_tiers)
    return [cropped // d_t for d_t, _ in _divisors(n_tiers)]


def tier_index(T: int, F: int, n_tiers: int) -> torch.Tensor:
    """LongTensor [T, F]: the tier (1 = initial) that models each full-resolution position."""
    check_divisible(T, F, n_tiers)
    grid = torch.zeros(T, F, dtype=torch.long)
    tiers, _ = split_tiers(grid, n_tiers, time_dim=0, freq_dim=1)
    for g, t in enumerate(tiers, start=1):
        t.fill_(g)  # views into grid
    return grid


def generation_order(T: int, F: int, n_tiers: int) -> torch.Tensor:
    """LongTensor [T, F]: the rank of each position in the autoregressive order (0 = generated first).

    Tier by tier from tier 1; inside a tier row-major over that tier's own grid (frame by frame, and inside a
    frame from low to high frequency).
    """
    check_divisible(T, F, n_tiers)
    grid = torch.zeros(T, F, dtype=torch.long)
    tiers, _ = split_tiers(grid, n_tiers, time_dim=0, freq_dim=1)
    start = 0
    for t in tiers:
        n = t.numel()
        t.copy_(torch.arange(start, start + n).view(t.shape))
        start += n
    return grid
