"""`melnet-fast sample` and `melnet-fast eval` on a small trained run."""

import json

import numpy as np
import soundfile
import torch

from melnet_fast import audio
from melnet_fast.config import MelNetConfig
from melnet_fast.synthetic import synth_clip
from tests.cli.conftest import cli, ok


def test_sample_writes_audio_figure_and_values(trained_run, tmp_path):
    config = MelNetConfig.preset("tiny")
    prime_wav = tmp_path / "prime.wav"
    waveform, _ = synth_clip(7, config.sample_rate, 0.3)
    audio.save_wav(prime_wav, torch.from_numpy(waveform), config.sample_rate)
    out = tmp_path / "out" / "s.wav"
    result = ok(cli("sample", "--run", trained_run, "--seconds", "0.5", "--out", out, "--temperature", "0.7",
                    "--prime", prime_wav, "--inversion", "griffin_lim", "--iters", "3"))
    assert "primed with 18 frames" in result.stdout and "nats/element" in result.stdout
    frames = 32  # 0.5 s at 8000 Hz / hop 128 = 31.25 -> rounded up to a multiple of 2
    spec = np.load(out.with_suffix(".npy"))
    assert spec.shape == (frames, 16)
    want_prime = audio.log_mel_spectrogram(torch.from_numpy(soundfile.read(prime_wav, dtype="float32")[0]), config)
    np.testing.assert_allclose(spec[:18], want_prime[:18].numpy(), atol=2e-4)  # PCM_16 round trip of the prime
    info = soundfile.info(out)
    assert info.samplerate == 8000 and info.frames == (frames - 1) * 128
    assert out.with_suffix(".png").stat().st_size > 1000


def test_eval_json_reports_model_and_baseline(trained_run):
    result = ok(cli("eval", "--run", trained_run, "--data", "synthetic", "--json", "--max-segments", "6"))
    d = json.loads(result.stdout.strip().splitlines()[-1])
    assert d["segments"] == 6 and d["segment_frames"] == 16
    assert set(d["tiers"]) == {"1", "2", "3"}
    assert np.isfinite(d["nll_nats"]) and np.isfinite(d["baseline_nll_nats"])
    assert d["nll_bits"] == np.float64(d["nll_nats"]) / np.log(2)
    elements = sum(t["elements"] for t in d["tiers"].values())
    assert elements == 6 * 16 * 16
    overall = sum(t["nll_nats"] * t["elements"] for t in d["tiers"].values()) / elements
    assert abs(overall - d["nll_nats"]) < 1e-9
    assert "baseline" in result.stdout.splitlines()[1]
    fidelity = d["samples"]["fidelity"]  # 4 generated clips of 4 s against the held-out clips
    assert d["samples"]["temperature"] == 1.0 and fidelity["generated_clips"] == 4
    assert np.isfinite(fidelity["mean_gap"]) and len(fidelity["real_mean"]) == 16
    assert "sample fidelity at temperature 1" in result.stdout and "log floor" in result.stdout
    judged = d["samples"]["classifier"]  # labelled data: the label classifiers judge 16-frame windows
    assert judged["label_accuracy"] is None  # an unconditional model: no label to recover
    assert judged["frames"] == 16 and judged["samples"] == 4 * (250 // 16) and judged["reference_segments"] > 2
    assert judged["frechet"] > 0 and judged["frechet_floor"] > 0 and judged["classifiers"] == 2
    assert "Fréchet distance of classifier features" in result.stdout


def test_diverging_model_samples_finite_values_with_a_warning(run_copy, tmp_path):
    """A model whose draws run away (its head scaled up): the .npy holds finite values in the sampler's range,
    and the command says what happened."""
    from melnet_fast.log_mel_scale import CEILING, FLOOR
    from melnet_fast.model import MelNet

    best = run_copy / "checkpoints" / "best.safetensors"
    model = MelNet.load(best)
    with torch.no_grad():
        for tier in model.tiers:
            tier.network.head.weight.mul_(50.0)
            tier.network.head.bias.mul_(50.0)
    model.save(best)
    out = tmp_path / "d.wav"
    result = ok(cli("sample", "--run", run_copy, "--seconds", "0.5", "--out", out, "--temperature", "1",
                    "--inversion", "griffin_lim", "--iters", "2"))
    spec = np.load(out.with_suffix(".npy"))
    assert np.isfinite(spec).all() and spec.min() >= np.float32(FLOOR) and spec.max() <= np.float32(CEILING)
    assert "ran away" in result.stderr and (spec == np.float32(CEILING)).any()


def test_a_spectrogram_shorter_than_the_inversion_needs_gets_silence_for_its_audio(tmp_path, one_thread):
    """A text model may stop after fewer frames than the inversion's window: the audio gets silent frames after
    them (said in the info); the .npy keeps the drawn values only (in the samplers' range)."""
    from melnet_fast.cli.sample_cmd import write_outputs
    from melnet_fast.log_mel_scale import SAMPLE_RANGE

    config = MelNetConfig.preset("tiny")
    drawn = torch.randn(config.time_factor, config.n_mels)
    need = audio.min_frames(config)
    assert drawn.shape[0] < need
    info = write_outputs(tmp_path / "x.wav", drawn, config, "griffin_lim", 2, progress=False)
    assert info["padded"] == need - drawn.shape[0]
    assert soundfile.info(tmp_path / "x.wav").frames == audio.num_samples(need, config)
    np.testing.assert_array_equal(np.load(tmp_path / "x.npy"), drawn.clamp(*SAMPLE_RANGE).numpy())
    assert (tmp_path / "x.png").stat().st_size > 0
    assert write_outputs(tmp_path / "y.wav", torch.randn(need, config.n_mels), config, "griffin_lim", 2,
                         progress=False)["padded"] == 0
