"""cMelGAN's networks: shapes, label conditioning, weight normalisation, input checks, presets."""

import dataclasses

import pytest
import torch
from torch import nn

from melnet_fast.audio import AudioSettings
from melnet_fast.baselines.cmelgan import CMelGAN, CMelGANConfig, parameter_table
from melnet_fast.baselines.cmelgan.config import AUDIO_FIELDS
from melnet_fast.config import MelNetConfig
from tests.baselines.conftest import odd_config, random_gan

CONFIGS = [pytest.param(CMelGANConfig.preset("tiny", n_labels=4), id="tiny-T16-F16"),
           pytest.param(odd_config(), id="odd-T20-F12"),
           pytest.param(odd_config(n_labels=1, up_strides=((1, 3), (5, 2))), id="odd-one-label-T20-F12")]


@pytest.mark.parametrize("config", CONFIGS)
def test_shapes(config):
    model = random_gan(config)
    B = 3
    labels = torch.arange(B) % config.n_labels
    x = model.generate(torch.randn(B, config.noise_dim), labels)
    assert x.shape == (B, config.frames, config.n_mels) and torch.isfinite(x).all()
    scores = model.score(x.detach(), labels)
    assert scores.shape == (B,) and torch.isfinite(scores).all()
    clips = model.sample(2, 3 * config.frames, labels[:2], generator=torch.Generator().manual_seed(0))
    assert clips.shape == (2, 3 * config.frames, config.n_mels)


@pytest.mark.parametrize("network", ["generator", "discriminator"])
def test_label_conditioning_reaches_only_the_given_labels(network):
    """The gradient of the output reaches the embedding rows of the labels used, and no other row."""
    config = odd_config(n_labels=5)
    model = random_gan(config)
    labels = torch.tensor([3, 1, 3])
    if network == "generator":
        out = model.generate(torch.randn(3, config.noise_dim), labels)
    else:
        out = model.score(torch.randn(3, config.frames, config.n_mels), labels)
    out.square().sum().backward()
    grad = getattr(model, network).embedding.weight.grad
    used = grad.abs().sum(1) > 0
    assert used.tolist() == [False, True, False, True, False]


def test_a_label_changes_the_output():
    config = odd_config(n_labels=3)
    model = random_gan(config)
    noise, x = torch.randn(1, config.noise_dim), torch.randn(1, config.frames, config.n_mels)
    generated = [model.generate(noise, torch.tensor([k])) for k in range(3)]
    scores = [model.score(x, torch.tensor([k])) for k in range(3)]
    for k in (1, 2):
        assert not torch.allclose(generated[0], generated[k]) and not torch.allclose(scores[0], scores[k])


def test_every_convolution_is_weight_normalised():
    model = random_gan(odd_config())
    convs = [m for m in model.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.ConvTranspose2d))]
    assert len(convs) > 20
    for conv in convs:
        assert hasattr(conv, "parametrizations") and "weight" in conv.parametrizations, conv


def test_generator_output_depends_on_the_noise():
    """At initialisation the noise must reach the output at the data's scale (std ~0.8): the default
    initialisation of deep convolution stacks shrinks it by orders of magnitude."""
    model = random_gan(CMelGANConfig.preset("demo", n_labels=4))
    x = model.sample(8, cond=torch.zeros(8, dtype=torch.long), generator=torch.Generator().manual_seed(1))
    assert 0.3 < float(x.std()) < 3 and float(x.std(0).mean()) > 0.1


def test_non_contiguous_inputs_give_the_same_scores():
    config = odd_config()
    model = random_gan(config)
    big = torch.randn(3, config.frames, 2 * config.n_mels)
    x = big[:, :, ::2]
    assert not x.is_contiguous()
    labels = torch.tensor([2, 0, 1])
    assert torch.equal(model.score(x, labels), model.score(x.contiguous(), labels))


def test_sampling_is_seeded_and_temperature_scales_the_noise():
    config = odd_config()
    model = random_gan(config)
    labels = torch.tensor([0, 0, 1])
    a = model.sample(3, None, labels, 1.0, torch.Generator().manual_seed(5))
    b = model.sample(3, None, labels, 1.0, torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and not torch.equal(a[0], a[1])
    noise = torch.randn(3, config.noise_dim, generator=torch.Generator().manual_seed(5))
    half = model.sample(3, None, labels, 0.5, torch.Generator().manual_seed(5))
    torch.testing.assert_close(half, model.generate(0.5 * noise, labels), rtol=0, atol=0)
    cold = model.sample(3, None, labels, 0.0, torch.Generator().manual_seed(5))
    assert torch.equal(cold[0], cold[1]) and torch.equal(cold[0], cold[2])  # the label multiplies the noise


@pytest.mark.parametrize("call, match", [
    (lambda m, c: m.score(torch.randn(2, c.frames + 1, c.n_mels), torch.tensor([0, 1])), r"\[B, T=20, F=12\]"),
    (lambda m, c: m.score(torch.full((1, c.frames, c.n_mels), float("nan")), torch.tensor([0])), "NaN"),
    (lambda m, c: m.score(torch.randn(1, c.frames, c.n_mels), None), "labels is required"),
    (lambda m, c: m.score(torch.randn(1, c.frames, c.n_mels), torch.tensor([3])), r"labels must lie in 0..2"),
    (lambda m, c: m.score(torch.randn(1, c.frames, c.n_mels), torch.tensor([0.0])), "LongTensor"),
    (lambda m, c: m.generate(torch.randn(2, c.noise_dim + 1), torch.tensor([0, 1])), r"noise must have shape"),
    (lambda m, c: m.sample(1, c.frames + 1, torch.tensor([0])), "multiple of the model's clip length"),
    (lambda m, c: m.sample(1, None, torch.tensor([0]), temperature=-1.0), "temperature"),
    (lambda m, c: m.sample(0, None, None), "batch must be a positive int"),
], ids=["shape", "nan", "no-labels", "label-range", "label-dtype", "noise", "frames", "temperature", "batch"])
def test_bad_input_is_a_clear_error(call, match):
    config = odd_config()
    with pytest.raises(ValueError, match=match):
        call(random_gan(config), config)


@pytest.mark.parametrize("changes, match", [
    (dict(frames=21), "multiples of the products"),
    (dict(fine_kernels=(4,)), r"fine_kernels\[0\]=4 must be odd"),
    (dict(d_groups=(3, 2)), r"d_groups\[0\]=3 must divide"),
    (dict(d_kernels=(5,)), "d_kernels must have 2 entries"),
    (dict(up_strides=((5, 3),)), "up_strides must hold one"),
    (dict(up_strides=((1, 1), (20, 12)), frames=20), "needs at least 2 x 2"),
    (dict(n_labels=0), "n_labels must be an int >= 1"),
    (dict(hop_length=0), "hop_length"),
    (dict(betas=(0.5, 1.0)), "betas"),
], ids=["frames", "kernel", "groups", "d-lengths", "strides", "start", "labels", "audio", "betas"])
def test_bad_config_is_a_clear_error(changes, match):
    with pytest.raises(ValueError, match=match):
        odd_config(**changes)


def test_config_round_trips_through_a_dict():
    config = odd_config()
    assert CMelGANConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown CMelGANConfig field"):
        CMelGANConfig.from_dict({**config.to_dict(), "hidden_size": 3})


@pytest.mark.parametrize("name, report", [("small", 15.3e6), ("large", 25.2e6)])
def test_presets_are_near_the_reports_sizes(name, report):
    """Table 1 of the report: 15.3M and 25.2M parameters (generator and discriminator together, 3 genres)."""
    model = CMelGAN(CMelGANConfig.preset(name, n_labels=3))
    assert abs(sum(model.parameter_counts()) / report - 1) < 0.02


def test_parameter_table_lists_every_preset():
    table = parameter_table(("tiny", "demo"))
    assert "tiny" in table and "demo" in table and "32 frames x 32 mels" in table


def test_audio_defaults_are_melnets_and_the_front_ends():
    """CMelGANConfig mirrors the audio fields of MelNetConfig and audio.AudioSettings (a frozen dataclass cannot
    inherit them before its required fields): their defaults stay one fact."""
    def defaults(cls):
        return {f.name: f.default for f in dataclasses.fields(cls) if f.name in AUDIO_FIELDS and f.name != "n_mels"}

    assert len(defaults(CMelGANConfig)) == len(AUDIO_FIELDS) - 1
    assert defaults(CMelGANConfig) == defaults(MelNetConfig) == defaults(AudioSettings)
