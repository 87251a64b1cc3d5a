"""MelNetConfig: presets (paper, Table 2), validation, serialisation, parameter counts."""

import json

import pytest
import torch

from melnet_fast import MelNet, MelNetConfig
from melnet_fast.config import PRESETS, parameter_table

PAPER = {  # Appendix A, Table 2
    "blizzard": dict(n_tiers=6, layers=(12, 5, 4, 3, 2, 2), batch_size=32, sample_rate=22050, max_seconds=10,
                     n_mels=256, hop_length=256),
    "maestro": dict(n_tiers=4, layers=(16, 6, 5, 4), batch_size=16, sample_rate=22050, max_seconds=6,
                    n_mels=256, hop_length=256),
    "voxceleb2": dict(n_tiers=5, layers=(16, 6, 5, 4, 3), batch_size=128, sample_rate=16000, max_seconds=6,
                      n_mels=180, hop_length=180),
}


@pytest.mark.parametrize("name", list(PAPER))
def test_paper_presets(name):
    c = MelNetConfig.preset(name)
    for field, value in PAPER[name].items():
        assert getattr(c, field) == value, field
    assert c.hidden_size == 512 and c.n_mixtures == 10
    assert c.n_fft == c.win_length == 6 * c.hop_length
    assert (c.learning_rate, c.momentum) == (1e-4, 0.9)


@pytest.mark.parametrize("name", list(PAPER))
def test_paper_presets_build_with_the_paper_layer_counts(name):
    c = MelNetConfig.preset(name)
    with torch.device("meta"):
        model = MelNet(c)
    assert [len(t.network.time_layers) for t in model.tiers] == list(c.layers)
    assert [len(t.network.freq_layers) for t in model.tiers] == list(c.layers)
    assert all(t.network.x_time_proj.weight.shape == (512, 1) for t in model.tiers)
    assert model.parameter_counts() == c.parameter_counts()


@pytest.mark.parametrize("overrides", [
    pytest.param({}, id="tiny"),
    pytest.param({"n_speakers": 5, "speaker_dim": 3}, id="speakers"),
    pytest.param({"cond_dim": 2, "n_tiers": 4, "layers": (1, 2, 1, 1)}, id="features-4-tiers"),
    pytest.param({"n_tiers": 1, "layers": (2,)}, id="one-tier"),
])
def test_parameter_counts_match_built_model(overrides):
    c = MelNetConfig.preset("tiny", **overrides)
    model = MelNet(c)
    assert model.parameter_counts() == c.parameter_counts()
    assert sum(c.parameter_counts()) == sum(p.numel() for p in model.parameters())


def test_small_presets_sizes():
    tiny, small = MelNetConfig.preset("tiny"), MelNetConfig.preset("small")
    assert tiny.n_tiers >= 3 and sum(tiny.parameter_counts()) < 20_000
    assert small.hidden_size == 64 and small.layers[0] == 4 and small.n_mixtures == 5
    assert "blizzard" in parameter_table() and len(parameter_table(PRESETS).splitlines()) == len(PRESETS) + 1


@pytest.mark.parametrize("name", PRESETS)
def test_dict_and_json_round_trip(name):
    c = MelNetConfig.preset(name)
    assert MelNetConfig.from_dict(c.to_dict()) == c
    assert MelNetConfig.from_json(c.to_json()) == c
    assert json.loads(c.to_json())["layers"] == list(c.layers)


@pytest.mark.parametrize("overrides,field", [
    pytest.param({"hidden_size": 0}, "hidden_size", id="hidden0"),
    pytest.param({"hidden_size": 8.0}, "hidden_size", id="hidden-float"),
    pytest.param({"n_tiers": 0, "layers": ()}, "n_tiers", id="tiers0"),
    pytest.param({"layers": (2, 1)}, "layers", id="layers-length"),
    pytest.param({"layers": (2, 0, 1)}, r"layers\[1\]", id="layers-zero"),
    pytest.param({"n_mixtures": -1}, "n_mixtures", id="mixtures"),
    pytest.param({"feature_layers": 0}, "feature_layers", id="feature-layers"),
    pytest.param({"n_mels": 15}, "n_mels", id="mels-not-divisible"),
    pytest.param({"n_mels": 0}, "n_mels", id="mels0"),
    pytest.param({"n_speakers": -2}, "n_speakers", id="speakers"),
    pytest.param({"n_speakers": 3, "speaker_dim": 0}, "speaker_dim", id="speaker-dim"),
    pytest.param({"cond_dim": -1}, "cond_dim", id="cond-dim"),
    pytest.param({"sample_rate": 0}, "sample_rate", id="sample-rate"),
    pytest.param({"hop_length": -5}, "hop_length", id="hop"),
    pytest.param({"win_length": 10_000}, "win_length", id="win-gt-nfft"),
    pytest.param({"f_max": 5000.0}, "f_max", id="fmax-above-nyquist"),
    pytest.param({"f_min": float("nan")}, "f_min", id="fmin-nan"),
    pytest.param({"max_seconds": 0}, "max_seconds", id="max-seconds"),
    pytest.param({"batch_size": True}, "batch_size", id="batch-bool"),
    pytest.param({"momentum": 1.0}, "momentum", id="momentum"),
])
def test_invalid_config_names_the_field(overrides, field):
    with pytest.raises(ValueError, match=field):
        MelNetConfig.preset("tiny", **overrides)


def test_unknown_names():
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        MelNetConfig.preset("huge")
    with pytest.raises(ValueError, match=r"unknown MelNetConfig field\(s\) \['hiden_size'\]"):
        MelNetConfig.from_dict({**MelNetConfig.preset("tiny").to_dict(), "hiden_size": 3})
    with pytest.raises(ValueError, match="does not parse"):
        MelNetConfig.from_json("{not json")


def test_derived_sizes():
    c = MelNetConfig.preset("blizzard")
    assert c.max_frames == 860  # 10 s * 22050 / 256 = 861.3 frames, down to a multiple of 4
    assert [c.conditioning_dim(g) for g in (1, 2)] == [0, 512]
    s = MelNetConfig.preset("tiny", n_speakers=4, speaker_dim=3, cond_dim=2)
    assert [s.conditioning_dim(g) for g in (1, 2, 3)] == [5, 9, 9]  # hidden 4 + speaker 3 + features 2
    with pytest.raises(ValueError, match="tier must be an int in 1..3"):
        s.conditioning_dim(0)
