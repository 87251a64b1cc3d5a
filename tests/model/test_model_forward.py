"""MelNet.forward / log_prob / loss: shapes, per-tier assembly, tier-wise training, conditioning."""

import pytest
import torch

from melnet_fast import MelNet, MixtureParams, ops
from melnet_fast.multiscale import split_tiers, tier_index
from tests.model.helpers import random_cond, random_model, random_spectrogram, tiny_config


def test_forward_shapes_and_log_prob():
    config = tiny_config()
    model = random_model(config)
    x = random_spectrogram(2, 8, config.n_mels)
    params = model(x)
    assert isinstance(params, MixtureParams)
    assert all(p.shape == (2, 8, config.n_mels, config.n_mixtures) for p in params)
    log_prob = model.log_prob(x)
    assert log_prob.shape == x.shape and torch.isfinite(log_prob).all()
    torch.testing.assert_close(log_prob, -ops.gmm_nll_ref(x, *params))
    torch.testing.assert_close(model.loss(x), -log_prob.mean())


def test_forward_places_each_tier_network_output_at_its_positions():
    """Full-resolution params at the positions of tier g equal tier g's network run on x^g with its z."""
    config = tiny_config()
    model = random_model(config)
    T, F = 8, config.n_mels
    x = random_spectrogram(2, T, F)
    mu = model(x).mu
    x_tiers, contexts = split_tiers(x, config.n_tiers)
    mu_tiers, _ = split_tiers(mu, config.n_tiers)
    index = tier_index(T, F, config.n_tiers)
    for g in range(1, config.n_tiers + 1):
        want = model.tiers[g - 1](x_tiers[g - 1], contexts[g - 1]).mu
        assert torch.equal(mu_tiers[g - 1], want)
        assert torch.equal(mu[:, index == g], want.reshape(2, -1, config.n_mixtures))


@pytest.mark.parametrize("tiers", [[1], [2], [1, 3]], ids=str)
def test_loss_of_chosen_tiers_runs_only_their_networks(tiers):
    config = tiny_config()
    model = random_model(config)
    T, F = 8, config.n_mels
    x = random_spectrogram(2, T, F)
    loss = model.loss(x, tiers=tiers)
    index = tier_index(T, F, config.n_tiers)
    chosen = torch.zeros(T, F, dtype=torch.bool)
    for g in tiers:
        chosen |= index == g
    with torch.no_grad():
        want = -model.log_prob(x)[:, chosen].mean()
    torch.testing.assert_close(loss, want)
    loss.backward()
    for g, tier in enumerate(model.tiers, start=1):
        grads = [p.grad for p in tier.parameters()]
        if g in tiers:
            assert all(gr is not None for gr in grads)
        else:
            assert all(gr is None for gr in grads), f"tier {g} ran though not chosen"


def test_one_tier_model():
    config = tiny_config(n_tiers=1, layers=(2,))
    model = random_model(config)
    x = random_spectrogram(1, 3, config.n_mels)  # no split: any T
    direct = model.tiers[0].network(x)
    assert all(torch.equal(p, q) for p, q in zip(model(x), direct))


@pytest.mark.parametrize("kind", ["speaker", "features"])
def test_conditioning_changes_the_output_per_example(kind):
    config = tiny_config(n_speakers=3 if kind == "speaker" else 0, cond_dim=2 if kind == "features" else 0)
    model = random_model(config)
    x = random_spectrogram(2, 4, config.n_mels)
    cond = random_cond(config, 2, 4)[kind]
    other = cond.clone()
    if kind == "speaker":
        cond, other = torch.tensor([0, 1]), torch.tensor([2, 1])
    else:
        other[0] += 1.0
    a, b = model.log_prob(x, cond), model.log_prob(x, other)
    assert not torch.allclose(a[0], b[0])  # example 0's conditioning changed ...
    assert torch.equal(a[1], b[1])  # ... example 1's did not
    for g in range(1, config.n_tiers + 1):  # every tier sees it
        assert not torch.allclose(model.loss(x[:1], cond[:1], tiers=[g]), model.loss(x[:1], other[:1], tiers=[g]))
    gen = dict(batch=2, frames=4, generator=None)
    s1 = model.sample(cond=cond, **{**gen, "generator": torch.Generator().manual_seed(0)})
    s2 = model.sample(cond=other, **{**gen, "generator": torch.Generator().manual_seed(0)})
    assert not torch.allclose(s1[0], s2[0]) and torch.equal(s1[1], s2[1])


def test_cond_forms_are_equivalent():
    config = tiny_config(n_speakers=3, cond_dim=0)
    model = random_model(config)
    x = random_spectrogram(2, 4, config.n_mels)
    ids = torch.tensor([2, 0])
    assert torch.equal(model.log_prob(x, ids), model.log_prob(x, {"speaker": ids}))
    assert torch.equal(model.log_prob(x, ids.int()), model.log_prob(x, ids))


def test_default_init_runs_on_float32():
    torch.manual_seed(0)
    model = MelNet(tiny_config())
    x = torch.randn(2, 8, 16)
    loss = model.loss(x)
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in model.parameters())
    assert all(torch.equal(m.h0, torch.zeros_like(m.h0)) for m in model.modules() if hasattr(m, "h0"))
