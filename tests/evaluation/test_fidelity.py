"""Sample-fidelity measures (melnet_fast.evaluation.fidelity) on spectrograms whose answers are known."""

import math

import pytest
import torch

from melnet_fast.evaluation import channel_moments, rank_correlation, sample_fidelity
from melnet_fast.log_mel_scale import FLOOR


def real_like(n=6, T=40, F=12, seed=0):
    """Spectrograms [n, T, F] with a falling envelope and noise, some values at the log floor."""
    g = torch.Generator().manual_seed(seed)
    envelope = torch.linspace(1.5, 0.0, F, dtype=torch.float64)
    x = envelope + torch.randn(n, T, F, generator=g, dtype=torch.float64)
    return x.clamp(min=FLOOR)


def test_moments_match_torch_over_a_list_of_clips_of_different_lengths():
    a, b = real_like(1, 30)[0], real_like(1, 17, seed=1)[0]
    m = channel_moments([a, b.float()])
    both = torch.cat([a, b.float().double()])
    torch.testing.assert_close(m.mean, both.mean(0))
    torch.testing.assert_close(m.std, both.std(0, unbiased=False))
    assert (m.frames, m.clips) == (47, 2)
    assert m.floor_share == pytest.approx(float((both <= FLOOR + 1e-3).double().mean()))


def test_identical_sets_have_no_gap():
    x = real_like()
    f = sample_fidelity(x, list(x))
    assert f.mean_gap == 0 and f.std_gap == 0 and f.level_difference == 0
    assert f.envelope_rank_correlation == pytest.approx(1.0)
    assert f.generated.floor_share == f.real.floor_share > 0


def test_a_shift_shows_as_the_gap_and_the_level():
    x = real_like()
    f = sample_fidelity(x + 0.4, x)
    assert f.mean_gap == pytest.approx(0.4) and f.level_difference == pytest.approx(0.4)
    assert f.std_gap == pytest.approx(0.0, abs=1e-12)
    assert f.envelope_rank_correlation == pytest.approx(1.0)
    wider = sample_fidelity((x - x.mean((0, 1))) * 2 + x.mean((0, 1)), x)
    assert wider.mean_gap == pytest.approx(0.0, abs=1e-12)
    assert wider.std_gap == pytest.approx(float(x.std((0, 1), unbiased=False).mean()))


def test_an_inverted_envelope_has_negative_rank_correlation():
    x = real_like()
    f = sample_fidelity(x.flip(-1), x)
    assert f.envelope_rank_correlation == pytest.approx(-1.0)
    assert rank_correlation(torch.ones(5), torch.arange(5.0)) == 0.0
    tied = rank_correlation(torch.tensor([0.0, 0.0, 1.0]), torch.tensor([0.0, 1.0, 2.0]))
    assert tied == pytest.approx(math.sqrt(3) / 2)  # ranks (0.5, 0.5, 2) against (0, 1, 2)


def test_floor_share_counts_values_at_the_floor():
    x = torch.full((1, 4, 5), 0.5)
    x[0, :2, :2] = FLOOR
    assert channel_moments(x).floor_share == pytest.approx(4 / 20)


def test_report_as_dict_and_lines():
    x = real_like()
    f = sample_fidelity(x[:2], x[2:])
    d = f.to_dict()
    assert d["mean_gap"] == f.mean_gap and len(d["generated_mean"]) == 12
    assert (d["generated_clips"], d["real_clips"]) == (2, 4)
    assert any("gap" in line for line in f.lines())


@pytest.mark.parametrize("bad, match", [
    (torch.tensor([[math.nan, 0.0]]), "NaN or inf"),
    (torch.zeros(0, 4), "at least one frame"),
    (torch.zeros(2, 3, 4, 5), r"\[T, F\] or \[N, T, F\]"),
])
def test_bad_input_is_a_clear_error(bad, match):
    with pytest.raises(ValueError, match=match):
        channel_moments(bad)


def test_channel_counts_must_agree():
    with pytest.raises(ValueError, match="channels"):
        sample_fidelity(torch.zeros(1, 3, 4), torch.zeros(1, 3, 5))
    with pytest.raises(ValueError, match="channels"):
        channel_moments([torch.zeros(3, 4), torch.zeros(3, 5)])
