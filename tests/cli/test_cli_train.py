"""`melnet-fast train`: a new run writes a complete run directory; the same command resumes it."""

import csv
import json

from melnet_fast.train.checkpointing import load_training_state
from tests.cli.conftest import TRAIN_ARGS, cli, ok


def test_train_writes_a_run_directory(trained_run):
    for name in ("config.json", "baseline.json", "metrics.csv",
                 "checkpoints/latest.pt", "checkpoints/latest.safetensors", "checkpoints/best.safetensors"):
        assert (trained_run / name).is_file(), name
    assert (trained_run / "samples").is_dir()
    assert list((trained_run / "tensorboard").glob("events.out.tfevents.*"))
    doc = json.loads((trained_run / "config.json").read_text())
    assert doc["model"]["n_mels"] == 16 and doc["train"]["crop_frames"] == 16 and doc["data"]["source"] == "synthetic"
    baseline = json.loads((trained_run / "baseline.json").read_text())
    assert len(baseline["mean"]) == len(baseline["std"]) == 16
    with open(trained_run / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["step"], r["split"]) for r in rows if r["split"] == "val"] == [("2", "val"), ("4", "val")]
    assert load_training_state(trained_run / "checkpoints" / "latest.pt")["step"] == 4


def test_same_command_resumes(run_copy):
    args = list(TRAIN_ARGS)
    args[args.index("--steps") + 1] = "6"
    result = ok(cli(*args, "--out", run_copy))
    assert "resuming run in" in result.stdout and "at step 4;" in result.stdout and "steps 4..6" in result.stdout
    assert "resumed from step 4" in result.stderr
    assert load_training_state(run_copy / "checkpoints" / "latest.pt")["step"] == 6
    with open(run_copy / "metrics.csv", newline="") as f:
        train_steps = [int(r["step"]) for r in csv.DictReader(f) if r["split"] == "train"]
    assert train_steps == [1, 2, 3, 4, 5, 6]
