"""User errors: one clear line on stderr, a non-zero exit, no traceback."""

import json
import math

import numpy as np
import pytest

from tests.cli.conftest import cli, main_error


def _one_line_error(result, *fragments):
    assert result.returncode == 2, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_missing_data(tmp_path):
    _one_line_error(cli("train", "--data", tmp_path / "nowhere", "--preset", "tiny", "--out", tmp_path / "r"),
                    "error:", "no such folder or CSV file")


def test_unknown_preset(tmp_path):
    _one_line_error(cli("train", "--data", "synthetic", "--preset", "huge", "--out", tmp_path / "r"),
                    "unknown preset 'huge'", "tiny")


def test_training_another_model_into_a_run(run_copy):
    _one_line_error(cli("train", "--data", "synthetic", "--preset", "small", "--out", run_copy),
                    "different model config", "hidden_size")


def test_incompatible_checkpoint(run_copy, tmp_path):
    config = json.loads((run_copy / "config.json").read_text())
    config["model"]["hidden_size"] = 12
    (run_copy / "config.json").write_text(json.dumps(config))
    _one_line_error(cli("eval", "--run", run_copy, "--data", "synthetic"), "incompatible checkpoint")


@pytest.mark.parametrize("case", ["no-run", "no-settings", "wrong-mels"])
def test_sample_and_invert_inputs(case, trained_run, tmp_path):
    spec = tmp_path / "spec.npy"
    np.save(spec, np.zeros((8, 16 if case != "wrong-mels" else 10), dtype=np.float32))
    if case == "no-run":
        _one_line_error(cli("sample", "--run", tmp_path / "nothing", "--out", tmp_path / "a.wav"), "no run directory")
    elif case == "no-settings":
        _one_line_error(cli("invert", spec, tmp_path / "a.wav"), "pass --run RUN_DIR or --preset NAME")
    else:
        _one_line_error(cli("invert", spec, tmp_path / "a.wav", "--run", trained_run), "10 mel channels", "n_mels=16")


# ------------------------------------------------- every mistake a user can make: one line, before the work

SMALL_TRAIN = ["train", "--data", "synthetic", "--preset", "tiny", "--steps", "4", "--batch-size", "2",
               "--crop-frames", "16", "--synthetic-clips", "4", "--synthetic-val-clips", "2", "--no-progress"]


@pytest.mark.parametrize("args, fragments", [
    pytest.param(["--out", "{file}"], ["--out", "is a file; expected a directory"], id="out-is-a-file"),
    pytest.param(["--out", "{file}/run"], ["--out", "is a file, not a directory"], id="out-under-a-file"),
    pytest.param(["--device", "tpu"], ["--device", "auto, cpu, cuda or cuda:N", "'tpu'"], id="device-tpu"),
    pytest.param(["--val-fraction", "1.5"], ["--val-fraction must be a number >= 0 and < 1, got 1.5"],
                 id="val-fraction-1.5"),
    pytest.param(["--val-fraction", "-0.1"], ["--val-fraction", "got -0.1"], id="val-fraction-negative"),
    pytest.param(["--val-fraction", "nan"], ["--val-fraction", "got nan"], id="val-fraction-nan"),
    pytest.param(["--steps", "-5"], ["--steps", ">= 0, got -5"], id="steps-negative"),
    pytest.param(["--bucket-batches", "-1"], ["--bucket-batches", ">= 0, got -1"], id="bucket-batches-negative"),
    pytest.param(["--max-minutes", "-1"], ["--max-minutes must be a number >= 0"], id="max-minutes-negative"),
    pytest.param(["--synthetic-clips", "0"], ["--synthetic-clips must be an integer >= 1"], id="no-clips"),
    pytest.param(["--tier-assignment", "bogus"], ["tier assignment 'bogus' must be 'tier', 'data' or look like"],
                 id="tier-assignment"),
    pytest.param(["--set", "sample_rate=100"], ["--data synthetic", "needs sample_rate >= 8000 Hz", "got 100"],
                 id="sample-rate-100"),
    pytest.param(["--batch-size", "9"], ["--batch-size", "9 is larger than the training data (4 items)"],
                 id="batch-larger-than-data"),
    pytest.param(["--batch-size", "100000", "--crop-frames", "100000"],
                 ["--batch-size / --crop-frames", "needs about", "TiB of memory"], id="batch-beyond-memory"),
])
def test_train_mistakes(capsys, tmp_path, args, fragments):
    (tmp_path / "file").write_text("not a folder")
    args = [a.format(file=tmp_path / "file") for a in args]
    out = [] if "--out" in args else ["--out", tmp_path / "run"]
    line = main_error(capsys, *SMALL_TRAIN, *out, *args)
    for fragment in fragments:
        assert fragment in line, line


def test_steps_below_the_runs_step(capsys, run_copy):
    line = main_error(capsys, *SMALL_TRAIN, "--out", run_copy, "--steps", "3")
    assert "--steps 3 is below the step the run" in line and "(4)" in line


def _wav(path, samples):
    import soundfile

    soundfile.write(path, np.asarray(samples, np.float32)[:, None], 8000, subtype="FLOAT")
    return path


@pytest.mark.parametrize("args, fragments", [
    pytest.param(["--seconds", "1e-9"], ["--seconds gives 2 frames; the audio needs at least 6"], id="seconds-tiny"),
    pytest.param(["--seconds", "1e6"], ["--seconds / --count: sampling 1 x 62500000 frames needs about",
                                        "of memory"], id="seconds-huge"),
    pytest.param(["--seconds", "nan"], ["--seconds must be a number > 0, got nan"], id="seconds-nan"),
    pytest.param(["--iters", "-5"], ["--iters must be an integer >= 1, got -5"], id="iters-negative"),
    pytest.param(["--count", "0"], ["--count must be an integer >= 1, got 0"], id="count-0"),
    pytest.param(["--temperature", "nan"], ["--temperature must be a number >= 0, got nan"], id="temperature-nan"),
    pytest.param(["--out", "{file}/x.wav"], ["--out", "is a file, not a directory"], id="out-under-a-file"),
    pytest.param(["--out", "{dir}/x.mp3"], ["--out must name a .wav file"], id="out-not-wav"),
    pytest.param(["--prime", "{dir}/header.wav"], ["--prime", "holds 0 samples", "needs at least 385"],
                 id="prime-header-only"),
    pytest.param(["--prime", "{dir}/one.wav"], ["--prime", "holds 1 samples"], id="prime-one-sample"),
    pytest.param(["--prime", "{dir}/nan.wav"], ["--prime", "holds 1 NaN or inf samples"], id="prime-nan"),
])
def test_sample_mistakes(capsys, trained_run, tmp_path, args, fragments):
    (tmp_path / "file").write_text("not a folder")
    _wav(tmp_path / "header.wav", [])
    _wav(tmp_path / "one.wav", [0.1])
    _wav(tmp_path / "nan.wav", [0.1] * 1000 + [math.nan] + [0.1] * 1000)
    args = [a.format(file=tmp_path / "file", dir=tmp_path) for a in args]
    out = [] if "--out" in args else ["--out", tmp_path / "out" / "s.wav"]
    line = main_error(capsys, "sample", "--run", trained_run, "--seconds", "0.5", *out, *args)
    for fragment in fragments:
        assert fragment in line, line
    assert not (tmp_path / "out").exists(), "nothing is written before the checks pass"


def test_eval_and_invert_mistakes(capsys, trained_run, tmp_path):
    assert "--batch-size must be an integer >= 1, got 0" in main_error(
        capsys, "eval", "--run", trained_run, "--data", "synthetic", "--batch-size", "0")
    spec = tmp_path / "spec.npy"
    np.save(spec, np.zeros((3, 16), np.float32))
    assert "--iters must be an integer >= 1" in main_error(
        capsys, "invert", spec, tmp_path / "a.wav", "--preset", "tiny", "--iters", "0")
    assert "has 3 frames; the inversion needs at least 5" in main_error(
        capsys, "invert", spec, tmp_path / "a.wav", "--preset", "tiny")
