"""Helpers of the CLI tests: run `python -m melnet_fast ...` in a subprocess, and one small trained run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# Tiny everything: 16 mels at 8 kHz, crops of 16 frames, 4 training and 2 held-out synthetic clips.
TRAIN_ARGS = ["train", "--data", "synthetic", "--preset", "tiny", "--steps", "4", "--batch-size", "2",
              "--crop-frames", "16", "--synthetic-clips", "4", "--synthetic-val-clips", "2", "--val-every", "2",
              "--checkpoint-every", "2", "--val-segments", "8", "--log-every", "1", "--no-progress"]


def cli(*args, cwd=None, timeout=180) -> subprocess.CompletedProcess:
    """`python -m melnet_fast *args` with one thread per process (the CPU is shared)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("MELNET_FAST_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "melnet_fast", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd or REPO, env=env, timeout=timeout)


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result


def main_error(capsys, *args) -> str:
    """Run the command in process (the errors come before any long work) and return its one error line (exit
    status 2, no traceback)."""
    from melnet_fast.cli import main

    status = main([str(a) for a in args])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert status == 2 and len(lines) == 1 and "Traceback" not in err, (status, err)
    return lines[0]


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """A run directory trained for 4 steps by the CLI (shared: tests that change it work on a copy)."""
    run = tmp_path_factory.mktemp("cli") / "run"
    result = ok(cli(*TRAIN_ARGS, "--out", run))
    assert "held-out NLL" in result.stdout
    return run


@pytest.fixture
def run_copy(trained_run, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(trained_run, copy)
    return copy


GAN_TRAIN = ["gan", "train", "--data", "synthetic", "--preset", "tiny", "--batch-size", "2", "--synthetic-clips", "4",
             "--synthetic-val-clips", "2", "--val-every", "2", "--checkpoint-every", "2", "--val-segments", "8",
             "--log-every", "1", "--no-progress"]


@pytest.fixture(scope="session")
def gan_run(tmp_path_factory):
    """A cMelGAN run trained for 4 steps by the CLI on the synthetic genres (shared: copy it to change it)."""
    run = tmp_path_factory.mktemp("gan") / "run"
    result = ok(cli(*GAN_TRAIN, "--steps", "4", "--out", run))
    assert "4 label(s)" in result.stdout and "done: step 4" in result.stdout
    return run
