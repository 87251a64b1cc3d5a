"""`melnet-fast data music|speech`: splits by piece / sentence, excerpts, the manifest writer, the sentence source,
with tiny generated audio standing in for the external tools (so CI runs them everywhere); and the real tools
(music21 + FluidSynth, espeak-ng + fortunes) when this machine has them."""

import hashlib
import os
import shutil

import numpy as np
import pytest
import torch

from melnet_fast import MelNetConfig, audio, data
from melnet_fast.cli import main
from melnet_fast.corpora import read_corpus
from melnet_fast.corpus_makers import MissingTool, common, music, speech
from melnet_fast.train import DataSpec, build_datasets
from tests.corpus_fakes import fake_tone, patch_music_tools

TINY = MelNetConfig.preset("tiny")


def test_split_groups_never_splits_a_group_and_is_stratified_and_seeded():
    groups = [f"{label}{k}" for label in "ab" for k in range(10) for _ in range(3)]  # 3 clips per piece
    labels = [g[0] for g in groups]
    split = common.split_groups(groups, labels, seed=1, held_out=0.2)
    assert set(split) == set(groups)
    for label in "ab":
        mine = [split[f"{label}{k}"] for k in range(10)]
        assert (mine.count("validation"), mine.count("test"), mine.count("train")) == (2, 2, 6)
    assert split == common.split_groups(groups, labels, seed=1, held_out=0.2)
    assert split != common.split_groups(groups, labels, seed=2, held_out=0.2)
    assert set(common.split_groups(["x", "y"], [None, None], seed=0).values()) == {"train"}  # too few to hold out


def test_excerpts_cover_a_piece_and_drop_a_tiny_tail():
    assert music.excerpts(13.5, 6.0) == [(0.0, 6.0), (6.0, 12.0), (12.0, 13.5)]
    assert music.excerpts(12.4, 6.0) == [(0.0, 6.0), (6.0, 12.0)]  # 0.4 s < MIN_EXCERPT_SECONDS
    assert music.excerpts(0.5, 6.0) == []


def test_tidy_trims_silence_and_normalises():
    sr = 1000
    w = np.concatenate([np.zeros(500), 0.1 * np.sin(np.arange(1000)), np.zeros(700)]).astype(np.float32)
    out = common.tidy(np.stack([w, w], axis=1), sr, pad_seconds=0.01)
    assert abs(len(out) - 1020) <= 2 and np.isclose(np.abs(out).max(), common.PEAK)
    assert common.tidy(np.zeros(100, np.float32), sr).size == 0


def test_read_sentences_from_fortune_files(tmp_path):
    (tmp_path / "wisdom").write_text(
        "A dream will always triumph over reality, once it is given the chance.\n\t\t-- Stanislaw Lem\n%\n"
        "Short.\n%\nTHIS IS SHOUTED AT YOU, LOUDLY AND AT LENGTH.\n%\n"
        "A man said to the Universe:\n\t\"Sir, I exist!\"\n%\n"
        "Moderation in all things, including\nmoderation itself.\n%\n"
        "A dream will always triumph over reality, once it is given the chance.\n")
    got = speech.read_sentences(tmp_path, ["wisdom", "missing"])
    assert got == ["A dream will always triumph over reality, once it is given the chance.",
                   "Moderation in all things, including moderation itself."]


def test_plan_clips_is_seeded_and_balanced():
    sentences = [f"Sentence number {k} is here." for k in range(40)]
    plan = speech.plan_clips(sentences, ["a", "b", "c", "d"], 20, 2, seed=3)
    assert plan == speech.plan_clips(sentences, ["a", "b", "c", "d"], 20, 2, seed=3)
    assert len(plan) == 40 and len({p["text"] for p in plan}) == 20
    counts = {s: sum(p["speaker"] == s for p in plan) for s in "abcd"}
    assert set(counts.values()) == {10}
    for text in {p["text"] for p in plan}:  # two distinct voices per sentence
        assert len({p["speaker"] for p in plan if p["text"] == text}) == 2


@pytest.fixture
def fake_music_tools(monkeypatch):
    patch_music_tools(monkeypatch)


def test_music_corpus_writer_splits_by_piece(fake_music_tools, tmp_path):
    summary = music.make_music_corpus(tmp_path / "m", labels=("bach", "folk"), pieces_per_label=3,
                                      clip_seconds=4.0, max_piece_seconds=12.0, sample_rate=8000, seed=0, jobs=1,
                                      log=lambda s: None)
    corpus = read_corpus(tmp_path / "m")  # the folder's manifest.csv
    assert corpus.layout == "csv" and corpus.label_kind == "label" and corpus.has_splits
    rows = [line.split(",") for line in (tmp_path / "m" / "manifest.csv").read_text().splitlines()]
    assert rows[0] == ["path", "label", "split", "start", "end", "piece"]
    piece_split = {}
    for row in rows[1:]:
        assert piece_split.setdefault(row[5], row[2]) == row[2], f"piece {row[5]} is in two splits"
    assert {s for s in piece_split.values()} == {"train", "validation", "test"}
    assert summary["all"]["labels"] == ["bach", "folk"] and summary["all"]["clips"] == len(rows) - 1
    # 9 s -> 4 + 4 + 1; 7.5 -> 4 + 3.5; 12 (of 13) -> 4 + 4 + 4; 6.2 -> 4 + 2.2; 4 -> 4; 10 -> 4 + 4 + 2
    assert summary["all"]["clips"] == 3 + 2 + 3 + 2 + 1 + 3
    train, val = build_datasets(DataSpec(str(tmp_path / "m" / "manifest.csv")), TINY, 300)
    assert train.label_names == ["bach", "folk"]
    train_pieces = {e.path for e in train.entries}
    assert train_pieces.isdisjoint({e.path for e in val.entries})
    assert len({train.item_frames(i) for i in range(len(train))}) > 1  # excerpts of mixed lengths
    with pytest.raises(ValueError, match="already holds a corpus"):
        music.make_music_corpus(tmp_path / "m", labels=("bach",), jobs=1, log=lambda s: None)


def test_speech_corpus_writer_carries_text_and_splits_by_sentence(monkeypatch, tmp_path):
    fortunes = tmp_path / "fortunes"
    fortunes.mkdir()
    (fortunes / "wisdom").write_text("\n%\n".join(f"Sentence number {k} is a fine one." for k in range(30)) + "\n")
    monkeypatch.setattr(speech, "FORTUNES_DIR", fortunes)
    monkeypatch.setattr(speech, "find_program", lambda *a, **k: "espeak-ng")
    monkeypatch.setattr(speech.subprocess, "run", lambda *a, **k: type("done", (), {"stdout": "eSpeak NG test"}))

    def speak(espeak, voice, rate, pitch, text, out_path):
        w = fake_tone(0.5 + len(text) / 100, 8000, rate + pitch)
        common.write_flac(out_path, common.tidy(w, 8000), 8000)
        return 0.5 + len(text) / 100

    monkeypatch.setattr(speech, "speak", speak)
    summary = speech.make_speech_corpus(tmp_path / "s", n_sentences=20, voices_per_sentence=2, seed=1, jobs=1,
                                        log=lambda s: None)
    ds = data.AudioFolderDataset(tmp_path / "s" / "manifest.csv", TINY, 16, frame_multiple=2)
    assert len(ds) == 40 and ds.label_names == sorted(speech.VOICES)
    assert all(t.startswith("Sentence number") for t in ds.texts)
    corpus = read_corpus(tmp_path / "s" / "manifest.csv")
    split_of = {}
    for e in corpus.entries:
        assert split_of.setdefault(e.text, e.split) == e.split, f"{e.text!r} is read in two splits"
    assert summary["sentences"] == {"train": 16, "validation": 2, "test": 2}


def test_missing_tools_are_named(monkeypatch, tmp_path):
    monkeypatch.setattr(common.shutil, "which", lambda name: None)
    with pytest.raises(MissingTool, match=r"fluidsynth is not installed: install the Debian package fluidsynth "
                                          r"\(apt-get install fluidsynth\), or pass --install"):
        music.make_music_corpus(tmp_path / "m", jobs=1)
    with pytest.raises(MissingTool, match="espeak-ng is not installed: install the Debian package espeak-ng"):
        speech.make_speech_corpus(tmp_path / "s", jobs=1)
    assert main(["data", "speech", str(tmp_path / "s")]) == 2
    with pytest.raises(MissingTool, match="cannot install fluidsynth: needs apt-get"):
        common.install_debian(["fluidsynth"])


def _digest(folder):
    h = hashlib.sha1()
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != "corpus.json":
            h.update(p.relative_to(folder).as_posix().encode() + p.read_bytes())
    return h.hexdigest()


@pytest.mark.skipif(shutil.which("espeak-ng") is None or not speech.read_sentences(),
                    reason="needs espeak-ng and the fortunes files (apt-get install espeak-ng fortunes)")
def test_real_speech_corpus_is_reproducible(tmp_path, capsys):
    assert main(["data", "speech", str(tmp_path / "a"), "--sentences", "6", "--seed", "5", "--jobs", "2"]) == 0
    assert main(["data", "speech", str(tmp_path / "b"), "--sentences", "6", "--seed", "5", "--jobs", "1"]) == 0
    assert "6 clips" in capsys.readouterr().out
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    ds = data.AudioFolderDataset(tmp_path / "a", TINY, 64, frame_multiple=2)
    assert len(ds) == 6 and all(ds.texts)
    waveform, sr = audio.load_audio(ds.paths[0])
    assert sr == 22050 and 0.5 < waveform.numel() / sr < 8 and abs(float(waveform.abs().max()) - common.PEAK) < 0.01


def _has_music_tools():
    try:
        import music21  # noqa: F401
    except ImportError:
        return False
    return shutil.which("fluidsynth") is not None and any(os.path.isfile(p) for p in music.SOUNDFONTS)


@pytest.mark.skipif(not _has_music_tools(), reason="needs music21 (pip install 'melnet_fast[corpora]') and "
                                                   "fluidsynth + fluid-soundfont-gm (apt-get install)")
def test_real_music_corpus_plays_scores_reproducibly(tmp_path):
    args = ["data", "music", str(tmp_path / "a"), "--labels", "bach", "folk", "--pieces", "1",
            "--max-piece-seconds", "5", "--clip-seconds", "3", "--jobs", "2"]
    assert main(args) == 0
    corpus = read_corpus(tmp_path / "a")
    assert {e.label for e in corpus.entries} == {"bach", "folk"}
    source = music.candidate_pieces("bach", 0)[0]
    again = tmp_path / "again.flac"
    soundfont = next(p for p in music.SOUNDFONTS if os.path.isfile(p))
    music.render_piece(source, music.COLLECTIONS["bach"][2], str(again), 5.0, 16000, soundfont,
                       shutil.which("fluidsynth"))
    first = tmp_path / "a" / "audio" / f"{music.piece_id('bach', source)}.flac"
    assert first.read_bytes() == again.read_bytes()
    w, sr = audio.load_audio(first)
    mel = audio.mel_spectrogram(w, sample_rate=sr, n_mels=32, hop_length=256)
    assert sr == 16000 and 4.0 < w.numel() / sr <= 5.0 and torch.isfinite(mel).all()
    assert float((mel.sum(1) > 1e-3 * mel.sum(1).max()).float().mean()) > 0.9  # music all the way through
