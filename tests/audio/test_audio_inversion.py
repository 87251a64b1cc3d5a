"""Spectrogram -> waveform: Griffin-Lim and gradient inversion reach a spectral convergence (SC) bound.

Test signal: a chirp (stepping up from f0), a 440 Hz tone and a noise burst, 0.5 s at 8 kHz, 40 mels, hop 64
(63 frames). Measured SC on four such signals (f0 = 150, 250, 350, 450 Hz), seed = the signal's index:
  torchaudio InverseMelScale alone, then 32 Griffin-Lim iterations     0.256 - 0.289
  with the 100 NNLS refinements (default), 32 Griffin-Lim iterations   0.110 - 0.121   bound 0.16
  gradient (L-BFGS) 50 steps from that Griffin-Lim result              0.042 - 0.069   bound 0.09
      (0.38 - 0.59 of its starting SC)                                                 bound 0.7
  gradient 32 steps from noise vs Griffin-Lim 32 from the same noise   0.052 - 0.068 vs ~0.12
Bounds sit ~30% above the worst measurement; a broken phase update or a wrong power scale gives SC >= 0.27
(random phase on the NNLS magnitude) or ~1 (noise).
"""

import math

import pytest
import torch
import torchaudio

from melnet_fast import audio

SETTINGS = audio.AudioSettings(sample_rate=8000, n_mels=40, hop_length=64)


def test_signal(index=0, sr=8000, n=4000):
    g = torch.Generator().manual_seed(index)
    t = torch.arange(n, dtype=torch.float64) / sr
    f0 = 150 + 100 * index
    w = 0.3 * torch.sin(2 * math.pi * (f0 * t + 0.5 * 2500 * t**2)) + 0.2 * torch.sin(2 * math.pi * 440 * t)
    w += 0.2 * torch.randn(n, generator=g, dtype=torch.float64) * ((t > 0.2) & (t < 0.3))
    return w.float()


test_signal.__test__ = False  # a helper, not a test


pytestmark = pytest.mark.usefixtures("one_thread")  # fixture in tests/conftest.py


@pytest.fixture(scope="module")
def mel():
    return audio.mel_spectrogram(test_signal(1), SETTINGS)


def test_griffin_lim_reaches_bound(mel):
    w, info = audio.griffin_lim(mel, SETTINGS, n_iter=32, seed=1, progress=False)
    assert w.shape == (audio.num_samples(mel.shape[0], SETTINGS),) and torch.isfinite(w).all()
    assert info["method"] == "griffin_lim" and len(info["history"]) == 32
    assert info["spectral_convergence"] < 0.16, info["spectral_convergence"]
    assert info["history"][-1] < 0.8 * info["history"][0]
    # info's figure is the SC of the waveform it returned.
    sc = audio.spectral_convergence(mel, audio.mel_spectrogram(w, SETTINGS))
    assert sc == pytest.approx(info["spectral_convergence"], rel=1e-4)


def test_griffin_lim_loop_equals_torchaudio(mel):
    # Zero initial phase and no NNLS refinement is exactly torchaudio's griffinlim on InverseMelScale's output.
    ours, _ = audio.griffin_lim(mel, SETTINGS, n_iter=8, init="zeros", nnls_iter=0, progress=False)
    s = SETTINGS
    window = torch.hann_window(s.win_length)
    linear = torchaudio.transforms.InverseMelScale(s.n_freqs, s.n_mels, s.sample_rate, driver="gelsd")(
        (mel * (window.sum() / 2) ** 2).T)
    theirs = torchaudio.functional.griffinlim(linear, window, s.n_fft, s.hop_length, s.win_length, power=2.0,
                                              n_iter=8, momentum=0.99, length=len(ours), rand_init=False)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)


def test_gradient_inversion_improves_on_its_griffin_lim_start(mel):
    w, info = audio.gradient_inversion(mel, SETTINGS, n_iter=50, seed=1, progress=False)
    assert w.shape == (audio.num_samples(mel.shape[0], SETTINGS),) and torch.isfinite(w).all()
    assert info["spectral_convergence"] < 0.09, info["spectral_convergence"]
    assert info["spectral_convergence"] < 0.7 * info["initial_spectral_convergence"]
    sc = audio.spectral_convergence(mel, audio.mel_spectrogram(w, SETTINGS))
    assert sc == pytest.approx(info["spectral_convergence"], rel=1e-4)


def test_gradient_beats_griffin_lim_from_the_same_noise(mel):
    g = torch.Generator().manual_seed(3)
    noise = 0.01 * torch.randn(audio.num_samples(mel.shape[0], SETTINGS), generator=g)
    _, gl = audio.griffin_lim(mel, SETTINGS, n_iter=32, init=noise, progress=False)
    _, grad = audio.gradient_inversion(mel, SETTINGS, n_iter=32, init=noise, progress=False)
    assert grad["initial_spectral_convergence"] > 0.9  # it really starts from noise
    assert grad["spectral_convergence"] < gl["spectral_convergence"], (grad["spectral_convergence"],
                                                                       gl["spectral_convergence"])


@pytest.mark.parametrize("mode", [torch.no_grad, torch.inference_mode], ids=["no_grad", "inference_mode"])
def test_gradient_inversion_works_without_grad_mode(mel, mode):
    with mode():
        target = mel.clone()
        w, info = audio.gradient_inversion(target, SETTINGS, n_iter=5, init="noise", progress=False)
    assert info["spectral_convergence"] < 0.5 * info["initial_spectral_convergence"]
    assert not w.requires_grad


def test_adam_option_descends(mel):
    _, info = audio.gradient_inversion(mel, SETTINGS, n_iter=40, optimizer="adam", progress=False)
    assert info["spectral_convergence"] < 0.9 * info["initial_spectral_convergence"]


@pytest.mark.parametrize("method", ["griffin_lim", "gradient"])
def test_spectrogram_to_waveform_from_normalised_log_mel(method):
    x = audio.log_mel_spectrogram(test_signal(2), SETTINGS)
    w, info = audio.spectrogram_to_waveform(x, SETTINGS, method=method, n_iter=20, progress=False)
    assert info["method"] == method and w.shape == (audio.num_samples(x.shape[0], SETTINGS),)
    back = audio.log_mel_spectrogram(w, SETTINGS)
    assert back.shape == x.shape
    assert info["spectral_convergence"] < 0.3
    with pytest.raises(ValueError, match="method"):
        audio.spectrogram_to_waveform(x, SETTINGS, method="wavenet")
    with pytest.raises(ValueError, match="n_mels"):
        audio.spectrogram_to_waveform(x[:, :30], SETTINGS)


def test_progress_bar_can_be_switched_off(mel, capsys):
    audio.griffin_lim(mel, SETTINGS, n_iter=3, progress=False)
    assert capsys.readouterr().err == ""
    audio.griffin_lim(mel, SETTINGS, n_iter=3, progress=True)
    assert "griffin-lim" in capsys.readouterr().err
