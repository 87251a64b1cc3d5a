"""Training on examples of mixed lengths: batches are padded and carry lengths, the run resumes bit-exactly, and
the trainer reports its audio rate and the padded share."""

import csv

import pytest
import torch

from melnet_fast import audio
from melnet_fast.synthetic import synth_clip
from melnet_fast.train import DataSpec, Trainer, build_datasets
from tests.train.conftest import CROP, make_model, options
from tests.train.test_resume_and_nan import _assert_same_state

# Excerpts of one synthetic clip, 6 to 38 frames at the tiny preset's 62.5 frames per second: some shorter than
# the 16-frame maximum (kept whole, padded in the batch), some longer (cropped).
EXCERPTS = [(0.0, 0.1), (0.1, 0.3), (0.3, 0.9), (0.9, 1.05), (1.05, 1.3), (1.3, 1.5), (1.5, 2.0), (2.0, 2.15)]


@pytest.fixture(scope="module")
def mixed_lengths(tmp_path_factory):
    from melnet_fast import MelNetConfig

    config = MelNetConfig.preset("tiny")
    root = tmp_path_factory.mktemp("mixed")
    waveform, _ = synth_clip(3, config.sample_rate, 2.5)
    audio.save_wav(root / "clip.wav", torch.from_numpy(waveform), config.sample_rate)
    rows = "".join(f"clip.wav,{a},{b},{'validation' if k == 3 else 'train'}\n" for k, (a, b) in enumerate(EXCERPTS))
    (root / "manifest.csv").write_text("path,start,end,split\n" + rows)
    return build_datasets(DataSpec(str(root / "manifest.csv")), config, CROP)


def test_items_have_mixed_lengths(mixed_lengths):
    train, val = mixed_lengths
    assert len(train) == 7 and len(val) == 1
    lengths = [train.item_frames(i) for i in range(len(train))]
    assert min(lengths) < CROP and max(lengths) == CROP and all(n % 2 == 0 for n in lengths)


@pytest.mark.parametrize("half", [2, 3], ids=["epoch-boundary", "mid-epoch"])
def test_mixed_lengths_train_and_resume_bit_exactly(tiny_config, mixed_lengths, tmp_path, half):
    """7 items in batches of 2 (drop last) are 3 batches per epoch; length buckets of 2 batches."""
    train, val = mixed_lengths
    opts = dict(bucket_batches=2, val_segments=8)
    straight = Trainer(make_model(tiny_config), train, val, options(steps=2 * half, **opts), tmp_path / "straight")
    seen = []
    real_next = straight._next_batch

    def spy():
        batch = real_next()
        seen.append(batch.lengths.tolist())
        return batch

    straight._next_batch = spy
    summary = straight.fit()
    assert summary["skipped_steps"] == 0 and summary["val"] is not None
    assert any(len(set(lengths)) > 1 for lengths in seen), f"no batch mixed lengths: {seen}"
    first = Trainer(make_model(tiny_config), train, val, options(steps=half, **opts), tmp_path / "split")
    first.fit()
    first.close()
    resumed = Trainer(make_model(tiny_config, seed=7), train, val, options(steps=2 * half, **opts),
                      tmp_path / "split")
    resumed.fit()
    _assert_same_state(straight, resumed)


def test_audio_rate_and_padded_share_are_logged(tiny_config, mixed_lengths, tmp_path):
    train, _ = mixed_lengths
    trainer = Trainer(make_model(tiny_config), train, None, options(steps=3, bucket_batches=0), tmp_path)
    summary = trainer.fit()
    trainer.close()
    c = tiny_config
    assert summary["audio_khz"] == pytest.approx(summary["audio_seconds_per_s"] * c.sample_rate / 1000)
    assert summary["elements_per_s"] == pytest.approx(summary["audio_seconds_per_s"] * c.sample_rate / c.hop_length
                                                      * c.n_mels)
    assert 0 < summary["padded_share"] < 1
    assert any("of the batched elements are padding" in m for m in trainer.messages)
    with open(tmp_path / "metrics.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "train"]
    assert len(rows) == 3
    for r in rows:
        assert float(r["audio_khz"]) > 0 and float(r["audio_seconds_per_s"]) > 0 and float(r["elements_per_s"]) > 0
        assert float(r["padded_share"]) == pytest.approx(trainer.padded_share, abs=1e-6)
