"""`melnet-fast tts`: audio, spectrogram and alignment plots of a text model's run, and clear errors."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from melnet_fast import MelNet
from melnet_fast.train import run_lock
from melnet_fast.train.metrics import read_metrics
from melnet_fast.train.run_dir import RunDir
from tests.cli.conftest import cli, main_error, ok
from tests.model.helpers import tts_config
from tests.train.test_run_lock import HOLDER


@pytest.fixture(scope="module")
def tts_run(tmp_path_factory) -> Path:
    """A run directory holding an untrained tts_tiny model (its small initial head keeps samples finite)."""
    root = tmp_path_factory.mktemp("tts") / "run"
    run = RunDir(root).create()
    config = tts_config(n_mels=16)
    run.write_config(config, {}, {"source": "synthetic"})
    torch.manual_seed(0)
    model = MelNet(config)
    model.save(run.best_model)
    return root


def test_tts_writes_audio_and_alignment(tts_run, tmp_path):
    out = tmp_path / "speech.wav"
    result = ok(cli("tts", "--run", tts_run, "--text", "Hello there.", "--text", "Two",
                    "--out", out, "--max-seconds", 0.5, "--iters", 2, "--device", "cpu"))
    for k in (1, 2):
        wav = tmp_path / f"speech-{k}.wav"
        assert wav.stat().st_size > 44
        assert (tmp_path / f"speech-{k}-alignment.png").stat().st_size > 0
        assert (tmp_path / f"speech-{k}.png").stat().st_size > 0
        spec = np.load(tmp_path / f"speech-{k}.npy")
        assert spec.shape[1] == 16 and 1 <= spec.shape[0] <= 32 and np.isfinite(spec).all()
    assert "speech-1.wav" in result.stdout and "s," in result.stdout


@pytest.mark.parametrize("args,message", [
    (["--text", "日本"], "outside the model's vocabulary"),
    (["--text", "   "], "is empty after normalisation"),
    (["--text", "ok", "--stop-threshold", "1.5"], "--stop-threshold must lie in"),
])
def test_tts_bad_input_is_one_clear_line(tts_run, tmp_path, args, message):
    result = cli("tts", "--run", tts_run, *args, "--out", tmp_path / "x.wav", "--device", "cpu")
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("args, fragments", [
    pytest.param(["--temperature", "nan"], ["--temperature must be a number >= 0, got nan"], id="temperature-nan"),
    pytest.param(["--iters", "0"], ["--iters must be an integer >= 1, got 0"], id="iters-0"),
    pytest.param(["--max-seconds", "-1"], ["--max-seconds must be a number > 0, got -1"], id="max-seconds-negative"),
    pytest.param(["--max-seconds", "1e-9"], ["--max-seconds gives 2 frames; the audio needs at least 6"],
                 id="max-seconds-tiny"),
    pytest.param(["--max-seconds", "1e7"], ["--max-seconds / --text: sampling 1 x 625000000 frames needs about",
                                            "of memory"], id="max-seconds-huge"),
    pytest.param(["--stop-threshold", "nan"], ["--stop-threshold must lie in (0, 1), got nan"],
                 id="stop-threshold-nan"),
    pytest.param(["--speaker", "1"], ["--speaker was given but this model is not conditioned"], id="speaker"),
    pytest.param(["--device", "tpu"], ["unknown device 'tpu'"], id="device-tpu"),
    pytest.param(["--out", "{file}/x.wav"], ["--out", "is a file, not a directory"], id="out-under-a-file"),
    pytest.param(["--out", "{dir}/x.mp3"], ["--out must name a .wav file"], id="out-not-wav"),
])
def test_tts_mistakes_are_one_line_before_any_output(capsys, tts_run, tmp_path, args, fragments):
    (tmp_path / "file").write_text("not a folder")
    args = [a.format(file=tmp_path / "file", dir=tmp_path) for a in args]
    out = [] if "--out" in args else ["--out", tmp_path / "out" / "s.wav"]
    line = main_error(capsys, "tts", "--run", tts_run, "--text", "ok", *out, *args,
                       *([] if "--device" in args else ["--device", "cpu"]))
    for fragment in fragments:
        assert fragment in line, line
    assert not (tmp_path / "out").exists(), "nothing is written before the checks pass"


def test_tts_checks_every_output_file_before_sampling(capsys, tts_run, tmp_path):
    (tmp_path / "o" / "s-2-alignment.png").mkdir(parents=True)
    line = main_error(capsys, "tts", "--run", tts_run, "--text", "one", "--text", "two", "--out",
                       tmp_path / "o" / "s.wav", "--device", "cpu")
    assert "--out" in line and "s-2-alignment.png is a directory; expected a file name" in line, line
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["s-2-alignment.png"]


def test_tts_into_a_run_another_process_writes_is_refused(capsys, tts_run):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, run_lock.__file__, str(tts_run)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        line = main_error(capsys, "tts", "--run", tts_run, "--text", "ok", "--out",
                           tts_run / "samples" / "s.wav", "--device", "cpu")
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert f"is in use by PID {holder.pid}" in line and "pass an --out outside the run" in line, line
    assert not (tts_run / "samples" / "s.wav").exists()


def test_sample_on_a_text_run_points_to_tts(tts_run, tmp_path):
    result = cli("sample", "--run", tts_run, "--out", tmp_path / "x.wav", "--device", "cpu")
    assert result.returncode == 2 and "melnet-fast tts --run" in result.stderr


def test_tts_on_a_run_without_text_is_a_clear_error(trained_run, tmp_path):
    result = cli("tts", "--run", trained_run, "--text", "hello", "--out", tmp_path / "x.wav", "--device", "cpu")
    assert result.returncode == 2 and "not a text-to-speech run" in result.stderr


@pytest.fixture(scope="module")
def text_corpus(tmp_path_factory) -> Path:
    """A CSV manifest (path, text) of 6 short wav files: a tone per word."""
    from melnet_fast.audio import save_wav

    root = tmp_path_factory.mktemp("corpus")
    rows = ["path,text"]
    for k, text in enumerate(["one tone", "two tones", "a third", "four", "five and more", "six"]):
        t = np.arange(int(8000 * (0.4 + 0.1 * k))) / 8000
        wave = 0.3 * np.sin(2 * np.pi * (200 + 50 * k) * t) * np.minimum(1, 10 * t)
        save_wav(root / f"clip{k}.wav", torch.from_numpy(wave).float(), 8000)
        rows.append(f"clip{k}.wav,{text}")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return root / "manifest.csv"


def test_train_eval_and_speak_with_a_text_corpus(text_corpus, tmp_path):
    run = tmp_path / "run"
    ok(cli("train", "--data", text_corpus, "--preset", "tts_tiny", "--steps", 2, "--batch-size", 2,
           "--val-every", 2, "--checkpoint-every", 2, "--log-every", 1, "--no-progress", "--out", run))
    result = ok(cli("eval", "--run", run, "--data", text_corpus, "--json"))
    doc = json.loads(result.stdout.strip().splitlines()[-1])
    assert np.isfinite(doc["nll_nats"]) and set(doc["tiers"]) == {"1", "2", "3"} and doc["texts"] == "own"
    other = json.loads(ok(cli("eval", "--run", run, "--data", text_corpus, "--json", "--split", "all",
                              "--other-texts")).stdout.strip().splitlines()[-1])
    assert other["texts"] == "other" and np.isfinite(other["tiers"]["1"]["nll_nats"])
    ok(cli("tts", "--run", run, "--text", "two tones", "--out", tmp_path / "s.wav", "--max-seconds", 0.3,
           "--iters", 2, "--device", "cpu"))
    assert (tmp_path / "s-alignment.png").is_file()
    # The same corpus with a NaN and a silent file added: those are skipped and listed, the rest scores the same.
    import soundfile

    bad = tmp_path / "bad_corpus"
    bad.mkdir()
    rows = text_corpus.read_text().splitlines()
    for row in rows[1:]:
        (bad / row.split(",")[0]).symlink_to(text_corpus.parent / row.split(",")[0])
    broken = np.full(4000, 0.1, np.float32)
    broken[100] = np.nan
    soundfile.write(bad / "nan.wav", broken, 8000, subtype="FLOAT")
    soundfile.write(bad / "silent.wav", np.zeros(4000, np.float32), 8000)
    (bad / "manifest.csv").write_text("\n".join(rows + ["nan.wav,not a number", "silent.wav,quiet"]) + "\n")
    result = ok(cli("eval", "--run", run, "--data", bad / "manifest.csv", "--json"))
    with_bad = json.loads(result.stdout.strip().splitlines()[-1])
    assert with_bad["skipped"] == {"non-finite": [str(bad / "nan.wav")], "silent": [str(bad / "silent.wav")]}
    assert "skipped 1 non-finite file(s)" in result.stdout
    assert with_bad["nll_nats"] == pytest.approx(doc["nll_nats"], rel=1e-5)


def test_training_logs_the_guided_attention_apart_and_starts_at_the_data_rate(text_corpus, tmp_path):
    run = tmp_path / "run"
    result = ok(cli("train", "--data", text_corpus, "--preset", "tts_tiny", "--steps", 2, "--batch-size", 2,
                    "--val-every", 0, "--checkpoint-every", 0, "--log-every", 1, "--no-progress", "--out", run,
                    "--set", "guided_attention=0.5", "--set", "guided_attention_steps=2"))
    said = re.search(r"attention starts at the training data's speaking rate: ([0-9.]+) symbols",
                     result.stderr + result.stdout)
    assert said is not None
    rows = [r for r in read_metrics(run / "metrics.csv") if r["split"] == "train"]
    assert [float(r["guided_attention_weight"]) for r in rows] == [0.5, 0.25]
    assert all(0 < float(r["guided_attention"]) < 1 and r["nll_nats"] for r in rows)
    # the measured rate is in the saved weights: the window's step bias is log(symbols / frames) of the data
    model = MelNet.load(run / "checkpoints" / "best.safetensors")
    K = model.config.attention_mixtures
    rate = float(model.tiers[0].network.centralized.attention.window.bias[:K].detach().exp().mean())
    assert rate == pytest.approx(float(said.group(1)), rel=0.02), "two steps at lr 1e-4 barely move it"
    assert float(said.group(1)) != pytest.approx(0.5, rel=0.1), "the corpus speaks at another rate than the default"


def test_eval_other_texts_needs_a_text_model(capsys, trained_run):
    line = main_error(capsys, "eval", "--run", trained_run, "--data", "synthetic", "--other-texts")
    assert "--other-texts: this run's model is not conditioned on text" in line


def test_a_text_model_needs_texts(tmp_path):
    result = cli("train", "--data", "synthetic", "--preset", "tts_tiny", "--steps", 1, "--synthetic-clips", 2,
                 "--synthetic-val-clips", 1, "--no-progress", "--out", tmp_path / "run")
    assert result.returncode == 2 and "no item is usable by a text model: 2 without text" in result.stderr
