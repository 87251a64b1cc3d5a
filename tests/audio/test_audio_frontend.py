"""Audio front end: settings, waveform -> log-mel [T, F], the normalisation, resampling, file I/O."""

import math
import types

import numpy as np
import pytest
import soundfile
import torch

from melnet_fast import audio

SR = 8000
SMALL = audio.AudioSettings(sample_rate=SR, n_mels=40, hop_length=64)


def tone(hz, seconds=0.5, sr=SR, amplitude=0.5):
    t = torch.arange(int(seconds * sr), dtype=torch.float64) / sr
    return (amplitude * torch.sin(2 * math.pi * hz * t)).float()


def chirp(f0=100.0, f1=3500.0, seconds=0.5, sr=SR):
    t = torch.arange(int(seconds * sr), dtype=torch.float64) / sr
    return (0.4 * torch.sin(2 * math.pi * (f0 * t + 0.5 * (f1 - f0) / seconds * t**2))).float()


def noise_burst(seconds=0.5, start=0.2, stop=0.3, sr=SR, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * sr)) / sr
    return 0.3 * torch.randn(len(t), generator=g) * ((t >= start) & (t < stop))


def test_settings_paper_defaults_and_derived_fields():
    s = audio.AudioSettings()
    assert (s.sample_rate, s.n_mels, s.hop_length, s.n_fft, s.win_length, s.f_max) == (
        22050, 256, 256, 6 * 256, 6 * 256, 11025.0)
    # An override re-derives what followed the rule, keeps what was set explicitly.
    assert audio.audio_settings(s, hop_length=64).n_fft == 384
    assert audio.audio_settings(audio.AudioSettings(n_fft=2048), hop_length=64).n_fft == 2048
    assert audio.audio_settings(s, sample_rate=16000).f_max == 8000.0


def test_settings_from_duck_typed_config_and_mapping():
    config = types.SimpleNamespace(sample_rate=16000, n_mels=80, hop_length=160, n_fft=None, win_length=None,
                                   f_min=0.0, f_max=None, n_layers=12)  # extra fields are ignored
    s = audio.audio_settings(config)
    assert (s.sample_rate, s.n_mels, s.n_fft, s.f_max) == (16000, 80, 960, 8000.0)
    assert audio.audio_settings({"sample_rate": 16000, "n_mels": 80}, hop_length=100).n_fft == 600
    with pytest.raises(TypeError, match="unknown audio settings"):
        audio.audio_settings({"n_mel": 80})
    with pytest.raises(ValueError, match="f_max"):
        audio.AudioSettings(sample_rate=8000, f_max=6000)


@pytest.mark.parametrize("sr, n_mels, hop, samples", [
    pytest.param(8000, 40, 64, 4000, id="sr8000-F40-hop64-n4000"),
    pytest.param(16000, 80, 160, 12345, id="sr16000-F80-hop160-n12345"),
    pytest.param(22050, 37, 97, 5001, id="sr22050-F37-hop97-n5001"),
])
def test_log_mel_shape(sr, n_mels, hop, samples):
    s = audio.AudioSettings(sample_rate=sr, n_mels=n_mels, hop_length=hop)
    x = audio.log_mel_spectrogram(chirp(seconds=samples / sr, sr=sr)[:samples], s)
    assert x.shape == (1 + samples // hop, n_mels) == (audio.num_frames(samples, s), n_mels)
    assert x.dtype == torch.float32 and torch.isfinite(x).all()


def test_plain_keyword_settings_equal_settings_object():
    w = chirp()
    torch.testing.assert_close(audio.log_mel_spectrogram(w, sample_rate=SR, n_mels=40, hop_length=64),
                               audio.log_mel_spectrogram(w, SMALL), rtol=0, atol=0)


def test_time_major_orientation_and_stereo_mix():
    # A rising chirp: the loudest mel channel climbs with the frame index (axis 0 is time).
    x = audio.log_mel_spectrogram(chirp(), SMALL)
    peaks = x.argmax(dim=1)[3:-3]
    assert (peaks[1:] >= peaks[:-1]).all() and peaks[-1] - peaks[0] > 20
    # [channels, samples] is mixed to mono: equal to the spectrogram of the channel mean.
    stereo = torch.stack([chirp(), noise_burst()])
    torch.testing.assert_close(audio.log_mel_spectrogram(stereo, SMALL),
                               audio.log_mel_spectrogram(stereo.mean(0), SMALL))
    # A noise burst shows in its own frames only.
    burst = audio.mel_spectrogram(noise_burst(), SMALL).sum(dim=1)
    inside, outside = burst[int(0.21 * SR) // 64:int(0.29 * SR) // 64], burst[:int(0.18 * SR) // 64]
    assert inside.min() > 1e4 * outside.max()


@pytest.mark.parametrize("hop", [64, 128], ids=["hop64", "hop128"])
def test_zero_db_is_a_full_scale_sine_whatever_n_fft(hop):
    # Power is divided by (sum(window) / 2)^2: a sine of amplitude A peaks at about A^2 in its mel channel
    # (the triangle filter also collects the main lobe's side bins: up to 1.5 A^2).
    s = audio.audio_settings(SMALL, hop_length=hop)
    peak = audio.mel_spectrogram(tone(1000, amplitude=0.5), s)[4:-4].max(dim=1).values
    assert 0.5 * 0.25 < peak.min() and peak.max() < 1.6 * 0.25


def test_normalisation_round_trip_is_exact():
    mel = audio.mel_spectrogram(chirp() + noise_burst(), SMALL).double()
    x = audio.to_log_mel(mel)
    torch.testing.assert_close(audio.from_log_mel(x), mel.clamp(min=audio.LOG_FLOOR), rtol=1e-12, atol=0)
    torch.testing.assert_close(audio.to_log_mel(audio.from_log_mel(x)), x, rtol=0, atol=1e-12)
    assert (mel < audio.LOG_FLOOR).any()  # the clamp was exercised
    # The documented anchors: the floor and 0 dB.
    anchors = audio.to_log_mel(torch.tensor([0.0, audio.LOG_FLOOR, 1.0], dtype=torch.float64))
    expected = [(math.log(audio.LOG_FLOOR) - audio.NORM_MEAN) / audio.NORM_STD] * 2 + [
        -audio.NORM_MEAN / audio.NORM_STD]
    torch.testing.assert_close(anchors, torch.tensor(expected, dtype=torch.float64))


@pytest.mark.parametrize("orig_sr", [16000, 11025, 22050], ids=lambda r: f"from{r}")
def test_resampling_keeps_a_tone_where_it_was(orig_sr):
    direct = audio.log_mel_spectrogram(tone(700), SMALL)
    resampled = audio.log_mel_spectrogram(tone(700, sr=orig_sr), SMALL, input_rate=orig_sr)
    assert resampled.shape == direct.shape
    mid = slice(4, -4)
    assert (resampled[mid].argmax(dim=1) == direct[mid].argmax(dim=1)).all()
    w = audio.resample(tone(700, sr=orig_sr), orig_sr, SR)
    spectrum = torch.fft.rfft(w * torch.hann_window(len(w))).abs()
    assert abs(spectrum.argmax().item() * SR / len(w) - 700) <= SR / len(w)


@pytest.mark.parametrize("fmt, ext", [("WAV", "wav"), ("FLAC", "flac"), ("OGG", "ogg")], ids=str)
def test_load_audio_formats_mono_mix_and_resampling(tmp_path, fmt, ext):
    stereo = torch.stack([tone(440), tone(660)]).numpy()
    path = tmp_path / f"x.{ext}"
    soundfile.write(path, stereo.T, SR, format=fmt)
    w, rate = audio.load_audio(path)
    assert rate == SR and w.shape == (stereo.shape[1],) and w.dtype == torch.float32
    tol = 0.05 if fmt == "OGG" else 1e-4  # ogg vorbis is lossy
    assert float((w - torch.from_numpy(stereo.mean(0))).abs().max()) < tol
    both, _ = audio.load_audio(path, mono=False)
    assert both.shape == stereo.shape
    half, rate = audio.load_audio(path, SR // 2)
    assert rate == SR // 2 and abs(half.shape[0] - stereo.shape[1] // 2) <= 1


def test_save_wav_round_trip_and_clipping(tmp_path):
    w = chirp()
    audio.save_wav(tmp_path / "a.wav", w, SR)
    back, rate = audio.load_audio(tmp_path / "a.wav")
    assert rate == SR and float((back - w).abs().max()) <= 1 / 32768 + 1e-7
    audio.save_wav(tmp_path / "s.wav", torch.stack([w, -w]), SR)
    assert soundfile.info(str(tmp_path / "s.wav")).channels == 2
    with pytest.warns(UserWarning, match="clipping"):
        audio.save_wav(tmp_path / "loud.wav", 3 * w, SR)
    assert float(np.abs(soundfile.read(str(tmp_path / "loud.wav"))[0]).max()) <= 1.0
