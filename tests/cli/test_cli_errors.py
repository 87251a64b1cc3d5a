"""User errors: one clear line on stderr, a non-zero exit, no traceback."""

import json

import numpy as np
import pytest

from tests.cli.conftest import cli


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
