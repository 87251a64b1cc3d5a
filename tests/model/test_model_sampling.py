"""Sampling with cached state (ops.sample_tier) against recomputation of the whole model per element, across
backends, with priming."""

import pytest
import torch

import melnet_fast
from melnet_fast import DivergentSampleWarning, MelNet, MelNetConfig
from melnet_fast.log_mel_scale import SAMPLE_RANGE
from melnet_fast.multiscale import split_tiers
from melnet_fast.ops.gmm.reference import draw_noise, gmm_sample_from_noise, keep_in_range
from tests.model.helpers import BACKENDS, random_cond, random_model, random_spectrogram, tiny_config

CONFIGS = {
    "3tiers": dict(n_tiers=3, layers=(2, 1, 2), n_mels=8),
    "4tiers-speaker-features": dict(n_tiers=4, layers=(1, 2, 1, 1), n_mels=8, n_speakers=3, speaker_dim=2,
                                    cond_dim=2),
}


def recomputed_sample(model, batch, frames, cond=None, temperature=1.0, prime=None, generator=None):
    """The definition of ancestral sampling: element by element in the generation order, run the whole model
    on the partly generated spectrogram and draw from the mixture at that element, with the noise model.sample
    draws (draw_noise per tier, in tier order), kept in the sampler's value range. Returns (x, log density of the
    drawn elements [batch])."""
    c = model.config
    F = c.n_mels
    x = torch.zeros(batch, frames, F, dtype=torch.float64)
    P = 0 if prime is None else prime.shape[1]
    if P:
        x[:, :P] = prime
    position = torch.arange(frames * F).view(1, frames, F)
    log_density = torch.zeros(batch, dtype=torch.float64)
    for pos in split_tiers(position, c.n_tiers)[0]:
        pos = pos[0]
        Tg, Fg = pos.shape
        u, eps = draw_noise((batch, Tg, Fg), x.device, x.dtype, generator)
        n_prime = P * Tg // frames
        for i in range(n_prime, Tg):
            for j in range(Fg):
                ti, fj = divmod(int(pos[i, j]), F)
                mu, log_sigma, logit_pi = (p[:, ti, fj] for p in model(x, cond))
                value = gmm_sample_from_noise(mu, log_sigma, logit_pi, temperature, u[:, i, j], eps[:, i, j])
                x[:, ti, fj] = keep_in_range(value, *SAMPLE_RANGE)
                log_density += model.log_prob(x, cond)[:, ti, fj]  # depends only on x up to (ti, fj)
    return x, log_density


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("temperature", [0.0, 1.0, 0.7])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_sample_equals_recomputation_per_element(name, temperature, backend):
    config = tiny_config(**CONFIGS[name])
    model = random_model(config)
    batch, frames = 2, 4
    cond = random_cond(config, batch, frames)
    with torch.no_grad():
        want, want_ld = recomputed_sample(model, batch, frames, cond, temperature,
                                     generator=torch.Generator().manual_seed(3))
    with melnet_fast.use_backend(backend):
        got, got_ld = model.sample(batch, frames, cond, temperature, generator=torch.Generator().manual_seed(3),
                                   return_log_prob=True)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(got_ld, want_ld)


@pytest.mark.parametrize("backend", BACKENDS)
def test_primed_sample_equals_recomputation_per_element(backend):
    config = tiny_config(**CONFIGS["3tiers"])
    model = random_model(config)
    batch, frames, P = 2, 8, 4
    prime = random_spectrogram(batch, P, config.n_mels, seed=5)
    with torch.no_grad():
        want, want_ld = recomputed_sample(model, batch, frames, prime=prime, generator=torch.Generator().manual_seed(4))
    with melnet_fast.use_backend(backend):
        got, got_ld = model.sample(batch, frames, prime=prime, generator=torch.Generator().manual_seed(4),
                                   return_log_prob=True)
    assert torch.equal(got[:, :P], prime)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(got_ld, want_ld)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_backends_agree(dtype):
    config = tiny_config()
    model = random_model(config, dtype=dtype)
    out = {}
    for backend in BACKENDS:
        with melnet_fast.use_backend(backend):
            out[backend] = model.sample(2, 8, generator=torch.Generator().manual_seed(11), return_log_prob=True)
    torch.testing.assert_close(out["cpu"][0], out["reference"][0])
    torch.testing.assert_close(out["cpu"][1], out["reference"][1])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("primed", [False, True], ids=["unprimed", "primed"])
def test_log_prob_of_sample_equals_accumulated_density(backend, primed):
    config = tiny_config()
    model = random_model(config)
    batch, frames, P = 2, 8, (4 if primed else 0)
    prime = random_spectrogram(batch, P, config.n_mels, seed=2) if primed else None
    with melnet_fast.use_backend(backend):
        x, log_density = model.sample(batch, frames, temperature=1.0, prime=prime,
                                      generator=torch.Generator().manual_seed(0), return_log_prob=True)
        log_prob = model.log_prob(x)
    drawn = torch.ones(frames, config.n_mels, dtype=torch.bool)
    drawn[:P] = False
    torch.testing.assert_close(log_prob[:, drawn].sum(-1), log_density)
    if primed:
        assert torch.equal(x[:, :P], prime)


def test_generator_controls_the_draws():
    model = random_model(tiny_config())
    a = model.sample(1, 4, generator=torch.Generator().manual_seed(1))
    b = model.sample(1, 4, generator=torch.Generator().manual_seed(1))
    c = model.sample(1, 4, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == (1, 4, 16) and torch.isfinite(a).all()


def test_temperature_zero_is_the_mode_of_the_mixtures():
    """At tau = 0 every element is the mean of its most probable component under model(x), kept in the value
    range: a fixed point."""
    model = random_model(tiny_config())
    x = model.sample(2, 4, temperature=0.0, generator=torch.Generator().manual_seed(0))
    mu, _, logit_pi = model(x)
    mode = mu.gather(-1, logit_pi.argmax(-1, keepdim=True)).squeeze(-1)
    torch.testing.assert_close(x, keep_in_range(mode, *SAMPLE_RANGE))


def test_prime_of_all_frames_draws_nothing():
    config = tiny_config()
    model = random_model(config)
    prime = random_spectrogram(1, 4, config.n_mels)
    x, ld = model.sample(1, 4, prime=prime, generator=torch.Generator().manual_seed(0), return_log_prob=True)
    assert torch.equal(x, prime) and torch.equal(ld, torch.zeros(1, dtype=ld.dtype))


@pytest.mark.parametrize("preset", ["tiny", "small"])
@pytest.mark.filterwarnings("ignore::melnet_fast.DivergentSampleWarning")  # an untrained model may run away
def test_untrained_model_samples_stay_finite(preset):
    # The drawn values feed the next channel's input; with a full-scale initial head they ran away to inf.
    torch.manual_seed(0)
    model = MelNet(MelNetConfig.preset(preset))
    x = model.sample(2, 32, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(x).all()


def diverging_model(config, scale=50.0):
    """A model whose drawn values run away: its heads scaled up (each draw feeds the next element's input)."""
    model = random_model(config)
    with torch.no_grad():
        for tier in model.tiers:
            tier.network.head.weight.mul_(scale)
            tier.network.head.bias.mul_(scale)
    return model


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("temperature", [0.0, 1.0, 5.0])
def test_diverging_model_gives_finite_samples_and_a_warning(backend, temperature):
    model = diverging_model(tiny_config())
    with melnet_fast.use_backend(backend), pytest.warns(DivergentSampleWarning, match=r"ran away above x_max"):
        x, log_density = model.sample(2, 8, temperature=temperature, generator=torch.Generator().manual_seed(0),
                                      return_log_prob=True)
    lo, hi = SAMPLE_RANGE
    assert torch.isfinite(x).all() and x.min() >= lo and x.max() <= hi
    assert not torch.isnan(log_density).any()


def test_value_range_is_kept_and_checked():
    model = random_model(tiny_config())
    with pytest.warns(DivergentSampleWarning):  # draws above 0.3 are "runaways" for so narrow a range
        x = model.sample(2, 8, generator=torch.Generator().manual_seed(0), value_range=(-0.2, 0.3))
    assert x.min() == -0.2 and x.max() == 0.3  # both ends are reached by this random model
    for bad in [(0.3, -0.2), (float("nan"), 1.0), (0.0,)]:
        with pytest.raises(ValueError, match="value_range"):
            model.sample(1, 2, value_range=bad)
