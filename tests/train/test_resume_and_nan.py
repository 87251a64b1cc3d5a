"""Checkpoints: a resumed run continues bit-exactly; a non-finite step changes nothing and is reported."""

import math
import random

import numpy as np
import pytest
import torch

from melnet_fast.train import RunDirError, Trainer, TrainingDiverged
from melnet_fast.train.checkpointing import load_training_state
from tests.train.conftest import make_model, options


def _assert_same_state(a: Trainer, b: Trainer) -> None:
    for name, value in a.model.state_dict().items():
        assert torch.equal(value, b.model.state_dict()[name]), f"parameter {name} differs"
    sa, sb = a.optimizer.state_dict()["state"], b.optimizer.state_dict()["state"]
    assert sa.keys() == sb.keys()
    for k in sa:
        for key in sa[k]:
            assert torch.equal(sa[k][key], sb[k][key]), f"optimizer state {k}.{key} differs"


@pytest.mark.parametrize("half", [2, 3], ids=["epoch-boundary", "mid-epoch"])
def test_resume_is_bit_exact(tiny_config, datasets, tmp_path, half):
    """N steps straight == N/2 steps, then a new process-like Trainer (fresh model, other init) resuming to N.
    6 clips in batches of 2 are 3 batches per epoch: 6 steps cross two epoch boundaries."""
    train, val = datasets
    steps = 2 * half
    straight = Trainer(make_model(tiny_config), train, val, options(steps=steps), tmp_path / "straight")
    straight.fit()
    rng_after_straight = torch.get_rng_state()
    first = Trainer(make_model(tiny_config), train, val, options(steps=half), tmp_path / "split")
    first.fit()
    first.close()
    torch.manual_seed(123)  # the resumed process starts from other RNG states and another initialisation
    np.random.seed(5)
    random.seed(7)
    resumed = Trainer(make_model(tiny_config, seed=99), train, val, options(steps=steps), tmp_path / "split")
    assert resumed.step == half and any("resumed from step" in m for m in resumed.messages)
    resumed.fit()
    assert resumed.step == straight.step == steps
    assert (resumed.epoch, resumed.batch_in_epoch) == (straight.epoch, straight.batch_in_epoch)
    _assert_same_state(straight, resumed)
    assert torch.equal(torch.get_rng_state(), rng_after_straight), "the global RNG continues as in one run"
    rows = (tmp_path / "split" / "metrics.csv").read_text().splitlines()[1:]
    train_steps = [int(r.split(",")[0]) for r in rows if ",train," in r]
    assert train_steps == list(range(1, steps + 1)), "every step is logged once across the resume"


def test_resume_restores_rng_state(tiny_config, datasets, tmp_path):
    train, _ = datasets
    trainer = Trainer(make_model(tiny_config), train, None, options(steps=1), tmp_path)
    torch.manual_seed(11)
    np.random.seed(12)
    random.seed(13)
    trainer.fit()
    want = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    Trainer(make_model(tiny_config), train, None, options(steps=1), tmp_path)
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(got[0], want[0]) and np.array_equal(got[1], want[1]) and got[2] == want[2]


def test_resume_refuses_another_config(tiny_config, datasets, tmp_path):
    train, _ = datasets
    Trainer(make_model(tiny_config), train, None, options(steps=1), tmp_path).fit()
    other = tiny_config.replace(hidden_size=12)
    with pytest.raises(RunDirError, match="incompatible.*hidden_size"):
        Trainer(make_model(other), train, None, options(steps=2), tmp_path)


def _nan_at(trainer: Trainer, bad_steps):
    """Make compute_losses return NaN for tier 1 at the given (1-based) steps."""
    real = trainer.compute_losses

    def losses(x, cond=None, lengths=None):
        out, guide = real(x, cond, lengths)
        if trainer.step + 1 in bad_steps:
            out = out * torch.tensor([math.nan] + [1.0] * (len(out) - 1))
        return out, guide

    trainer.compute_losses = losses


def test_nan_step_is_skipped_and_reported(tiny_config, datasets, tmp_path):
    train, _ = datasets
    trainer = Trainer(make_model(tiny_config), train, None, options(steps=2, checkpoint_every=2), tmp_path)
    trainer.fit()
    good = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    good_optimizer = {k: {n: t.clone() for n, t in s.items()}
                      for k, s in trainer.optimizer.state_dict()["state"].items()}
    _nan_at(trainer, {3})
    trainer.options.steps = 3
    summary = trainer.fit()
    assert summary["skipped_steps"] == 1 and trainer.step == 3
    for name, value in trainer.model.state_dict().items():
        assert torch.equal(value, good[name]), f"{name} was updated by the NaN step"
    for k, s in trainer.optimizer.state_dict()["state"].items():
        for n, t in s.items():
            assert torch.equal(t, good_optimizer[k][n]), f"optimizer state {k}.{n} changed"
    message = next(m for m in trainer.messages if m.startswith("step 3:"))
    assert "non-finite" in message and "skipped the update" in message and "step 2" in message
    assert "skipped the update" in (tmp_path / "train.log").read_text()
    # training goes on afterwards
    trainer.options.steps = 4
    trainer.fit()
    assert trainer.skipped_steps == 1
    assert any(not torch.equal(v, good[k]) for k, v in trainer.model.state_dict().items())


def test_repeated_nan_stops_and_keeps_the_last_good_checkpoint(tiny_config, datasets, tmp_path):
    train, _ = datasets
    trainer = Trainer(make_model(tiny_config), train, None,
                      options(steps=10, checkpoint_every=2, nan_patience=3), tmp_path)
    _nan_at(trainer, {3, 4, 5, 6, 7, 8, 9, 10})
    with pytest.raises(TrainingDiverged, match="3 consecutive steps.*Last good checkpoint: step 2"):
        trainer.fit()
    state = load_training_state(tmp_path / "checkpoints" / "latest.pt")
    assert state["step"] == 2
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_no_checkpoint_from_non_finite_parameters(tiny_config, datasets, tmp_path):
    train, _ = datasets
    trainer = Trainer(make_model(tiny_config), train, None, options(steps=1), tmp_path)
    trainer.fit()
    with torch.no_grad():
        trainer.model.tiers[0].network.head.bias[0] = math.inf
    trainer.step += 1
    assert not trainer.save_checkpoint()
    assert load_training_state(tmp_path / "checkpoints" / "latest.pt")["step"] == 1
    assert "not finite" in trainer.messages[-1]
