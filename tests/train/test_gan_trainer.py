"""GANTrainer: a step trains the discriminator, runs resume bit-exactly, a non-finite step changes nothing, and a
run directory records the model kind."""

import json
import math
import random

import numpy as np
import pytest
import torch

from melnet_fast.baselines.cmelgan import CMelGAN, CMelGANConfig, wrong_labels
from melnet_fast.train import GANTrainer, RunDir, RunDirError, Trainer, TrainingDiverged, build_datasets
from melnet_fast.train.checkpointing import load_training_state
from melnet_fast.train.gan import METRIC_COLUMNS
from tests.train.conftest import make_model, options


@pytest.fixture(scope="module")
def gan_config() -> CMelGANConfig:
    return CMelGANConfig.preset("tiny", n_labels=4)


@pytest.fixture(scope="module")
def gan_data(gan_config, data_spec):
    """(train, held-out): 6 and 4 synthetic clips of 0.6 s, crops of the tiny cMelGAN's 16 frames."""
    return build_datasets(data_spec, gan_config, gan_config.frames)


def make_gan(config: CMelGANConfig, seed: int = 0) -> CMelGAN:
    torch.manual_seed(seed)
    return CMelGAN(config)


def gan_options(**changes):
    return options(**{"learning_rate": 1e-3, "crop_frames": None, **changes})


def _fixed_batch(train, config, n=4):
    x = torch.stack([train[(i, 0)][0] for i in range(n)])
    labels = torch.tensor([train.labels[i] for i in range(n)])
    generator = torch.Generator().manual_seed(7)
    noise = torch.randn(n, config.noise_dim, generator=generator)
    return x, labels, noise, wrong_labels(labels, config.n_labels, generator)


def test_one_step_lowers_the_discriminator_loss_on_a_fixed_batch(gan_config, gan_data):
    train, _ = gan_data
    trainer = GANTrainer(make_gan(gan_config), train, None, gan_options())
    x, labels, noise, wrong = _fixed_batch(train, gan_config)
    with torch.no_grad():
        fake = trainer.model.generate(noise, labels)

    def d_loss():  # on the fixed batch, against the same generated spectrograms
        with torch.no_grad():
            from melnet_fast.baselines.cmelgan import discriminator_loss
            d = trainer.model.discriminator
            return float(discriminator_loss(d(x, labels), d(fake, labels), d(x, wrong))[0])

    before = d_loss()
    result = trainer.train_step(x, labels)
    assert not result.skipped and set(result.scores) == {"d_real", "d_fake", "d_wrong"}
    assert d_loss() < before


def _same_state(a: GANTrainer, b: GANTrainer) -> None:
    for name, value in a.model.state_dict().items():
        assert torch.equal(value, b.model.state_dict()[name]), f"parameter {name} differs"
    for key in ("optimizer_g", "optimizer_d"):
        sa, sb = a._optimizer_state()[key]["state"], b._optimizer_state()[key]["state"]
        assert sa.keys() == sb.keys()
        for k in sa:
            for n in sa[k]:
                assert torch.equal(sa[k][n], sb[k][n]), f"{key} state {k}.{n} differs"


def test_resume_is_bit_exact(gan_config, gan_data, data_spec, tmp_path):
    """4 steps straight == 2 steps, then a new trainer (fresh model, other init, other RNG state) resuming."""
    train, val = gan_data
    straight = GANTrainer(make_gan(gan_config), train, val, gan_options(steps=4), tmp_path / "straight")
    straight.fit()
    rng_after = torch.get_rng_state()
    first = GANTrainer(make_gan(gan_config), train, val, gan_options(steps=2), tmp_path / "split", data_spec=data_spec)
    first.fit()
    first.close()
    torch.manual_seed(123)
    np.random.seed(5)
    random.seed(7)
    resumed = GANTrainer(make_gan(gan_config, seed=9), train, val, gan_options(steps=4), tmp_path / "split")
    assert resumed.step == 2 and any("resumed from step 2" in m for m in resumed.messages)
    resumed.fit()
    _same_state(straight, resumed)
    assert torch.equal(torch.get_rng_state(), rng_after)
    rows = (tmp_path / "split" / "metrics.csv").read_text().splitlines()
    assert rows[0].split(",") == METRIC_COLUMNS
    assert [int(r.split(",")[0]) for r in rows[1:] if ",train," in r] == [1, 2, 3, 4]
    doc = json.loads((tmp_path / "split" / "config.json").read_text())
    assert doc["model_kind"] == "cmelgan" and doc["model"]["n_labels"] == 4
    _, model, path = RunDir(tmp_path / "split").load_model()
    assert isinstance(model, CMelGAN) and path.name == "latest.safetensors"  # no "best" for a GAN


def _nan_at(trainer: GANTrainer, bad_steps):
    real = trainer._losses

    def losses(*args):
        loss_d, loss_g, scores = real(*args)
        if trainer.step + 1 in bad_steps:
            loss_g = loss_g * math.nan
        return loss_d, loss_g, scores

    trainer._losses = losses


def test_non_finite_step_updates_neither_network(gan_config, gan_data, tmp_path):
    train, _ = gan_data
    trainer = GANTrainer(make_gan(gan_config), train, None, gan_options(steps=1, checkpoint_every=1), tmp_path)
    trainer.fit()
    good = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    _nan_at(trainer, {2})
    trainer.options.steps = 2
    assert trainer.fit()["skipped_steps"] == 1
    for name, value in trainer.model.state_dict().items():
        assert torch.equal(value, good[name]), f"{name} was updated by the non-finite step"
    message = next(m for m in trainer.messages if m.startswith("step 2:"))
    assert "generator loss nan" in message and "skipped the update" in message


def test_repeated_non_finite_steps_stop_training(gan_config, gan_data, tmp_path):
    train, _ = gan_data
    trainer = GANTrainer(make_gan(gan_config), train, None,
                         gan_options(steps=8, checkpoint_every=1, nan_patience=2), tmp_path)
    _nan_at(trainer, set(range(2, 9)))
    with pytest.raises(TrainingDiverged, match="2 consecutive steps.*Last good checkpoint: step 1"):
        trainer.fit()
    assert load_training_state(tmp_path / "checkpoints" / "latest.pt")["step"] == 1


def test_validation_is_deterministic_and_leaves_the_rng_alone(gan_config, gan_data):
    train, val = gan_data
    trainer = GANTrainer(make_gan(gan_config), train, val, gan_options())
    state = torch.get_rng_state()
    a, b = trainer.validate(), trainer.validate()
    assert a.to_dict() == b.to_dict() and a.segments == 4 and torch.equal(torch.get_rng_state(), state)
    assert set(a.scores) == {"d_real", "d_fake", "d_wrong"}


@pytest.mark.parametrize("changes, match", [
    (dict(tiers=(1,)), "no tiers"), (dict(crop_frames=8), "crop_frames=8"), (dict(momentum=0.5), "no momentum")])
def test_melnet_only_options_are_refused(gan_config, gan_data, changes, match):
    with pytest.raises(ValueError, match=match):
        GANTrainer(make_gan(gan_config), gan_data[0], None, gan_options(**changes))


def test_labels_beyond_the_model_are_refused(gan_data):
    with pytest.raises(ValueError, match="label ids up to 3, the model n_labels=2"):
        GANTrainer(make_gan(CMelGANConfig.preset("tiny", n_labels=2)), gan_data[0], None, gan_options())


def test_a_melnet_trainer_refuses_a_gan_run(gan_config, gan_data, tiny_config, datasets, tmp_path):
    GANTrainer(make_gan(gan_config), gan_data[0], None, gan_options(steps=1), tmp_path).fit()
    with pytest.raises(RunDirError, match="incompatible"):
        Trainer(make_model(tiny_config), datasets[0], None, options(steps=2), tmp_path)


def test_the_learning_rate_cooldown_lowers_both_networks_rates(gan_config, gan_data):
    train, _ = gan_data
    trainer = GANTrainer(make_gan(gan_config), train, None, gan_options(steps=4, lr_cooldown=0.5))
    trainer.fit()
    assert [opt.param_groups[0]["lr"] for opt in (trainer.optimizer_g, trainer.optimizer_d)] == [1e-4, 1e-4]
    assert any("learning rate 0.0001 for the last 50% of the run" in m for m in trainer.messages)


def test_training_data_of_other_or_short_examples_is_refused(gan_config, data_spec):
    from melnet_fast.data import SyntheticMusicDataset

    longer, _ = build_datasets(data_spec, gan_config, 4 * gan_config.frames)
    with pytest.raises(ValueError, match="serves crops of 64 frames"):
        GANTrainer(make_gan(gan_config), longer, None, gan_options())
    short = SyntheticMusicDataset(4, seed=0, settings=gan_config, crop_frames=gan_config.frames, duration=0.2)
    assert min(short.item_frames(i) for i in range(len(short))) < gan_config.frames  # 0.2 s: 12 frames
    with pytest.raises(ValueError, match="items shorter than the model's 16 frames: build it with min_frames=16"):
        GANTrainer(make_gan(gan_config), short, None, gan_options())
