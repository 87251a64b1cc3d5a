"""Bad inputs to MelNet raise ValueError naming the cause and what would be valid."""

import pytest
import torch

from melnet_fast import MelNet
from tests.model.helpers import random_spectrogram, tiny_config

F = 16


@pytest.fixture(scope="module")
def plain():
    return MelNet(tiny_config()).double()


@pytest.fixture(scope="module")
def conditioned():
    return MelNet(tiny_config(n_speakers=3, speaker_dim=2, cond_dim=2)).double()


def x_with(value):
    x = random_spectrogram(2, 4, F)
    x[1, 2, 3] = value
    return x


@pytest.mark.parametrize("x,msg", [
    pytest.param(torch.zeros(4, F, dtype=torch.float64), r"\[B, T, F=16\]", id="rank2"),
    pytest.param(torch.zeros(1, 2, 4, F, dtype=torch.float64), r"\[B, T, F=16\]", id="rank4"),
    pytest.param([[0.0]], r"\[B, T, F=16\]", id="not-a-tensor"),
    pytest.param(torch.zeros(2, 4, 8, dtype=torch.float64), r"F=8 channels but the model has n_mels=16", id="F"),
    pytest.param(torch.zeros(2, 5, F, dtype=torch.float64), r"T=5 frames; T must be a multiple of 2", id="T"),
    pytest.param(torch.zeros(2, 0, F, dtype=torch.float64), r"T >= 1", id="T0"),
    pytest.param(x_with(float("nan")), "NaN or inf", id="nan"),
    pytest.param(x_with(float("inf")), "NaN or inf", id="inf"),
    pytest.param(torch.zeros(2, 4, F, dtype=torch.float32), "float32 .* but the model is torch.float64", id="dtype"),
])
def test_bad_x(plain, x, msg):
    for call in (plain, plain.log_prob, plain.loss):
        with pytest.raises(ValueError, match=msg):
            call(x)


def test_bad_tiers(plain):
    x = random_spectrogram(2, 4, F)
    for tiers in ([0], [4], [], ["1"]):
        with pytest.raises(ValueError, match=r"tier numbers in 1..3"):
            plain.loss(x, tiers=tiers)


def cond_cases():
    ids = torch.tensor([0, 2])
    feats = torch.zeros(2, 4, F, 2, dtype=torch.float64)
    return [
        pytest.param(None, "conditioned on speakers", id="missing-speaker"),
        pytest.param(feats, "conditioned on speakers", id="features-only"),
        pytest.param(ids, "conditioned on features", id="speaker-only"),
        pytest.param({"speaker": ids, "features": feats, "pitch": ids}, r"unknown key\(s\) \['pitch'\]", id="key"),
        pytest.param({"speaker": torch.tensor([0, 3]), "features": feats}, r"in \[0, 3\), got min 0, max 3",
                     id="id-too-large"),
        pytest.param({"speaker": torch.tensor([-1, 0]), "features": feats}, r"in \[0, 3\)", id="id-negative"),
        pytest.param({"speaker": torch.tensor([0]), "features": feats}, r"shape \[2\]", id="ids-batch"),
        pytest.param({"speaker": torch.tensor([0.0, 1.0]), "features": feats}, "must be an integer tensor",
                     id="ids-float"),
        pytest.param({"speaker": ids, "features": feats[..., :1]}, r"\[B, T, F, cond_dim\] = \[2, 4, 16, 2\]",
                     id="features-shape"),
        pytest.param({"speaker": ids, "features": feats.float()}, "features are torch.float32", id="features-dtype"),
        pytest.param({"speaker": ids, "features": feats + float("nan")}, "features hold NaN", id="features-nan"),
        pytest.param("speaker 1", "cond must be None", id="cond-type"),
    ]


@pytest.mark.parametrize("cond,msg", cond_cases())
def test_bad_cond(conditioned, cond, msg):
    x = random_spectrogram(2, 4, F)
    with pytest.raises(ValueError, match=msg):
        conditioned.log_prob(x, cond)
    with pytest.raises(ValueError, match=msg):
        conditioned.sample(2, 4, cond)


@pytest.mark.parametrize("cond,msg", [
    pytest.param(torch.tensor([0, 1]), "n_speakers=0", id="speaker"),
    pytest.param(torch.zeros(2, 4, F, 2, dtype=torch.float64), "cond_dim=0", id="features"),
])
def test_cond_given_to_unconditioned_model(plain, cond, msg):
    with pytest.raises(ValueError, match=msg):
        plain.log_prob(random_spectrogram(2, 4, F), cond)


@pytest.mark.parametrize("kwargs,msg", [
    pytest.param(dict(batch=0, frames=4), "batch must be a positive int", id="batch"),
    pytest.param(dict(batch=1, frames=3), "frames=3 must be a multiple of 2", id="frames"),
    pytest.param(dict(batch=1, frames=4, temperature=-0.5), "temperature", id="temperature"),
    pytest.param(dict(batch=1, frames=4, temperature=float("nan")), "temperature", id="temperature-nan"),
    pytest.param(dict(batch=1, frames=4, prime=torch.zeros(1, 3, F, dtype=torch.float64)),
                 "P=3 frames; P must be a multiple of 2", id="prime-odd"),
    pytest.param(dict(batch=1, frames=4, prime=torch.zeros(1, 6, F, dtype=torch.float64)),
                 "more than frames=4", id="prime-long"),
    pytest.param(dict(batch=1, frames=4, prime=torch.zeros(2, 2, F, dtype=torch.float64)),
                 r"\[batch=1, P, n_mels=16\]", id="prime-batch"),
    pytest.param(dict(batch=1, frames=4, prime=torch.full((1, 2, F), float("nan"), dtype=torch.float64)),
                 "prime holds NaN", id="prime-nan"),
])
def test_bad_sample_arguments(plain, kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        plain.sample(**kwargs)


def test_bad_config_type():
    with pytest.raises(ValueError, match="config must be a MelNetConfig"):
        MelNet({"n_tiers": 3})
