"""Sample fidelity: do generated spectrograms have the level, spectral envelope and spread of real ones?

The first things a listener hears are the loudness of each band and how much it moves. These measures compare
generated spectrograms with held-out real ones channel by channel, in normalised log-mel units (the model's own
scale, melnet_fast.log_mel_scale), for any model that makes spectrograms [T, F]:
  - per-channel mean and std over all frames of each set, and their gaps (mean over channels of the absolute
    difference);
  - the rank correlation of the channel means (the shape of the spectral envelope: 1 = same order of loudness);
  - the share of values at the log floor in each set (a model can pile its draws onto the floor).
A per-channel Gaussian gets the first two right by construction; a model that beats it on likelihood should too.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Iterable, List

import torch

from melnet_fast.log_mel_scale import FLOOR

# Values within this distance of FLOOR count as "at the floor": real spectrograms hold it up to float32 rounding of
# the normalisation, samplers keep draws below it exactly at it.
FLOOR_TOLERANCE = 1e-3


def _frames(specs) -> Iterable[torch.Tensor]:
    """Spectrograms [T, F] from a tensor [T, F] or [N, T, F] or an iterable of [T_i, F] tensors."""
    if isinstance(specs, torch.Tensor):
        if specs.dim() not in (2, 3):
            raise ValueError(f"spectrograms must be [T, F] or [N, T, F], got shape {tuple(specs.shape)}")
        yield from (specs.unsqueeze(0) if specs.dim() == 2 else specs)
        return
    for s in specs:
        s = torch.as_tensor(s)
        if s.dim() != 2:
            raise ValueError(f"each spectrogram must be [T, F], got shape {tuple(s.shape)}")
        yield s


@dataclasses.dataclass
class ChannelMoments:
    """mean, std: [F] float64 over every frame of a set of spectrograms; floor_share: the share of its values at
    the log floor; frames: how many frames; clips: how many spectrograms."""

    mean: torch.Tensor
    std: torch.Tensor
    floor_share: float
    frames: int
    clips: int


def channel_moments(specs, floor: float = FLOOR) -> ChannelMoments:
    """Per-channel moments of spectrograms (a tensor [N, T, F] or [T, F], or an iterable of [T_i, F]), accumulated
    in float64 one spectrogram at a time. ValueError on an empty set, differing F, or a value that is not finite."""
    total = total_sq = None
    frames = clips = at_floor = 0
    for s in _frames(specs):
        s = s.detach().to("cpu", torch.float64)
        if not bool(torch.isfinite(s).all()):
            raise ValueError("a spectrogram holds NaN or inf; fidelity is only defined for finite values")
        if total is not None and s.shape[1] != total.numel():
            raise ValueError(f"spectrograms have {total.numel()} and {s.shape[1]} channels; they must agree")
        total = s.sum(0) if total is None else total + s.sum(0)
        total_sq = s.pow(2).sum(0) if total_sq is None else total_sq + s.pow(2).sum(0)
        at_floor += int((s <= floor + FLOOR_TOLERANCE).sum())
        frames += s.shape[0]
        clips += 1
    if not frames:
        raise ValueError("channel_moments needs at least one frame")
    mean = total / frames
    std = (total_sq / frames - mean.pow(2)).clamp(min=0).sqrt()
    return ChannelMoments(mean, std, at_floor / (frames * mean.numel()), frames, clips)


def _ranks(v: torch.Tensor) -> torch.Tensor:
    """Ranks from 0, ties sharing their average rank."""
    v = v.to(torch.float64)
    below = (v.unsqueeze(0) < v.unsqueeze(1)).sum(1)
    equal = (v.unsqueeze(0) == v.unsqueeze(1)).sum(1)
    return below + (equal - 1) / 2


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman's correlation of two [F] vectors (ties share their average rank); 0 when either is constant."""
    ra, rb = _ranks(a), _ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = float(ra.norm() * rb.norm())
    return float((ra * rb).sum()) / denom if denom > 0 else 0.0


@dataclasses.dataclass
class Fidelity:
    """Generated against real spectrograms, in normalised log-mel units (see the module docstring)."""

    generated: ChannelMoments
    real: ChannelMoments

    @property
    def mean_gap(self) -> float:
        """Mean over channels of |generated mean - real mean| (0 = the same spectral envelope and level)."""
        return float((self.generated.mean - self.real.mean).abs().mean())

    @property
    def std_gap(self) -> float:
        """Mean over channels of |generated std - real std|."""
        return float((self.generated.std - self.real.std).abs().mean())

    @property
    def level_difference(self) -> float:
        """Generated minus real mean over all channels (signed: > 0 louder than the data)."""
        return float(self.generated.mean.mean() - self.real.mean.mean())

    @property
    def envelope_rank_correlation(self) -> float:
        """Spearman correlation of the channel means: 1 when the channels are in the data's order of loudness."""
        return rank_correlation(self.generated.mean, self.real.mean)

    def to_dict(self) -> Dict:
        g, r = self.generated, self.real
        return {"mean_gap": self.mean_gap, "std_gap": self.std_gap, "level_difference": self.level_difference,
                "envelope_rank_correlation": self.envelope_rank_correlation,
                "generated_floor_share": g.floor_share, "real_floor_share": r.floor_share,
                "generated_mean": g.mean.tolist(), "real_mean": r.mean.tolist(),
                "generated_std": g.std.tolist(), "real_std": r.std.tolist(),
                "generated_clips": g.clips, "generated_frames": g.frames,
                "real_clips": r.clips, "real_frames": r.frames}

    def lines(self) -> List[str]:
        """The measures as short lines of text, for a terminal."""
        g, r = self.generated, self.real
        return [
            f"level (mean of all channels): generated {float(g.mean.mean()):+.3f}, real {float(r.mean.mean()):+.3f}",
            f"per-channel mean: gap {self.mean_gap:.3f} (mean |generated - real| over {g.mean.numel()} channels), "
            f"envelope rank correlation {self.envelope_rank_correlation:+.2f}",
            f"per-channel std: gap {self.std_gap:.3f} (generated {float(g.std.mean()):.3f}, real "
            f"{float(r.std.mean()):.3f} on average)",
            f"values at the log floor: generated {100 * g.floor_share:.2f}%, real {100 * r.floor_share:.2f}%",
        ]


def sample_fidelity(generated, real) -> Fidelity:
    """Fidelity of `generated` spectrograms against `real` ones: each a tensor [N, T, F] or [T, F], or an iterable
    of [T_i, F] tensors, in normalised log-mel units, with the same F."""
    g, r = channel_moments(generated), channel_moments(real)
    if g.mean.numel() != r.mean.numel():
        raise ValueError(f"generated spectrograms have {g.mean.numel()} channels, real ones {r.mean.numel()}")
    return Fidelity(g, r)


__all__ = ["FLOOR_TOLERANCE", "ChannelMoments", "channel_moments", "rank_correlation", "Fidelity",
           "sample_fidelity"]
