"""Corpus layouts (melnet_fast.corpora), each read from a small tree written here: generic CSV, LJSpeech, VCTK,
speaker folders, MAESTRO; splits, excerpts, texts; clear errors naming the file, row and column."""

import pytest
import soundfile
import torch

from melnet_fast import MelNetConfig, audio, data
from melnet_fast.corpora import CorpusError, read_corpus
from melnet_fast.train import DataSpec, build_datasets, build_eval_dataset
from tests.data.test_data_folder import SETTINGS, SR, music

MULT = 2


@pytest.fixture(scope="module")
def tiny_config():
    return MelNetConfig.preset("tiny")


def tone(folder, name, seconds=0.5, f0=220.0, sr=SR):
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, music(seconds, sr=sr, f0=f0), sr)
    return path


def dataset(source, **kw):
    return data.AudioFolderDataset(source, SETTINGS, 32, frame_multiple=MULT, **kw)


def test_generic_csv_with_every_column(tmp_path):
    tone(tmp_path, "audio/long.wav", seconds=2.0)
    tone(tmp_path, "audio/b.flac", f0=330)
    (tmp_path / "m.csv").write_text(
        "path,label,speaker,text,split,start,end,extra\n"
        "audio/long.wav,bach,alice,Hello there.,train,0.5,1.25,x\n"
        "audio/b.flac,folk,bob,\"Quoted, with comma.\",val,,,y\n"
        "audio/long.wav,folk,alice,Second half.,test,1.0,,z\n")
    corpus = read_corpus(tmp_path / "m.csv")
    assert corpus.layout == "csv" and corpus.has_splits and corpus.label_kind == "label"
    assert [e.split for e in corpus.entries] == ["train", "validation", "test"]
    assert [(e.start, e.end) for e in corpus.entries] == [(0.5, 1.25), (None, None), (1.0, None)]
    ds = dataset(tmp_path / "m.csv")
    assert ds.label_names == ["bach", "folk"] and ds.labels == [0, 1, 1]
    assert ds.texts == ["Hello there.", "Quoted, with comma.", "Second half."]
    assert ds.speakers == ["alice", "bob", "alice"]
    # the excerpt [0.5, 1.25) s is the log-mel of those samples; [1.0, end) of the rest of the file
    waveform, _ = audio.load_audio(tmp_path / "audio" / "long.wav", SR)
    torch.testing.assert_close(ds.spectrogram(0), audio.log_mel_spectrogram(waveform[4000:10000], SETTINGS))
    torch.testing.assert_close(ds.spectrogram(2), audio.log_mel_spectrogram(waveform[8000:], SETTINGS))
    held = dataset(tmp_path / "m.csv", split="validation")
    assert len(held) == 1 and held.texts == ["Quoted, with comma."] and held.label_names == ["bach", "folk"]
    assert held.labels == [1]  # ids from the whole corpus, not from the split


@pytest.mark.parametrize("content,message", [
    pytest.param("file,label\na.wav,x\n", r"m.csv: a manifest needs the column\(s\) \['path'\], found columns "
                 r"\['file', 'label'\]", id="no-path"),
    pytest.param("path,split\na.wav,training\n", r"m.csv line 2: column 'split' must be one of train, validation, "
                 r"test .*got 'training'", id="bad-split"),
    pytest.param("path,start\na.wav,soon\n", r"m.csv line 2: column 'start' must be a number of seconds >= 0, "
                 r"got 'soon'", id="bad-start"),
    pytest.param("path,end\na.wav,-1\n", r"m.csv line 2: column 'end' must be a number", id="negative-end"),
    pytest.param("path,start,end\na.wav,1,1\n", r"m.csv line 2: column 'end' \(1.0\) must be greater than 'start'",
                 id="empty-excerpt"),
    pytest.param("path,speaker\na.wav,\n", r"m.csv line 2: column 'speaker' is empty", id="no-speaker"),
    pytest.param("path\n\n,\n", r"m.csv line 3: column 'path' is empty", id="empty-path"),
])
def test_generic_csv_errors_name_file_row_and_column(tmp_path, content, message):
    (tmp_path / "m.csv").write_text(content)
    with pytest.raises(CorpusError, match=message):
        read_corpus(tmp_path / "m.csv")


def test_ljspeech_layout_carries_the_normalized_text(tmp_path):
    root = tmp_path / "LJSpeech-1.1"
    tone(root, "wavs/LJ001-0001.wav")
    tone(root, "wavs/LJ001-0002.wav", f0=300)
    (root / "metadata.csv").write_text(
        'LJ001-0001|Printing, in the only sense with which we are at present concerned, 1st.|Printing, in the only '
        'sense with which we are at present concerned, first.\n'
        'LJ001-0002|"In being comparatively modern."|\n')
    for source in (root, root / "metadata.csv"):
        corpus = read_corpus(source)
        assert corpus.layout == "ljspeech" and corpus.label_kind is None and not corpus.has_splits
    ds = dataset(root)
    assert [p.name for p in ds.paths] == ["LJ001-0001.wav", "LJ001-0002.wav"]
    assert ds.texts == ["Printing, in the only sense with which we are at present concerned, first.",
                        '"In being comparatively modern."']
    assert ds[0].text == ds.texts[0] and ds.labels == [0, 0]
    (root / "metadata.csv").write_text("LJ001-0001|a|b|c\n")
    with pytest.raises(CorpusError, match=r"metadata.csv line 1: expected 'id\|text\|normalized text'"):
        read_corpus(root)


def test_vctk_layout_speakers_texts_and_one_microphone(tmp_path):
    root = tmp_path / "VCTK"
    for spk, f0 in (("p225", 200), ("p226", 300)):
        for utt in ("001", "002"):
            for mic in (1, 2):
                tone(root, f"wav48_silence_trimmed/{spk}/{spk}_{utt}_mic{mic}.flac", f0=f0 + mic)
            (root / "txt" / spk).mkdir(parents=True, exist_ok=True)
            (root / "txt" / spk / f"{spk}_{utt}.txt").write_text(f"Please call {spk} {utt}.\n")
    corpus = read_corpus(root)
    assert corpus.layout == "vctk" and corpus.label_kind == "speaker"
    assert [e.path.name for e in corpus.entries] == ["p225_001_mic1.flac", "p225_002_mic1.flac",
                                                     "p226_001_mic1.flac", "p226_002_mic1.flac"]
    ds = dataset(root)
    assert ds.label_names == ["p225", "p226"] and ds.labels == [0, 0, 1, 1]
    assert ds.texts[3] == "Please call p226 002."


def test_speaker_folders_and_plain_folders(tmp_path):
    for spk in ("anna", "ben"):
        tone(tmp_path / "spk", f"{spk}/x.wav")
        tone(tmp_path / "spk", f"{spk}/y.wav", f0=400)
    corpus = read_corpus(tmp_path / "spk")
    assert corpus.layout == "speakers" and [e.speaker for e in corpus.entries] == ["anna"] * 2 + ["ben"] * 2
    tone(tmp_path / "plain", "a.wav")
    tone(tmp_path / "plain", "deep/er/b.wav")
    plain = read_corpus(tmp_path / "plain")
    assert plain.layout == "folder" and plain.label_kind is None
    assert [e.label for e in read_corpus(tmp_path / "plain", label_from_folder=True).entries] == [".", "deep"]


def test_maestro_layout_and_its_split(tiny_config, tmp_path):
    root = tmp_path / "maestro-v3.0.0"
    rows = [("Chopin", "train", "2004/a.wav"), ("Liszt", "train", "2004/b.wav"), ("Chopin", "validation", "2006/c.wav"),
            ("Liszt", "test", "2008/d.wav")]
    for k, (_, _, name) in enumerate(rows):
        tone(root, name, seconds=0.6, f0=200 + 50 * k, sr=tiny_config.sample_rate)
    (root / "maestro-v3.0.0.csv").write_text(
        "canonical_composer,canonical_title,split,year,midi_filename,audio_filename,duration\n"
        + "".join(f'{c},"Piece, {k}",{s},2004,x.midi,{a},0.6\n' for k, (c, s, a) in enumerate(rows)))
    corpus = read_corpus(root)
    assert corpus.layout == "maestro" and [e.split for e in corpus.entries] == [r[1] for r in rows]
    train, val = build_datasets(DataSpec(str(root)), tiny_config, 16)
    assert [p.name for p in train.paths] == ["a.wav", "b.wav"] and [p.name for p in val.paths] == ["c.wav"]
    assert train.label_names == val.label_names == ["Chopin", "Liszt"] and val.labels == [0]
    test = build_eval_dataset(str(root), DataSpec(str(root)), tiny_config, 16)
    assert test.split == "test" and [p.name for p in test.paths] == ["d.wav"]
    everything = build_eval_dataset(str(root), DataSpec(str(root)), tiny_config, 16, split="all")
    assert len(everything) == 4
    (root / "maestro-v3.0.0.csv").write_text("canonical_composer,split,midi_filename\nChopin,train,x.midi\n")
    with pytest.raises(CorpusError, match=r"maestro-v3.0.0.csv: a MAESTRO metadata file needs the column\(s\) "
                                          r"\['audio_filename'\]"):
        read_corpus(root)


def test_split_column_chooses_train_and_held_out(tiny_config, tmp_path):
    for k in range(5):
        tone(tmp_path, f"c{k}.wav", seconds=0.4, f0=200 + 40 * k, sr=tiny_config.sample_rate)
    (tmp_path / "manifest.csv").write_text("path,split\nc0.wav,train\nc1.wav,train\nc2.wav,dev\nc3.wav,test\n"
                                           "c4.wav,train\n")
    train, val = build_datasets(DataSpec(str(tmp_path)), tiny_config, 16)  # the folder's manifest.csv
    assert [p.name for p in train.paths] == ["c0.wav", "c1.wav", "c4.wav"]
    assert [p.name for p in val.paths] == ["c2.wav"]
    (tmp_path / "manifest.csv").write_text("path,split\nc0.wav,test\n")
    with pytest.raises(ValueError, match="no 'train' entries"):
        build_datasets(DataSpec(str(tmp_path)), tiny_config, 16)


def test_variable_length_items_keep_short_files_and_crop_long_ones(tmp_path):
    tone(tmp_path, "short.wav", seconds=0.12)  # 13 frames: kept whole, rounded down to 12
    tone(tmp_path, "long.wav", seconds=1.0)  # 101 frames: cropped to 32 at a seeded offset
    tone(tmp_path, "tiny.wav", seconds=0.001)  # 1 frame < MULT: too short
    with pytest.warns(data.SkippedAudioWarning, match="tiny.wav: too short"):
        ds = dataset(tmp_path)
    assert [p.name for p in ds.paths] == ["long.wav", "short.wav"]
    assert [ds.num_frames(i) for i in range(2)] == [101, 13] and [ds.item_frames(i) for i in range(2)] == [32, 12]
    assert ds[(1, 5)].spec.shape == (12, 20)
    torch.testing.assert_close(ds[(1, 1)].spec, ds.spectrogram(1)[1:13])  # offset 1 % (13 - 12 + 1)
    batch = next(iter(data.make_loader(ds, batch_size=2, shuffle=False)))
    assert batch.spec.shape == (2, 32, 20) and batch.lengths.tolist() == [32, 12]
    assert not batch.spec[1, 12:].any()  # padding
    assert any(torch.equal(batch.spec[1, :12], ds[(1, offset)].spec) for offset in (0, 1))
