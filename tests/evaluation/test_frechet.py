"""The Fréchet distance: 0 for identical sets, |delta|^2 for a shift, the Gaussian closed form, and the textbook
formula through a general matrix square root."""

import numpy as np
import pytest
import torch

from melnet_fast.evaluation import frechet_distance, frechet_from_statistics, gaussian_statistics


def _features(n=200, d=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    mixing = torch.randn(d, d, generator=g, dtype=torch.float64)
    return torch.randn(n, d, generator=g, dtype=torch.float64) @ mixing + 3.0


def test_identical_sets_are_at_distance_zero():
    a = _features()
    assert frechet_distance(a, a) < 1e-9
    assert frechet_distance(a, a[torch.randperm(len(a))]) < 1e-9  # order does not matter


@pytest.mark.parametrize("scale", [0.5, 1.0, 2.0, 4.0])
def test_a_known_shift_adds_its_squared_length(scale):
    a = _features()
    delta = scale * torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0, -1.0, 0.25], dtype=torch.float64)
    assert frechet_distance(a, a + delta) == pytest.approx(float(delta.square().sum()), rel=1e-9)


def test_the_distance_grows_with_the_shift():
    a = _features()
    distances = [frechet_distance(a, a + s) for s in (0.0, 0.1, 0.5, 1.0, 2.0)]
    assert distances[0] < 1e-9 and all(x < y for x, y in zip(distances, distances[1:]))


def test_a_scaled_set_matches_the_gaussian_closed_form():
    """b = s a: C_b = s^2 C_a, so d = |mu_a - s mu_a|^2 + (1 - s)^2 tr C_a."""
    a, s = _features(), 1.7
    mean, cov = gaussian_statistics(a)
    want = float(((1 - s) * mean).square().sum() + (1 - s) ** 2 * cov.trace())
    assert frechet_distance(a, s * a) == pytest.approx(want, rel=1e-9)


def test_agrees_with_the_textbook_formula():
    """tr (C_a C_b)^(1/2) through the eigenvalues of the (non-symmetric) product, as a general sqrtm would."""
    a, b = _features(seed=1), _features(n=150, seed=2) * 0.7 + 1.0
    ma, ca = (t.numpy() for t in gaussian_statistics(a))
    mb, cb = (t.numpy() for t in gaussian_statistics(b))
    cross = np.sqrt(np.clip(np.linalg.eigvals(ca @ cb).real, 0, None)).sum()
    want = np.sum((ma - mb) ** 2) + np.trace(ca) + np.trace(cb) - 2 * cross
    assert frechet_distance(a, b) == pytest.approx(want, rel=1e-8)
    assert frechet_from_statistics(*gaussian_statistics(a), *gaussian_statistics(b)) == frechet_distance(a, b)


@pytest.mark.parametrize("a, b, match", [
    (torch.zeros(1, 3), torch.zeros(4, 3), r"\[N >= 2, D\]"),
    (torch.zeros(4, 3), torch.zeros(4, 2), "the same D"),
    (torch.full((4, 3), float("nan")), torch.zeros(4, 3), "NaN"),
], ids=["one-vector", "dims", "nan"])
def test_bad_input_is_a_clear_error(a, b, match):
    with pytest.raises(ValueError, match=match):
        frechet_distance(a, b)
