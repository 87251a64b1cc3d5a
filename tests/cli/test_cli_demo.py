"""`melnet-fast demo` end to end, shrunk to seconds (the real demo trains for minutes)."""

import re

from melnet_fast.cli import main
from melnet_fast.corpus_makers import common, music
from tests.cli.conftest import cli, main_error, ok
from tests.corpus_fakes import patch_music_tools


def test_demo_runs_end_to_end(tmp_path):
    out = tmp_path / "demo"
    result = ok(cli("demo", "--out", out, "--train-minutes", "0.02", "--max-steps", "3", "--clips", "4",
                    "--val-clips", "1", "--samples", "1", "--seconds", "0.5", "--inversion", "griffin_lim",
                    "--iters", "3", "--no-progress"))
    text = result.stdout
    model, baseline = map(float, re.search(r"all\s+: model\s+(\S+) .* baseline\s+(\S+)", text).groups())
    assert "demo wall time" in text
    gap = float(re.search(r"per-channel mean: gap (\S+)", text).group(1))  # printed next to the NLL
    assert gap >= 0 and "values at the log floor" in text
    for name in ("generated-1.wav", "generated-1.png", "generated-1.npy", "real-1.wav", "real_vs_generated.png"):
        assert (out / "samples" / name).is_file(), name
    assert (out / "checkpoints" / "latest.pt").is_file()



def test_demo_on_the_music_corpus(monkeypatch, tmp_path, capsys, one_thread):
    """--data music on a corpus made by the real writer from fake renders (test_corpus_makers checks the real
    renders when the tools are installed): trained on its train pieces, scored on its test pieces."""
    patch_music_tools(monkeypatch)
    corpus = tmp_path / "corpus"
    music.make_music_corpus(corpus, labels=("bach", "folk"), pieces_per_label=3, clip_seconds=4.0,
                            max_piece_seconds=12.0, sample_rate=16000, jobs=1, log=lambda line: None)
    out = tmp_path / "demo"
    assert main(["demo", "--data", "music", "--corpus", str(corpus), "--out", str(out), "--train-minutes", "0.02",
                 "--max-steps", "2", "--samples", "1", "--seconds", "0.5", "--inversion", "griffin_lim",
                 "--iters", "2", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "test pieces: NLL on" in text and "--split test" in text and "training throughput" in text
    for name in ("generated-1.wav", "real-1.wav", "real_vs_generated.png"):
        assert (out / "samples" / name).is_file(), name


def test_demo_music_names_what_to_install(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(common.shutil, "which", lambda name: None)
    assert main(["demo", "--data", "music", "--out", str(tmp_path / "d"), "--no-progress"]) == 2
    assert "fluidsynth is not installed: install the Debian package fluidsynth" in capsys.readouterr().err


def test_demo_music_flags_and_corpus_folder_are_checked_first(tmp_path, capsys):
    (tmp_path / "file").write_text("not a folder")
    line = main_error(capsys, "demo", "--data", "music", "--out", tmp_path / "d", "--pieces", "0")
    assert "--pieces must be an integer >= 1, got 0" in line, line
    line = main_error(capsys, "demo", "--data", "music", "--out", tmp_path / "d", "--corpus", tmp_path / "file")
    assert "--corpus" in line and "is a file; expected a directory" in line, line
