"""The Fréchet distance between two sets of feature vectors, each summarised by a Gaussian (as in FID):

    d^2 = |mu_a - mu_b|^2 + tr(C_a + C_b - 2 (C_a C_b)^(1/2)).

It is 0 for identical sets, |delta|^2 for a set shifted by delta, and D (1 - s)^2 for N(0, I_D) against
N(0, s^2 I_D). Computed in float64; tr (C_a C_b)^(1/2) is the sum of the square roots of the eigenvalues of the
symmetric C_a^(1/2) C_b C_a^(1/2) (no general matrix square root, so no complex round-off). Small sets give a
biased, noisy estimate: compare distances computed with the same number of vectors.
"""

from __future__ import annotations

from typing import Tuple

import torch


def gaussian_statistics(features: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """features [N, D] (N >= 2, finite) -> (mean [D], covariance [D, D]) in float64 (unbiased covariance)."""
    if not isinstance(features, torch.Tensor) or features.dim() != 2 or features.shape[0] < 2:
        got = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
        raise ValueError(f"features must be a tensor [N >= 2, D], got {got}")
    x = features.detach().to("cpu", torch.float64)
    if not bool(torch.isfinite(x).all()):
        raise ValueError("features hold NaN or inf")
    mean = x.mean(0)
    centred = x - mean
    return mean, centred.T @ centred / (x.shape[0] - 1)


def _psd_sqrt(c: torch.Tensor) -> torch.Tensor:
    values, vectors = torch.linalg.eigh(c)
    return (vectors * values.clamp(min=0).sqrt()) @ vectors.T


def frechet_from_statistics(mean_a: torch.Tensor, cov_a: torch.Tensor, mean_b: torch.Tensor,
                            cov_b: torch.Tensor) -> float:
    """The Fréchet distance (squared, as FID reports it) between N(mean_a, cov_a) and N(mean_b, cov_b)."""
    if mean_a.shape != mean_b.shape or cov_a.shape != cov_b.shape or cov_a.shape != (len(mean_a),) * 2:
        raise ValueError(f"statistics of different sizes: means {tuple(mean_a.shape)}, {tuple(mean_b.shape)}, "
                         f"covariances {tuple(cov_a.shape)}, {tuple(cov_b.shape)}")
    ca, cb = (c.to(torch.float64) for c in (cov_a, cov_b))
    root_a = _psd_sqrt((ca + ca.T) / 2)
    middle = root_a @ cb @ root_a
    cross = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0).sqrt().sum()
    d = (mean_a.to(torch.float64) - mean_b.to(torch.float64)).pow(2).sum() + ca.trace() + cb.trace() - 2 * cross
    return max(float(d), 0.0)  # round-off can take a distance of 0 a hair below


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """The Fréchet distance between feature sets a [N, D] and b [M, D] (N, M >= 2)."""
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"a and b must be [N, D] and [M, D] with the same D, got {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")
    return frechet_from_statistics(*gaussian_statistics(a), *gaussian_statistics(b))
