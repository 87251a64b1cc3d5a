"""AudioFolderDataset (folders and CSV manifests, bad files, cache) and make_loader."""

import os
import warnings

import numpy as np
import pytest
import soundfile
import torch

from melnet_fast import audio, data

SR = 8000
SETTINGS = audio.AudioSettings(sample_rate=SR, n_mels=20, hop_length=80)
CROP = 32  # frames at most; a 1 s file has 101
MULT = 2  # item lengths are multiples of this (a model's time_factor); shorter files are "too short"


def music(seconds=1.0, sr=SR, f0=220.0, channels=1, seed=0):
    """Harmonic tone with a vibrato and a little noise: [samples, channels] for soundfile."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    phase = 2 * np.pi * f0 * t + 3 * np.sin(2 * np.pi * 5 * t)
    mono = sum(0.3 / k * np.sin(k * phase) for k in range(1, 6)) + 0.01 * rng.standard_normal(len(t))
    return np.stack([mono * (1 - 0.2 * c) for c in range(channels)], axis=1).astype(np.float32)


def write_good(folder):
    (folder / "sub").mkdir(parents=True, exist_ok=True)
    soundfile.write(folder / "a.wav", music(f0=220), SR)
    soundfile.write(folder / "sub" / "b.flac", music(f0=330, sr=16000, channels=2), 16000)  # resampled
    soundfile.write(folder / "sub" / "c.ogg", music(f0=440, seed=1), SR)


def write_bad(folder):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "text.wav").write_text("this is not a wav file\n")
    soundfile.write(folder / "empty.wav", np.zeros((0, 1), np.float32), SR)
    soundfile.write(folder / "silent.flac", np.zeros((SR, 1), np.float32), SR, format="FLAC")
    soundfile.write(folder / "short.wav", music(seconds=0.005), SR)  # 1 frame < MULT
    soundfile.write(folder / "surround.wav", music(channels=3), SR)
    broken = music()
    broken[[100, 2000], 0] = [np.nan, np.inf]  # one bad sample is enough to make every statistic NaN
    soundfile.write(folder / "nan.wav", broken, SR, subtype="FLOAT")
    (folder / "readme.txt").write_text("not audio: ignored, not counted")


BAD = {"unreadable": "text.wav", "empty": "empty.wav", "silent": "silent.flac", "too short": "short.wav",
       "too many channels": "surround.wav", "non-finite": "nan.wav"}


@pytest.fixture
def mixed(tmp_path):
    write_good(tmp_path / "mixed")
    write_bad(tmp_path / "mixed")
    return tmp_path / "mixed"


def test_bad_files_are_skipped_counted_and_warned_once_each(mixed):
    with pytest.warns(data.SkippedAudioWarning) as record:
        ds = data.AudioFolderDataset(mixed, SETTINGS, CROP, frame_multiple=MULT)
    assert len(ds) == 3
    assert sorted(p.name for p in ds.paths) == ["a.wav", "b.flac", "c.ogg"]
    assert ds.skip_counts == {reason: 1 for reason in BAD}
    for reason, name in BAD.items():
        assert [os.path.basename(p) for p in ds.skipped[reason]] == [name]
    messages = [str(w.message) for w in record if issubclass(w.category, data.SkippedAudioWarning)]
    assert len(messages) == len(BAD)
    for reason, name in BAD.items():
        assert sum(name in m and reason in m for m in messages) == 1, messages


def test_nothing_usable_says_why(tmp_path):
    write_bad(tmp_path / "bad")
    with pytest.warns(data.SkippedAudioWarning), pytest.raises(ValueError) as e:
        data.AudioFolderDataset(tmp_path / "bad", SETTINGS, CROP, frame_multiple=MULT)
    assert str(e.value) == (f"no usable audio in {tmp_path / 'bad'}: 1 unreadable, 1 empty, 1 non-finite, "
                            "1 too many channels, 1 silent, 1 too short")
    (tmp_path / "none").mkdir()
    with pytest.raises(ValueError, match="no usable audio in .*none: no .wav/.flac/.ogg files"):
        data.AudioFolderDataset(tmp_path / "none", SETTINGS, CROP, frame_multiple=MULT)
    with pytest.raises(FileNotFoundError):
        data.AudioFolderDataset(tmp_path / "nowhere", SETTINGS, CROP, frame_multiple=MULT)


def test_items_are_crops_of_the_files_log_mel(mixed):
    with pytest.warns(data.SkippedAudioWarning):
        ds = data.AudioFolderDataset(mixed, SETTINGS, CROP, frame_multiple=MULT)
    i = [p.name for p in ds.paths].index("b.flac")
    waveform, _ = audio.load_audio(ds.paths[i], SR)
    whole = audio.log_mel_spectrogram(waveform, SETTINGS)
    torch.testing.assert_close(ds.spectrogram(i), whole)
    assert ds.num_frames(i) == whole.shape[0] == 101
    spec, label, text = ds[i]
    assert spec.shape == (CROP, 20) and spec.dtype == torch.float32 and label == 0 and text == ""
    offsets = {int(torch.nonzero((whole.unfold(0, CROP, 1).permute(0, 2, 1) == ds[i][0]).all(-1).all(-1))[0])
               for _ in range(20)}
    assert len(offsets) > 1  # random offsets
    seed = 123456789
    off = seed % (101 - CROP + 1)
    torch.testing.assert_close(ds[(i, seed)][0], whole[off:off + CROP])


def write_manifest(folder, rows, header=("path", "genre")):
    lines = [",".join(header)] + [",".join(r) for r in rows]
    (folder / "manifest.csv").write_text("\n".join(lines) + "\n")
    return folder / "manifest.csv"


def test_csv_manifest_with_labels(mixed):
    manifest = write_manifest(mixed, [("a.wav", "rock"), ("sub/b.flac", "jazz"), ("sub/c.ogg", "rock"),
                                      ("gone.wav", "blues"), ("silent.flac", "jazz")])
    with pytest.warns(data.SkippedAudioWarning):
        ds = data.AudioFolderDataset(manifest, SETTINGS, CROP, frame_multiple=MULT)
    assert ds.label_names == ["blues", "jazz", "rock"]  # ids from every row, skipped ones included
    assert [p.name for p in ds.paths] == ["a.wav", "b.flac", "c.ogg"]
    assert ds.labels == [2, 1, 2] and ds[1][1] == 1 and ds.num_labels == 3
    assert ds.skip_counts == {"missing": 1, "silent": 1}


def test_csv_manifest_variants(mixed, tmp_path):
    unlabelled = write_manifest(mixed, [("a.wav",), ("sub/c.ogg",)], header=("path",))
    ds = data.AudioFolderDataset(unlabelled, SETTINGS, CROP, frame_multiple=MULT)
    assert ds.labels == [0, 0] and ds.label_names == []
    speakers = write_manifest(mixed, [("a.wav", "p225", "x"), ("sub/c.ogg", "p226", "y")],
                              header=("path", "speaker", "text"))
    by_speaker = data.AudioFolderDataset(speakers, SETTINGS, CROP, frame_multiple=MULT)
    assert by_speaker.label_names == ["p225", "p226"] and by_speaker.texts == ["x", "y"]
    assert by_speaker[1].text == "y" and by_speaker.speakers == ["p225", "p226"]
    no_path = write_manifest(mixed, [("a.wav",)], header=("file",))
    with pytest.raises(ValueError, match=r"manifest.csv: a manifest needs the column\(s\) \['path'\]"):
        data.AudioFolderDataset(no_path, SETTINGS, CROP, frame_multiple=MULT)
    blank = write_manifest(mixed, [("a.wav", "rock"), ("sub/c.ogg", "")])
    with pytest.raises(ValueError, match="manifest.csv line 3: column 'genre' is empty"):
        data.AudioFolderDataset(blank, SETTINGS, CROP, frame_multiple=MULT)


def test_labels_from_folders(tmp_path):
    for genre, f0 in (("jazz", 220), ("rock", 330)):
        (tmp_path / genre).mkdir()
        soundfile.write(tmp_path / genre / "x.wav", music(f0=f0), SR)
    ds = data.AudioFolderDataset(tmp_path, SETTINGS, CROP, frame_multiple=MULT, label_from_folder=True)
    assert ds.label_names == ["jazz", "rock"] and ds.labels == [0, 1]


def test_cache_is_read_the_second_time_and_follows_mtime(tmp_path, monkeypatch):
    write_good(tmp_path / "good")
    cache = tmp_path / "cache"
    first = data.AudioFolderDataset(tmp_path / "good", SETTINGS, CROP, frame_multiple=MULT, cache_dir=cache)
    assert (first.cache_hits, first.cache_misses) == (0, 3) and len(list(cache.glob("*.npy"))) == 3

    def no_decoding(*args, **kwargs):
        raise AssertionError("audio decoded despite the cache")

    with monkeypatch.context() as m, warnings.catch_warnings():
        warnings.simplefilter("error")  # a skipped file would be a warning: none may happen
        m.setattr(data.audio, "load_audio", no_decoding)
        second = data.AudioFolderDataset(tmp_path / "good", SETTINGS, CROP, frame_multiple=MULT, cache_dir=cache)
    assert (second.cache_hits, second.cache_misses) == (3, 0)
    for i in range(3):
        torch.testing.assert_close(second.spectrogram(i), first.spectrogram(i), rtol=0, atol=0)

    # Other settings miss; a rewritten file (new mtime) misses, the others still hit.
    other = data.AudioFolderDataset(tmp_path / "good", SETTINGS, CROP, frame_multiple=MULT, cache_dir=cache, n_mels=16)
    assert other.cache_misses == 3 and other[0][0].shape == (CROP, 16)
    soundfile.write(tmp_path / "good" / "a.wav", music(f0=110), SR)
    stat = os.stat(tmp_path / "good" / "a.wav")
    os.utime(tmp_path / "good" / "a.wav", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    third = data.AudioFolderDataset(tmp_path / "good", SETTINGS, CROP, frame_multiple=MULT, cache_dir=cache)
    assert (third.cache_hits, third.cache_misses) == (2, 1)
    assert not torch.equal(third.spectrogram(0), first.spectrogram(0))


def test_damaged_cache_files(tmp_path):
    """A cached spectrogram holding NaN is computed again from its audio (and said so); one whose every bin is
    at the log floor is silence to the model and skipped as such, with or without the cache."""
    write_good(tmp_path / "good")
    cache = tmp_path / "cache"
    first = data.AudioFolderDataset(tmp_path / "good", SETTINGS, CROP, cache_dir=cache)
    files = sorted(cache.glob("*.npy"))  # a-..., b-..., c-...: the files' names lead
    spec = np.load(files[0])
    spec[3, 4] = np.nan
    np.save(files[0], spec)
    np.save(files[1], np.full_like(np.load(files[1]), data._FLOOR))
    with pytest.warns(UserWarning) as record:
        again = data.AudioFolderDataset(tmp_path / "good", SETTINGS, CROP, cache_dir=cache)
    messages = [str(w.message) for w in record]
    assert any(str(files[0]) in m and "NaN or inf: computing it again" in m for m in messages), messages
    assert again.skip_counts == {"silent": 1} and "every bin at the log floor" in " ".join(messages)
    assert (again.cache_hits, again.cache_misses) == (2, 1)
    assert [p.name for p in again.paths] == ["a.wav", "c.ogg"]
    kept = [first.paths.index(p) for p in again.paths]
    for i, j in enumerate(kept):
        assert torch.isfinite(again.spectrogram(i)).all()
        torch.testing.assert_close(again.spectrogram(i), first.spectrogram(j), rtol=0, atol=0)
    assert np.isfinite(np.load(files[0])).all(), "the damaged cache file was rewritten"


def test_memory_mapped_items_equal_in_memory_items(tmp_path):
    write_good(tmp_path / "good")
    cache = tmp_path / "cache"
    in_memory = data.AudioFolderDataset(tmp_path / "good", SETTINGS, CROP, frame_multiple=MULT, cache_dir=cache)
    mapped = data.AudioFolderDataset(tmp_path / "good", SETTINGS, CROP, frame_multiple=MULT, cache_dir=cache,
                                     in_memory=False)
    for key in [(0, 5), (1, 77), (2, 2**40 + 3)]:
        torch.testing.assert_close(mapped[key][0], in_memory[key][0], rtol=0, atol=0)
    with pytest.raises(ValueError, match="cache_dir"):
        data.AudioFolderDataset(tmp_path / "good", SETTINGS, CROP, frame_multiple=MULT, in_memory=False)


def test_loader_batches_are_seeded_and_independent_of_workers(mixed):
    manifest = write_manifest(mixed, [("a.wav", "rock"), ("sub/b.flac", "jazz"), ("sub/c.ogg", "pop")] * 3)
    ds = data.AudioFolderDataset(manifest, SETTINGS, CROP, frame_multiple=MULT)
    assert len(ds) == 9

    def epochs(num_workers, seed, n=2):
        loader = data.make_loader(ds, batch_size=4, num_workers=num_workers, shuffle=True, seed=seed)
        return [[(b.spec.clone(), b.labels.clone()) for b in loader] for _ in range(n)]

    parallel = epochs(2, seed=7)
    x, y = parallel[0][0]
    assert x.shape == (4, CROP, 20) and x.dtype == torch.float32
    assert y.shape == (4,) and y.dtype == torch.int64 and set(y.tolist()) <= {0, 1, 2}
    assert [len(e) for e in parallel] == [3, 3]  # 9 items in batches of 4
    serial = epochs(0, seed=7)
    for e_parallel, e_serial in zip(parallel, serial):
        for (xp, yp), (xs, ys) in zip(e_parallel, e_serial):
            assert torch.equal(xp, xs) and torch.equal(yp, ys)
    assert not torch.equal(parallel[0][0][0], parallel[1][0][0])  # a new order and new crops each epoch
    assert not torch.equal(epochs(0, seed=8, n=1)[0][0][0], serial[0][0][0])
    ordered = data.make_loader(ds, batch_size=9, shuffle=False, seed=0)
    assert next(iter(ordered)).labels.tolist() == ds.labels


