"""`melnet-fast train --data DIR/manifest.csv` on a corpus with splits, then `eval` on its held-out split."""

import json

from melnet_fast.cli import main
from melnet_fast.corpus_makers import music
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
