"""What a Trainer does so that nothing a user trained is lost: no silent restart over saved weights, a stop
request ends with a checkpoint, a failed write names the intact checkpoint, metrics rows once each, group-readable
files, a damaged baseline fitted again."""

import csv
import math
import os

import pytest
import torch

from melnet_fast.train import ChannelGaussian, RunDir, RunDirError, Trainer, TrainingIOError
from melnet_fast.train.checkpointing import load_training_state
from tests.conftest import fill_file_system
from tests.train.conftest import make_model, options


def _rows(run, split=None):
    with open(run / "metrics.csv", newline="") as f:
        return [r for r in csv.DictReader(f) if split is None or r["split"] == split]


def _train(config, data, run, **changes) -> Trainer:
    trainer = Trainer(make_model(config), data[0], data[1], options(**changes), run)
    trainer.fit()
    trainer.close()
    return trainer


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_a_run_whose_state_is_lost_is_refused_not_restarted(tiny_config, datasets, tmp_path, damage):
    _train(tiny_config, datasets, tmp_path, steps=4, val_every=2, checkpoint_every=2)
    best = (tmp_path / "checkpoints" / "best.safetensors").read_bytes()
    metrics = (tmp_path / "metrics.csv").read_text()
    state = tmp_path / "checkpoints" / "latest.pt"
    if damage == "missing":
        state.unlink()
    else:
        state.write_bytes(state.read_bytes()[:1000])
    with pytest.raises(RunDirError, match=r"holds a trained run .*best.safetensors.* resuming would restart at step "
                                          r"0\. To start over, move the run aside"):
        Trainer(make_model(tiny_config), datasets[0], datasets[1], options(steps=6), tmp_path)
    assert (tmp_path / "checkpoints" / "best.safetensors").read_bytes() == best, "best is never overwritten"
    assert (tmp_path / "metrics.csv").read_text() == metrics
    assert not (tmp_path / "run.lock").exists(), "the refused trainer released the run"

    aside = RunDir(tmp_path).set_aside()  # the way forward: the old files are kept, the run starts over
    assert aside.parent == tmp_path / "previous"
    assert (aside / "checkpoints" / "best.safetensors").read_bytes() == best
    assert Trainer(make_model(tiny_config), datasets[0], None, options(steps=1), tmp_path).step == 0


def test_resume_false_refuses_a_trained_run(tiny_config, datasets, tmp_path):
    _train(tiny_config, datasets, tmp_path, steps=1)
    with pytest.raises(RunDirError, match="resume=False would overwrite it"):
        Trainer(make_model(tiny_config), datasets[0], None, options(steps=2), tmp_path, resume=False)


def test_a_run_without_any_checkpoint_starts_at_step_0(tiny_config, datasets, tmp_path):
    """Killed before its first checkpoint: nothing to lose, so the same command simply starts it again."""
    first = Trainer(make_model(tiny_config), datasets[0], None, options(steps=3), tmp_path)
    first.close()
    assert (tmp_path / "config.json").is_file() and not RunDir(tmp_path).checkpoint_files()
    again = Trainer(make_model(tiny_config), datasets[0], None, options(steps=3), tmp_path)
    assert again.step == 0
    again.close()


class StopAfter:
    """A stop request (as SignalStop sets it) raised while step `step` runs."""

    def __init__(self, trainer: Trainer, step: int):
        self.requested = None
        real = trainer.train_step

        def train_step(*args, **kwargs):
            if trainer.step + 1 == step:
                self.requested = 15
            return real(*args, **kwargs)

        trainer.train_step = train_step


def test_a_stop_request_checkpoints_the_step_and_resumes_with_the_same_metrics(tiny_config, datasets, tmp_path):
    """Stopped at step 6 with rows every 4 steps, the resumed run's row at step 8 averages steps 5-8, as the
    uninterrupted run's does; every row appears once."""
    straight = _train(tiny_config, datasets, tmp_path / "straight", steps=10, log_every=4)
    run = tmp_path / "stopped"
    trainer = Trainer(make_model(tiny_config), datasets[0], datasets[1], options(steps=10, log_every=4), run)
    summary = trainer.fit(stop=StopAfter(trainer, 6))
    trainer.close()
    assert summary["stopped"] == "signal" and summary["step"] == summary["checkpoint_step"] == 6
    assert load_training_state(run / "checkpoints" / "latest.pt")["step"] == 6
    assert not _rows(run, "val"), "a stop skips the final validation"
    assert "stopped on request after step 6" in (run / "train.log").read_text()
    resumed = _train(tiny_config, datasets, run, steps=10, log_every=4)
    assert resumed.step == straight.step == 10
    got, want = _rows(run, "train"), _rows(tmp_path / "straight", "train")
    assert [r["step"] for r in got] == [r["step"] for r in want] == ["4", "8"]
    assert [r["nll_nats"] for r in got] == [r["nll_nats"] for r in want]


def test_rerunning_a_finished_run_adds_no_rows(tiny_config, datasets, tmp_path):
    _train(tiny_config, datasets, tmp_path, steps=2)
    before = (tmp_path / "metrics.csv").read_text()
    again = _train(tiny_config, datasets, tmp_path, steps=2)
    assert again.step == 2
    assert (tmp_path / "metrics.csv").read_text() == before
    assert [r["step"] for r in _rows(tmp_path, "val")] == ["2"]


def test_a_full_disk_names_the_intact_checkpoint(tiny_config, datasets, small_fs):
    run = small_fs / "run"
    trainer = Trainer(make_model(tiny_config), datasets[0], None, options(steps=2, checkpoint_every=2), run)
    trainer.fit()
    fill_file_system(small_fs)
    trainer.options.steps = 4
    with pytest.raises(TrainingIOError, match=r"^step \d: \[Errno 28\] No space left on device: .*; last good "
                                              r"checkpoint: step 2 in .*latest.pt \(intact\)$"):
        trainer.fit()
    trainer.close()
    assert load_training_state(run / "checkpoints" / "latest.pt")["step"] == 2
    assert sorted(os.listdir(run / "checkpoints")) == ["latest.pt", "latest.safetensors"], "no temporary left"


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o007, 0o660)])
def test_run_files_follow_the_umask(tiny_config, datasets, tmp_path, mask, mode):
    old = os.umask(mask)
    try:
        _train(tiny_config, datasets, tmp_path, steps=1, val_every=1)
    finally:
        os.umask(old)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert {p.relative_to(tmp_path).as_posix() for p in files} >= {
        "config.json", "metrics.csv", "baseline.json", "checkpoints/latest.pt", "checkpoints/latest.safetensors",
        "checkpoints/best.safetensors"}
    for p in files:
        assert p.stat().st_mode & 0o777 == mode, p


def test_a_damaged_baseline_is_fitted_again(tiny_config, datasets, tmp_path):
    first = _train(tiny_config, datasets, tmp_path, steps=1)
    (tmp_path / "baseline.json").write_text('{"frames": 1, "mean": [NaN], "std": [1.0]}')
    again = Trainer(make_model(tiny_config), datasets[0], None, options(steps=2), tmp_path)
    assert torch.equal(again.baseline.mean, first.baseline.mean)
    assert any("fitting the baseline again" in m for m in again.messages)
    again.close()
    assert all(math.isfinite(v) for v in again.baseline.std.tolist())


def test_batch_larger_than_the_data_is_refused(tiny_config, datasets):
    with pytest.raises(ValueError, match=r"batch_size 7 is larger than the training data \(6 items\)"):
        Trainer(make_model(tiny_config), datasets[0], None, options(batch_size=7))


def test_the_baseline_refuses_non_finite_data():
    good = torch.randn(5, 4)
    bad = good.clone()
    bad[2, 1] = math.nan
    with pytest.raises(ValueError, match="spectrogram 1 holds NaN or inf"):
        ChannelGaussian.fit([good, bad])
