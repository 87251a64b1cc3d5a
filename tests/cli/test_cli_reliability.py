"""Probes of `melnet-fast` as a demanding user runs it, each on real processes: signals, two processes on one
run, kill -9 and resume, a lost training state, bad audio, a read-only disk. The README's reliability table
lists them."""

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile
import torch

from melnet_fast.checkpoint import read_checkpoint
from melnet_fast.train.checkpointing import load_training_state
from tests.cli.conftest import REPO, TRAIN_ARGS, cli, ok
from tests.conftest import remount_read_only

# A run that trains until stopped: checkpoints every 2 steps, no validation on the way.
ENDLESS = ["train", "--data", "synthetic", "--preset", "tiny", "--steps", "100000", "--batch-size", "2",
           "--crop-frames", "16", "--synthetic-clips", "4", "--synthetic-val-clips", "2", "--val-every", "0",
           "--checkpoint-every", "2", "--log-every", "1", "--no-progress"]


def start(*args) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("MELNET_FAST_DEBUG", None)
    return subprocess.Popen([sys.executable, "-m", "melnet_fast", *map(str, args)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition, process: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"exited with {process.returncode} before the condition:\n"
                                 f"{process.stdout.read()}\n{process.stderr.read()}")
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def checkpointed(run, at_least: int = 2):
    """A condition: the run's latest.pt holds step >= at_least."""
    def condition():
        try:
            return load_training_state(run / "checkpoints" / "latest.pt")["step"] >= at_least
        except (FileNotFoundError, ValueError):
            return False
    return condition


def one_line_error(result, *fragments) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_a_stop_signal_writes_a_checkpoint_and_exits_with_its_status(tmp_path, sig):
    run = tmp_path / "run"
    trainer = start(*ENDLESS, "--out", run)
    try:
        wait_for(checkpointed(run), trainer)
        if sig == "SIGTERM":  # while it trains: a second trainer and a sample into the run are refused
            one_line_error(cli(*ENDLESS, "--out", run), f"is in use by PID {trainer.pid}", "melnet-fast train")
            one_line_error(cli("sample", "--run", run, "--seconds", "0.5"), f"is in use by PID {trainer.pid}",
                           "pass an --out outside the run")
        trainer.send_signal(getattr(signal, sig))
        out, err = trainer.communicate(timeout=180)
    finally:
        if trainer.poll() is None:
            trainer.kill()
    assert trainer.returncode == 128 + getattr(signal, sig), err
    assert f"{sig} received: finishing the current step" in err
    step = int(re.search(rf"stopped by {sig} after step (\d+); checkpoint of step \1 in ", err).group(1))
    assert load_training_state(run / "checkpoints" / "latest.pt")["step"] == step
    assert not (run / "run.lock").exists(), "the lock is released"
    if sig == "SIGTERM":
        resumed = ok(cli(*ENDLESS[:ENDLESS.index("--steps")], "--steps", step + 2,
                         *ENDLESS[ENDLESS.index("--steps") + 2:], "--out", run))
        assert f"steps {step}..{step + 2}" in resumed.stdout
        with open(run / "metrics.csv", newline="") as f:
            steps = [int(r["step"]) for r in csv.DictReader(f) if r["split"] == "train"]
        assert steps == list(range(1, step + 3)), "every step logged once across the stop"


def test_kill_9_then_resume_is_bit_exact_and_cleans_up(tmp_path):
    """kill -9 mid-training leaves a stale lock (and here an orphan temporary file as a kill during a write
    would); the same command takes the run over, removes the orphan, and ends where a run never killed ends."""
    run = tmp_path / "killed"
    trainer = start(*ENDLESS, "--out", run)
    try:
        wait_for(checkpointed(run, 4), trainer)
    finally:
        trainer.kill()
        trainer.wait()
    assert (run / "run.lock").exists()
    step = load_training_state(run / "checkpoints" / "latest.pt")["step"]
    orphan = run / "checkpoints" / f".latest.pt.{trainer.pid}-a1b2c3d4.tmp"
    orphan.write_bytes(b"half a checkpoint")
    foreign = run / "checkpoints" / "notes.tmp"
    foreign.write_text("not the writer's")
    final = ["--steps", str(step + 3)]
    steps_at = ENDLESS.index("--steps")
    args = ENDLESS[:steps_at] + final + ENDLESS[steps_at + 2:]
    resumed = ok(cli(*args, "--out", run))
    assert f"was left by PID {trainer.pid}" in resumed.stderr and "no longer running" in resumed.stderr
    # (more than one when the kill landed during a write)
    assert re.search(rf"removed \d+ temporary file\(s\) left by an interrupted write: .*checkpoints/"
                     rf"\.latest\.pt\.{trainer.pid}-a1b2c3d4\.tmp", resumed.stderr), resumed.stderr
    assert not orphan.exists() and foreign.exists()
    straight = tmp_path / "straight"
    ok(cli(*args, "--out", straight))
    a, b = (load_training_state(r / "checkpoints" / "latest.pt") for r in (run, straight))
    assert a["step"] == b["step"] == step + 3
    for name, value in b["model"].items():
        assert torch.equal(a["model"][name], value), name
    for k, state in b["optimizer"]["state"].items():
        for key, value in state.items():
            assert torch.equal(a["optimizer"]["state"][k][key], value), (k, key)
    _, weights = read_checkpoint(run / "checkpoints" / "latest.safetensors")
    assert all(torch.equal(weights[n], v) for n, v in b["model"].items())


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_a_lost_training_state_refuses_to_resume(run_copy, damage):
    state = run_copy / "checkpoints" / "latest.pt"
    best = (run_copy / "checkpoints" / "best.safetensors").read_bytes()
    rows = (run_copy / "metrics.csv").read_text()
    if damage == "missing":
        state.unlink()
    else:
        state.write_bytes(state.read_bytes()[:5000])
    line = one_line_error(cli(*TRAIN_ARGS, "--out", run_copy, "--steps", "6"), "holds a trained run",
                          "resuming would restart at step 0", "--restart")
    assert ("is missing" if damage == "missing" else "cannot be read") in line
    assert (run_copy / "checkpoints" / "best.safetensors").read_bytes() == best
    assert (run_copy / "metrics.csv").read_text() == rows
    if damage == "missing":  # the way forward: --restart keeps the old files aside and starts over
        result = ok(cli(*TRAIN_ARGS, "--out", run_copy, "--restart"))
        moved = re.search(r"--restart: moved the old run's files to (\S+)", result.stderr).group(1)
        assert open(os.path.join(moved, "checkpoints", "best.safetensors"), "rb").read() == best
        assert open(os.path.join(moved, "metrics.csv")).read() == rows
        assert "new run in" in result.stdout and "steps 0..4" in result.stdout


def _music(seconds, sr, f0):
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * f0 * t) + 0.1 * np.sin(2 * np.pi * 3 * f0 * t)).astype(np.float32)


def test_bad_audio_is_named_and_skipped_in_training_and_eval(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for k, f0 in enumerate((220, 330, 440, 550)):
        soundfile.write(data / f"good{k}.wav", _music(1.0, 8000, f0), 8000)
    broken = _music(1.0, 8000, 300)
    broken[500] = np.nan
    soundfile.write(data / "broken.wav", broken, 8000, subtype="FLOAT")
    soundfile.write(data / "silent.wav", np.zeros(8000, np.float32), 8000)
    run = tmp_path / "run"
    args = [a if a != "synthetic" else str(data) for a in TRAIN_ARGS[:TRAIN_ARGS.index("--synthetic-clips")]]
    result = ok(cli(*args, "--val-fraction", "0.25", "--no-progress", "--out", run))
    assert "broken.wav: non-finite (1 NaN or inf samples)" in result.stderr
    assert "skipped 2 unusable file(s): 1 non-finite, 1 silent" in result.stderr
    baseline = json.loads((run / "baseline.json").read_text())
    assert np.isfinite(baseline["mean"]).all() and np.isfinite(baseline["std"]).all()
    evaluated = ok(cli("eval", "--run", run, "--data", data, "--json"))
    d = json.loads(evaluated.stdout.strip().splitlines()[-1])
    assert d["skipped"] == {"non-finite": [str(data / "broken.wav")], "silent": [str(data / "silent.wav")]}
    assert np.isfinite(d["nll_nats"]) and "skipped 1 non-finite file(s)" in evaluated.stdout


def test_a_read_only_disk_is_named_before_any_work(trained_run, small_fs):
    (small_fs / "runs").mkdir()
    remount_read_only(small_fs)
    one_line_error(cli(*TRAIN_ARGS, "--out", small_fs / "runs" / "new"), "--out", "Read-only file system")
    result = cli("sample", "--run", trained_run, "--seconds", "0.5", "--out", small_fs / "runs" / "a.wav")
    one_line_error(result, "--out", "Read-only file system")
    assert "sampling" not in result.stdout, "refused before the sampling work"
