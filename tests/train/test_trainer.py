"""The training loop: it learns, it trains only the chosen tiers, recomputation changes nothing, it logs."""

import csv

import pytest
import torch

from melnet_fast.multiscale import tier_index
from melnet_fast.train import ChannelGaussian, Trainer, evaluate
from melnet_fast.train.metrics import csv_columns
from tests.train.conftest import CROP, make_model, options


def test_loss_goes_down(tiny_config, datasets):
    train, val = datasets
    model = make_model(tiny_config)
    before = evaluate(model, val, CROP).nll_nats
    trainer = Trainer(model, train, val, options(steps=30, batch_size=3, val_segments=None))
    summary = trainer.fit()
    after = evaluate(model, val, CROP).nll_nats
    assert summary["step"] == 30 and summary["skipped_steps"] == 0
    assert after < before - 0.2, f"held-out NLL {before:.3f} -> {after:.3f} nats/element"
    assert summary["val"]["nll_nats"] == pytest.approx(after)


def test_only_chosen_tiers_change(tiny_config, datasets):
    train, _ = datasets
    model = make_model(tiny_config)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    Trainer(model, train, None, options(steps=2, tiers=(2,))).fit()
    for name, value in model.state_dict().items():
        changed = not torch.equal(value, before[name])
        if name.startswith("tiers.1."):
            continue
        assert not changed, f"{name} (not in tier 2) changed"
    assert any(not torch.equal(v, before[k]) for k, v in model.state_dict().items() if k.startswith("tiers.1."))


def test_recompute_gives_the_same_training(tiny_config, datasets):
    train, _ = datasets
    runs = []
    for recompute in (False, True):
        model = make_model(tiny_config)
        Trainer(model, train, None, options(steps=2, recompute=recompute)).fit()
        runs.append(model.state_dict())
    for name in runs[0]:
        torch.testing.assert_close(runs[1][name], runs[0][name], rtol=1e-5, atol=1e-6, msg=name)


def test_recompute_runs_the_sweeps_segmented(tiny_config, datasets, monkeypatch):
    """recompute=True also turns on the sweeps' own segmented recompute (no gates stored), in the trained tiers."""
    from melnet_fast.modules.sweep_lstm import SweepLSTM
    from melnet_fast.ops.lstm_sweep import recompute as segmented

    calls = []
    real = segmented.segmented_sweep
    monkeypatch.setattr(segmented, "segmented_sweep", lambda *a, **k: calls.append(1) or real(*a, **k))
    train, _ = datasets
    model = make_model(tiny_config)
    Trainer(model, train, None, options(steps=1, tiers=(2,), recompute=True)).fit()
    sweeps = {g: [m.recompute for m in model.tiers[g - 1].modules() if isinstance(m, SweepLSTM)]
              for g in range(1, tiny_config.n_tiers + 1)}
    assert sweeps[2] and all(sweeps[2]) and not any(sweeps[1]), sweeps
    assert calls, "no sweep ran its segmented recompute"


def test_each_tier_gets_the_gradient_of_its_own_nll(tiny_config, datasets):
    """Summing per-tier means must give tier g exactly d(mean NLL of tier g) / d(its parameters)."""
    train, _ = datasets
    model = make_model(tiny_config)
    trainer = Trainer(model, train, None, options())
    x = trainer._next_batch().spec
    trainer.compute_losses(x)[0].sum().backward()
    together = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model.loss(x, tiers=[3]).backward()
    for n, p in model.named_parameters():
        if n.startswith("tiers.2."):
            torch.testing.assert_close(together[n], p.grad, msg=n)


def test_run_dir_logs_and_checkpoints(tiny_config, datasets, data_spec, tmp_path):
    train, val = datasets
    trainer = Trainer(make_model(tiny_config), train, val, options(steps=4, val_every=2, checkpoint_every=2),
                      tmp_path, data_spec=data_spec)
    trainer.fit()
    trainer.close()
    for name in ("config.json", "baseline.json", "metrics.csv", "checkpoints/latest.pt",
                 "checkpoints/latest.safetensors", "checkpoints/best.safetensors"):
        assert (tmp_path / name).is_file(), name
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    with open(tmp_path / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == csv_columns(tiny_config.n_tiers)
    assert [(r["step"], r["split"]) for r in rows] == [("1", "train"), ("2", "train"), ("2", "val"),
                                                      ("3", "train"), ("4", "train"), ("4", "val")]
    val_row = rows[-1]
    assert float(val_row["baseline_nll_nats"]) == pytest.approx(trainer.last_val.baseline_nll_nats, rel=1e-5)
    assert float(val_row["nll_bits"]) == pytest.approx(float(val_row["nll_nats"]) / 0.6931471805599453, rel=1e-5)


def test_baseline_is_the_per_channel_gaussian(datasets):
    train, _ = datasets
    specs = [train.spectrogram(i) for i in range(len(train))]
    base = ChannelGaussian.fit(specs)
    pooled = torch.cat(specs).double()
    torch.testing.assert_close(base.mean, pooled.mean(0))
    torch.testing.assert_close(base.std, pooled.std(0, unbiased=False))
    x = specs[0][:5]
    want = -torch.distributions.Normal(pooled.mean(0), pooled.std(0, unbiased=False)).log_prob(x.double())
    torch.testing.assert_close(base.nll(x), want.float())


def test_evaluate_matches_log_prob(tiny_config, datasets):
    """The overall NLL is the mean of -log_prob over every element of the segments (16, 16 and the last 6 of
    each 38-frame clip, scored alone), per tier as well."""
    _, val = datasets
    model = make_model(tiny_config, seed=3)
    result = evaluate(model, val, CROP, batch_size=3)
    pieces = [val.spectrogram(i)[s:s + n] for i in range(len(val)) for s, n in ((0, 16), (16, 16), (32, 6))]
    owner = [tier_index(p.shape[0], 16, 3) for p in pieces]
    with torch.no_grad():
        logp = [model.log_prob(p[None])[0] for p in pieces]
    assert result.segments == len(pieces) == 12
    total = -sum(float(lp.sum()) for lp in logp)
    assert result.nll_nats == pytest.approx(total / sum(p.numel() for p in pieces), rel=1e-5)
    for g in (1, 2, 3):
        tier_total = -sum(float(lp[o == g].sum()) for lp, o in zip(logp, owner))
        assert result.elements[g] == sum(int((o == g).sum()) for o in owner)
        assert result.tiers[g] == pytest.approx(tier_total / result.elements[g], rel=1e-5)


def test_conditional_model_trains_on_labels(tiny_config, datasets):
    """With n_speakers > 0 the batch labels (synthetic genres) are the speaker ids, in training and evaluation."""
    train, val = datasets
    config = tiny_config.replace(n_speakers=len(train.label_names), speaker_dim=3)
    model = make_model(config)
    before = model.tiers[0].speaker_embedding.weight.detach().clone()
    summary = Trainer(model, train, val, options(steps=2)).fit()
    assert summary["skipped_steps"] == 0 and summary["val"] is not None
    used = sorted(set(train.labels[:]))
    changed = (model.tiers[0].speaker_embedding.weight != before).any(dim=1).nonzero().flatten().tolist()
    assert changed and set(changed) <= set(used)


def test_time_budget_stops_after_the_step_that_spends_it(tiny_config, datasets):
    train, _ = datasets
    trainer = Trainer(make_model(tiny_config), train, None, options(steps=1000, max_seconds=0))
    summary = trainer.fit()
    assert summary["stopped"] == "time" and trainer.step == 1
    assert "time budget of 0 s reached at step 1" in trainer.messages


def _rates(trainer):
    """Run trainer.fit and return the learning rate of every step."""
    rates, step = [], trainer.train_step

    def recorded(*args, **kwargs):
        rates.append(trainer.optimizer.param_groups[0]["lr"])
        return step(*args, **kwargs)

    trainer.train_step = recorded
    trainer.fit()
    return rates


def test_lr_cooldown_trains_the_last_steps_at_a_tenth_of_the_rate(tiny_config, datasets):
    train, _ = datasets
    trainer = Trainer(make_model(tiny_config), train, None, options(steps=10, lr_cooldown=0.3))
    assert _rates(trainer) == pytest.approx([3e-3] * 7 + [3e-4] * 3)
    assert "step 7: learning rate 0.0003 for the last 30% of the run" in trainer.messages
    # A resumed run continues the schedule of its steps; a constant rate without a cool-down.
    trainer.options.steps = 12
    assert _rates(trainer) == pytest.approx([3e-4] * 2)
    assert set(_rates(Trainer(make_model(tiny_config), train, None, options(steps=5)))) == {3e-3}


def test_lr_cooldown_follows_the_time_budget(tiny_config, datasets, monkeypatch):
    """With a time budget that ends the run first, the cool-down takes its last fraction of the time."""
    import melnet_fast.train.loop as loop

    clock = iter(range(10**6))  # every reading of the clock is one second later
    monkeypatch.setattr(loop.time, "perf_counter", lambda: float(next(clock)))
    train, _ = datasets
    trainer = Trainer(make_model(tiny_config), train, None, options(steps=1000, max_seconds=30, lr_cooldown=0.5))
    rates = _rates(trainer)
    assert trainer.step < 1000 and rates[0] == 3e-3 and rates[-1] == pytest.approx(3e-4)
    assert rates == sorted(rates, reverse=True) and 3e-3 in rates and rates.count(3e-3) < len(rates)


@pytest.mark.parametrize("field, value", [("lr_cooldown", 1.0), ("lr_cooldown", -0.1), ("lr_cooldown_factor", 0.0),
                                          ("lr_cooldown_factor", 2.0)])
def test_bad_lr_cooldown_names_the_option(field, value):
    with pytest.raises(ValueError, match=field):
        options(**{field: value})
