"""`melnet-fast gan train / sample` and `melnet-fast compare` on small runs."""

import json
import shutil

import numpy as np
import pytest
import soundfile

from melnet_fast.cli import main
from tests.cli.conftest import GAN_TRAIN, cli, ok


def test_gan_train_resumes_its_run(gan_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(gan_run, run)
    result = ok(cli(*GAN_TRAIN, "--steps", "6", "--out", run))
    assert f"resuming run in {run} at step 4" in result.stdout and "done: step 6" in result.stdout
    assert "resumed from step 4" in (run / "train.log").read_text()
    rows = (run / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("step,split,time,elapsed_s,d_loss,g_loss")
    assert [int(r.split(",")[0]) for r in rows[1:] if ",train," in r] == [1, 2, 3, 4, 5, 6]
    assert json.loads((run / "config.json").read_text())["model_kind"] == "cmelgan"


def test_gan_sample_writes_audio_figure_and_values(gan_run, tmp_path):
    out = tmp_path / "out" / "g.wav"
    result = ok(cli("gan", "sample", "--run", gan_run, "--seconds", "0.5", "--speaker", "lofi", "--count", "2",
                    "--out", out, "--inversion", "griffin_lim", "--iters", "3"))
    assert "2 x 2 clip(s) of 16 frames x 16 mels" in result.stdout and "label lofi" in result.stdout
    for k in (1, 2):
        target = out.with_name(f"g-{k}.wav")
        assert np.load(target.with_suffix(".npy")).shape == (32, 16)  # 0.5 s = 31.25 frames: two 16-frame clips
        info = soundfile.info(target)
        assert info.samplerate == 8000 and info.frames == 31 * 128
        assert target.with_suffix(".png").stat().st_size > 1000


@pytest.mark.parametrize("args, message", [
    (("sample", "--run", "{gan}"), "holds a cmelgan run, not a melnet one (use `melnet-fast gan sample`)"),
    (("eval", "--run", "{gan}", "--data", "synthetic"), "holds a cmelgan run"),
    (("gan", "sample", "--run", "{melnet}"), "holds a melnet run, not a cmelgan one"),
    (("gan", "train", "--out", "{melnet}"), "resume it with `melnet-fast train`"),
    (("train", "--out", "{gan}"), "resume it with `melnet-fast gan train`"),
    (("gan", "sample", "--run", "{gan}"), "conditioned on 4 speakers / labels: pass --speaker ID (0=classical"),
    (("gan", "sample", "--run", "{gan}", "--speaker", "0", "--seconds", "-1"), "--seconds must be a number > 0"),
    (("gan", "train", "--data", "synthetic", "--preset", "huge", "--out", "{tmp}"),
     "unknown cMelGAN preset 'huge'; presets: tiny, demo, small, large"),
    (("compare", "--run", "{gan}", "--samples", "0"), "--samples must be an integer >= 1"),
], ids=["sample", "eval", "gan-sample", "gan-train", "train", "speaker", "seconds", "preset", "compare"])
def test_user_errors_are_one_line(args, message, gan_run, trained_run, tmp_path, capsys):
    """In-process (the same main() as the command, without starting a Python per case)."""
    paths = {"gan": gan_run, "melnet": trained_run, "tmp": tmp_path / "new"}
    status = main([a.format(**paths) for a in args])
    err = capsys.readouterr().err
    assert status == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_compare_scores_both_kinds_of_run(trained_run, gan_run, tmp_path):
    figure = tmp_path / "grid.png"
    result = ok(cli("compare", "--run", trained_run, "--run", gan_run, "--data", "synthetic", "--json",
                    "--classifiers", "2", "--classifier-steps", "20", "--figure", figure))
    assert figure.stat().st_size > 10_000
    d = json.loads(result.stdout.strip().splitlines()[-1])
    assert d["frames"] == 16 and d["reference_segments"] == 30 and len(d["label_names"]) == 4
    assert d["classifiers"] == 2 and d["classifier_accuracy_std"] >= 0
    melnet, gan, reference = d["models"]
    assert (melnet["kind"], gan["kind"], reference["kind"]) == ("melnet", "cmelgan", "reference")
    assert melnet["label_accuracy"] is None  # an unconditional MelNet: no label to recover
    assert np.isfinite(melnet["nll_nats"]) and gan["nll_nats"] is None and np.isfinite(reference["nll_nats"])
    assert 0 <= gan["label_accuracy"] <= 1 and 0 <= d["classifier_accuracy"] <= 1
    assert gan["parameters"] > gan["sampling_parameters"] > 0 and melnet["train_steps"] == 4
    assert all(m["frechet"] >= 0 and m["frechet_std"] >= 0 and m["samples"] == 30 for m in d["models"])
    assert d["frechet_floor"] >= 0 and gan["label_accuracy_std"] >= 0
    assert melnet["train_audio_khz"] > 0 and gan["train_audio_khz"] > 0
    assert "| held-out real (floor: training crops) |" in result.stdout and " ± " in result.stdout
