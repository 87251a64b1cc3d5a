"""`melnet-fast train --data DIR/manifest.csv` on a corpus with splits, then `eval` on its held-out split; the
flags of `melnet-fast data` checked before any corpus is made."""

import json

import pytest

from melnet_fast.cli import main
from melnet_fast.corpus_makers import music
from tests.cli.conftest import main_error
from tests.corpus_fakes import patch_music_tools


def test_train_and_eval_on_a_corpus_with_splits(monkeypatch, tmp_path, capsys, one_thread):
    patch_music_tools(monkeypatch)
    corpus = tmp_path / "corpus"
    music.make_music_corpus(corpus, labels=("bach", "folk"), pieces_per_label=3, clip_seconds=2.0,
                            max_piece_seconds=6.0, sample_rate=8000, jobs=1, log=lambda line: None)
    run = tmp_path / "run"
    assert main(["train", "--data", str(corpus / "manifest.csv"), "--preset", "tiny", "--out", str(run), "--steps",
                 "3", "--batch-size", "2", "--crop-frames", "64", "--val-every", "0", "--conditional",
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "throughput:" in out and "kHz of audio samples per s" in out and "of the batched elements" in out
    # 2 labels x 1 train piece of 6 s -> 3 excerpts each; 1 validation piece each, 3 excerpts
    assert "6 training items, 6 held out" in out
    assert main(["eval", "--run", str(run), "--data", str(corpus / "manifest.csv"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["split"] == "test" and result["nll_nats"] < 100 and result["baseline_nll_nats"] is not None
    assert main(["eval", "--run", str(run), "--data", str(corpus / "manifest.csv"), "--split", "all",
                 "--json"]) == 0
    everything = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert everything["split"] is None and everything["segments"] > result["segments"]


@pytest.mark.parametrize("args, fragments", [
    pytest.param(["music", "{dir}/c", "--pieces", "0"], ["--pieces must be an integer >= 1, got 0"], id="pieces"),
    pytest.param(["music", "{dir}/c", "--clip-seconds", "0.5"], ["--clip-seconds must be a number >= 1, got 0.5"],
                 id="clip-seconds"),
    pytest.param(["music", "{dir}/c", "--max-piece-seconds", "3"],
                 ["--max-piece-seconds must be a number >= 6, got 3.0"], id="max-piece-seconds"),
    pytest.param(["music", "{dir}/c", "--sample-rate", "100"], ["--sample-rate must be an integer >= 4000, got 100"],
                 id="sample-rate"),
    pytest.param(["music", "{dir}/c", "--labels", "bach", "jazz"], ["--labels: unknown 'jazz'; choose from bach"],
                 id="labels"),
    pytest.param(["music", "{dir}/c", "--held-out", "0.5"], ["--held-out must be a number >= 0 and < 0.5, got 0.5"],
                 id="held-out"),
    pytest.param(["speech", "{dir}/c", "--jobs", "0"], ["--jobs must be an integer >= 1, got 0"], id="jobs"),
    pytest.param(["speech", "{dir}/c", "--sentences", "0"], ["--sentences must be an integer >= 1, got 0"],
                 id="sentences"),
    pytest.param(["speech", "{dir}/c", "--voices-per-sentence", "7"],
                 ["--voices-per-sentence must be an integer >= 1 and <= 6, got 7"], id="voices-per-sentence"),
    pytest.param(["speech", "{dir}/c", "--speakers", "robot"], ["--speakers: unknown 'robot'; choose from us-male"],
                 id="speakers"),
    pytest.param(["speech", "{file}"], ["DIR", "is a file; expected a directory"], id="dir-is-a-file"),
    pytest.param(["speech", "{file}/c"], ["DIR", "is a file, not a directory"], id="dir-under-a-file"),
])
def test_data_mistakes_are_one_line_before_any_work(capsys, tmp_path, args, fragments):
    (tmp_path / "file").write_text("not a folder")
    args = [a.format(file=tmp_path / "file", dir=tmp_path) for a in args]
    line = main_error(capsys, "data", *args)
    for fragment in fragments:
        assert fragment in line, line
    assert not (tmp_path / "c").exists(), "nothing is made before the checks pass"


def test_data_music_through_the_command_line(monkeypatch, tmp_path, capsys):
    patch_music_tools(monkeypatch)
    assert main(["data", "music", str(tmp_path / "c"), "--labels", "bach", "folk", "--pieces", "2", "--jobs",
                 "1", "--sample-rate", "8000"]) == 0
    assert "next: melnet-fast train --data" in capsys.readouterr().out
    assert (tmp_path / "c" / "manifest.csv").is_file()
