"""The reference density every NLL is reported against: an independent Gaussian per mel channel.

p(x) = prod_{i, j} N(x[i, j]; mean[j], std[j]^2), fitted by maximum likelihood on the training spectrograms.
It knows each channel's level and spread but nothing of time or of the other channels, so a model that has
learnt any structure must beat it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Iterable

import torch

from melnet_fast.atomic_files import atomic_write_text

MIN_STD = 1e-3  # a constant channel (e.g. always at the log floor) would otherwise get an infinite density


@dataclasses.dataclass
class ChannelGaussian:
    """mean, std: [F] float64 tensors; frames: how many frames they were fitted on."""

    mean: torch.Tensor
    std: torch.Tensor
    frames: int

    @classmethod
    def fit(cls, spectrograms: Iterable[torch.Tensor]) -> ChannelGaussian:
        """Maximum-likelihood fit on spectrograms [T_i, F] (all frames pooled), accumulated in float64.
        ValueError when one holds NaN or inf (one such value would make every statistic NaN)."""
        total = total_sq = None
        frames = 0
        for k, spec in enumerate(spectrograms):
            s = torch.as_tensor(spec).detach().to("cpu", torch.float64)
            if s.dim() != 2:
                raise ValueError(f"spectrograms must be [T, F], got shape {tuple(s.shape)}")
            if not bool(torch.isfinite(s).all()):
                raise ValueError(f"spectrogram {k} holds NaN or inf: the baseline is fitted on finite data only")
            total = s.sum(0) if total is None else total + s.sum(0)
            total_sq = s.pow(2).sum(0) if total_sq is None else total_sq + s.pow(2).sum(0)
            frames += s.shape[0]
        if not frames:
            raise ValueError("ChannelGaussian.fit needs at least one frame")
        mean = total / frames
        var = (total_sq / frames - mean.pow(2)).clamp(min=0)
        return cls(mean, var.sqrt().clamp(min=MIN_STD), frames)

    @property
    def n_mels(self) -> int:
        return self.mean.numel()

    def nll(self, x: torch.Tensor) -> torch.Tensor:
        """x [..., F] -> [..., F]: -log N(x; mean, std^2) per element, in nats (float32 on x's device)."""
        if x.shape[-1] != self.n_mels:
            raise ValueError(f"x has {x.shape[-1]} channels, the baseline was fitted on {self.n_mels}")
        mean, std = self.mean.to(x.device), self.std.to(x.device)
        z = (x.to(torch.float64) - mean) / std
        return (0.5 * z.pow(2) + std.log() + 0.5 * math.log(2 * math.pi)).to(torch.float32)

    def save(self, path: str | os.PathLike) -> None:
        doc = {"kind": "independent Gaussian per mel channel", "frames": self.frames,
               "mean": self.mean.tolist(), "std": self.std.tolist()}
        atomic_write_text(path, json.dumps(doc) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> ChannelGaussian:
        try:
            with open(path) as f:
                doc = json.load(f)
            mean = torch.tensor(doc["mean"], dtype=torch.float64)
            std = torch.tensor(doc["std"], dtype=torch.float64)
            frames = int(doc["frames"])
        except FileNotFoundError:
            raise
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{os.fspath(path)} is not a baseline file: {e}") from None
        if not (bool(torch.isfinite(mean).all()) and bool((torch.isfinite(std) & (std > 0)).all())):
            raise ValueError(f"{os.fspath(path)} holds NaN, inf or non-positive values (fitted on bad data?)")
        return cls(mean, std, frames)
