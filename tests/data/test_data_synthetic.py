"""The embedded synthetic music: deterministic from the seed, structured, and as a Dataset."""

import numpy as np
import pytest
import torch

from melnet_fast import audio, data, synthetic

SR = 8000
SETTINGS = audio.AudioSettings(sample_rate=SR, n_mels=32, hop_length=80)


@pytest.mark.parametrize("genre", synthetic.GENRES)
def test_clip_is_deterministic_sized_and_audible(genre):
    a, gid = synthetic.synth_clip(5, SR, 1.5, genre=genre)
    b, _ = synthetic.synth_clip(5, SR, 1.5, genre=genre)
    c, _ = synthetic.synth_clip(6, SR, 1.5, genre=genre)
    assert gid == synthetic.GENRES.index(genre)
    assert a.dtype == np.float32 and a.shape == (int(1.5 * SR),) and np.isfinite(a).all()
    assert np.array_equal(a, b) and not np.allclose(a, c)
    assert 0.3 < np.abs(a).max() < 1.0 and a.std() > 0.02


def test_seed_draws_the_genre_and_every_genre_occurs():
    assert synthetic.synth_clip(11, SR, 0.5)[1] == synthetic.synth_clip(11, SR, 0.5)[1]
    assert {synthetic.synth_clip(s, SR, 0.1)[1] for s in range(40)} == set(range(len(synthetic.GENRES)))
    assert synthetic.synth_clip([3, 1], SR, 0.5, genre=2)[1] == 2


def test_notes_are_harmonic_stacks():
    # A chiptune square wave: odd harmonics strong, even ones absent; a sawtooth (electronic) has both.
    rng = np.random.default_rng(0)
    hz, sr = 250.0, 16000
    for name, even_present in (("chiptune", False), ("electronic", True)):
        note = synthetic._tone(synthetic._GENRES[name], hz, 0.5, 1.0, sr, rng)[: sr // 2]
        spectrum = np.abs(np.fft.rfft(note * np.hanning(len(note))))
        at = {k: spectrum[int(round(k * hz * len(note) / sr))] for k in (1, 1.5, 2, 3, 5)}
        assert at[1] > at[3] > 0.1 * at[1] and at[5] > 0.05 * at[1]
        assert (at[2] > 0.1 * at[1]) == even_present
        assert at[1.5] < 0.01 * at[1]  # nothing between the partials


def test_drums_repeat_on_the_beat():
    # Electronic: a kick on every beat (120-132 BPM). The low-band energy envelope repeats at the beat.
    w, _ = synthetic.synth_clip(2, SR, 4.0, genre="electronic")
    mel = audio.mel_spectrogram(w, SETTINGS)  # [T, F], 100 frames per second
    low = np.log(mel[:, :4].sum(1).numpy() + 1e-8)
    low -= low.mean()
    ac = np.correlate(low, low, "full")[len(low) - 1:]
    lag = 30 + int(np.argmax(ac[30:70]))  # search 0.3 - 0.7 s
    assert 60 / 132 * 100 - 2 <= lag <= 60 / 120 * 100 + 2, lag


def test_genres_have_their_own_brightness():
    def centroid(genre):
        mels = [audio.mel_spectrogram(synthetic.synth_clip(s, SR, 2.0, genre=genre)[0], SETTINGS)
                for s in range(3)]
        power = torch.cat(mels).sum(0)
        return float((power * torch.arange(len(power))).sum() / power.sum())

    assert centroid("lofi") < 0.8 * centroid("chiptune")


def test_synthetic_dataset_is_deterministic_and_labelled():
    a = data.SyntheticMusicDataset(6, seed=3, settings=SETTINGS, crop_frames=40, duration=1.0)
    b = data.SyntheticMusicDataset(6, seed=3, settings=SETTINGS, crop_frames=40, duration=1.0)
    c = data.SyntheticMusicDataset(6, seed=4, settings=SETTINGS, crop_frames=40, duration=1.0)
    assert len(a) == 6 and a.labels == [0, 1, 2, 3, 0, 1] and a.label_names == list(synthetic.GENRES)
    for i in range(6):
        assert torch.equal(a.spectrogram(i), b.spectrogram(i))
        assert not torch.equal(a.spectrogram(i), c.spectrogram(i))
    x, y, text = a[(4, 99)]
    assert x.shape == (40, 32) and x.dtype == torch.float32 and y == 0 and text == ""
    # Its spectrogram is the front end's log-mel of clip k = synth_clip([seed, k]).
    w, _ = synthetic.synth_clip([3, 2], SR, 1.0, genre="lofi")
    torch.testing.assert_close(a.spectrogram(2), audio.log_mel_spectrogram(w, SETTINGS))
    whole = data.SyntheticMusicDataset(2, seed=3, settings=SETTINGS, crop_frames=None, duration=1.0)
    assert whole[1][0].shape == (101, 32)
    batch = next(iter(data.make_loader(a, batch_size=3, seed=0)))
    assert batch.spec.shape == (3, 40, 32) and batch.labels.dtype == torch.int64 and batch.lengths.tolist() == [40] * 3


def test_synthetic_dataset_options_and_cache(tmp_path, monkeypatch):
    two = data.SyntheticMusicDataset(4, seed=0, settings=SETTINGS, duration=1.0, genres=("lofi", "chiptune"),
                                     cache_dir=tmp_path)
    assert two.labels == [2, 3, 2, 3] and len(list(tmp_path.glob("*.npy"))) == 4
    monkeypatch.setattr(data, "synth_clip", lambda *a, **k: pytest.fail("clip synthesised despite the cache"))
    again = data.SyntheticMusicDataset(4, seed=0, settings=SETTINGS, duration=1.0, genres=("lofi", "chiptune"),
                                       cache_dir=tmp_path)
    assert all(torch.equal(two.spectrogram(i), again.spectrogram(i)) for i in range(4))
    monkeypatch.undo()
    with pytest.raises(ValueError, match="genres"):
        data.SyntheticMusicDataset(2, settings=SETTINGS, genres=("polka",))
    short = data.SyntheticMusicDataset(2, settings=SETTINGS, duration=0.2, crop_frames=64, frame_multiple=4)
    assert short.num_frames(0) == 21 and short[0].spec.shape == (20, 32)  # shorter than the crop: kept whole
    with pytest.raises(ValueError, match="fewer than min_frames=4"):
        data.SyntheticMusicDataset(2, settings=SETTINGS, duration=0.01, frame_multiple=4)
