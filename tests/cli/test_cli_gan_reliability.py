"""`melnet-fast gan train / sample` and `compare` keep what a user trained as `train` does, on real processes: a
stop signal ends training with a checkpoint, a second writer is refused, a killed run is taken over and its
orphaned temporary files removed, and flags are checked (one line naming them) before any work."""

import csv
import re
import signal

import pytest

from melnet_fast.train.checkpointing import load_training_state
from tests.cli.conftest import cli, main_error, ok
from tests.cli.test_cli_reliability import checkpointed, one_line_error, start, wait_for

# A cMelGAN run that trains until stopped: checkpoints every 2 steps, no validation on the way.
ENDLESS = ["gan", "train", "--data", "synthetic", "--preset", "tiny", "--steps", "100000", "--batch-size", "2",
           "--synthetic-clips", "4", "--synthetic-val-clips", "2", "--val-every", "0", "--checkpoint-every", "2",
           "--log-every", "1", "--no-progress"]


def _until(step: int):
    at = ENDLESS.index("--steps")
    return [*ENDLESS[:at], "--steps", str(step), *ENDLESS[at + 2:]]


def test_sigterm_writes_a_checkpoint_and_the_run_resumes(tmp_path):
    run = tmp_path / "run"
    trainer = start(*ENDLESS, "--out", run)
    try:
        wait_for(checkpointed(run), trainer)
        one_line_error(cli(*ENDLESS, "--out", run), f"is in use by PID {trainer.pid}", "melnet-fast gan train")
        one_line_error(cli("gan", "sample", "--run", run, "--speaker", "0"), f"is in use by PID {trainer.pid}",
                       "pass an --out outside the run")
        trainer.send_signal(signal.SIGTERM)
        _, err = trainer.communicate(timeout=180)
    finally:
        if trainer.poll() is None:
            trainer.kill()
    assert trainer.returncode == 128 + signal.SIGTERM, err
    step = int(re.search(r"melnet-fast gan train: stopped by SIGTERM after step (\d+); checkpoint of step \1 in ",
                         err).group(1))
    assert load_training_state(run / "checkpoints" / "latest.pt")["step"] == step
    assert not (run / "run.lock").exists(), "the lock is released"
    resumed = ok(cli(*_until(step + 2), "--out", run))
    assert f"resuming run in {run} at step {step}" in resumed.stdout
    with open(run / "metrics.csv", newline="") as f:
        steps = [int(r["step"]) for r in csv.DictReader(f) if r["split"] == "train"]
    assert steps == list(range(1, step + 3)), "every step logged once across the stop"


def test_a_killed_run_is_taken_over_and_its_orphans_removed(tmp_path):
    run = tmp_path / "killed"
    trainer = start(*ENDLESS, "--out", run)
    try:
        wait_for(checkpointed(run), trainer)
    finally:
        trainer.kill()
        trainer.wait()
    step = load_training_state(run / "checkpoints" / "latest.pt")["step"]
    orphan = run / "checkpoints" / f".latest.pt.{trainer.pid}-a1b2c3d4.tmp"
    orphan.write_bytes(b"half a checkpoint")
    resumed = ok(cli(*_until(step + 1), "--out", run))
    assert f"was left by PID {trainer.pid}" in resumed.stderr and "removed" in resumed.stderr
    assert not orphan.exists() and "done: step" in resumed.stdout


@pytest.mark.parametrize("args, message", [
    (("gan", "train", "--data", "synthetic", "--preset", "tiny", "--max-minutes", "-1", "--out", "{tmp}"),
     "--max-minutes must be a number >= 0"),
    (("gan", "train", "--data", "synthetic", "--preset", "tiny", "--val-fraction", "2", "--out", "{tmp}"),
     "--val-fraction must be a number >= 0 and < 1"),
    (("gan", "train", "--data", "synthetic", "--preset", "tiny", "--batch-size", "0", "--out", "{tmp}"),
     "--batch-size: batch_size must be"),
    (("gan", "sample", "--run", "{gan}", "--speaker", "0", "--iters", "0"), "--iters must be an integer >= 1"),
    (("gan", "sample", "--run", "{gan}", "--speaker", "0", "--out", "{tmp}/a.mp3"), "--out must name a .wav"),
    (("compare", "--run", "{gan}", "--temperature", "-1"), "--temperature must be a number >= 0"),
    (("compare", "--run", "{tmp}"), "--run {tmp}: no run directory there"),
], ids=["max-minutes", "val-fraction", "batch-size", "iters", "out", "temperature", "run"])
def test_flags_are_checked_first_in_one_line(args, message, gan_run, tmp_path, capsys):
    paths = {"gan": gan_run, "tmp": tmp_path / "new"}
    err = main_error(capsys, *[a.format(**paths) for a in args])
    assert message.format(**paths) in err
    assert not (tmp_path / "new" / "checkpoints").exists()


def test_compare_checks_the_figure_before_any_work(gan_run, tmp_path, capsys):
    folder = tmp_path / "a-file"
    folder.write_text("")
    err = main_error(capsys, "compare", "--run", str(gan_run), "--figure", str(folder / "grid.png"))
    assert "--figure" in err and "a-file" in err
