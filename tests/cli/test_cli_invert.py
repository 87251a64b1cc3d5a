"""`melnet-fast invert IN.npy|IN.png OUT.wav`."""

import numpy as np
import pytest
import soundfile
import torch

from melnet_fast import audio
from melnet_fast.config import MelNetConfig
from melnet_fast.plots import save_spectrogram_image
from melnet_fast.synthetic import synth_clip
from tests.cli.conftest import cli, ok


@pytest.fixture(scope="module")
def real_spectrogram():
    config = MelNetConfig.preset("tiny")
    waveform, _ = synth_clip(3, config.sample_rate, 0.5)
    return audio.log_mel_spectrogram(torch.from_numpy(waveform), config)  # [32, 16]


@pytest.mark.parametrize("kind", ["npy", "png"])
def test_invert(kind, real_spectrogram, tmp_path):
    path = tmp_path / f"spec.{kind}"
    if kind == "npy":
        np.save(path, real_spectrogram.numpy())
    else:
        save_spectrogram_image(path, real_spectrogram)
    out = tmp_path / "out.wav"
    result = ok(cli("invert", path, out, "--preset", "tiny", "--method", "griffin_lim", "--iters", "16"))
    assert "spectral convergence" in result.stdout
    waveform, rate = soundfile.read(out, dtype="float32")
    assert rate == 8000 and len(waveform) == (real_spectrogram.shape[0] - 1) * 128
    # the audio's own spectrogram is close to the one inverted (Griffin-Lim, few iterations: loosely)
    again = audio.log_mel_spectrogram(torch.from_numpy(waveform), MelNetConfig.preset("tiny"))
    assert (again[1:-1] - real_spectrogram[1:-1]).abs().mean() < 0.5
