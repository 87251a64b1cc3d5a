"""Training data: folder / manifest splits, and the per-epoch batch order that resuming relies on."""

import torch

from melnet_fast import audio
from melnet_fast.synthetic import synth_clip
from melnet_fast.train import DataSpec, build_datasets
from melnet_fast.train.data_source import epoch_loader
from tests.train.conftest import CROP


def _write_clips(folder, n, config):
    folder.mkdir()
    for k in range(n):
        waveform, _ = synth_clip(k, config.sample_rate, 0.4)
        audio.save_wav(folder / f"clip{k}.wav", torch.from_numpy(waveform), config.sample_rate)


def test_folder_split_is_disjoint_and_deterministic(tiny_config, tmp_path):
    _write_clips(tmp_path / "audio", 5, tiny_config)
    spec = DataSpec(str(tmp_path / "audio"), val_fraction=0.4, split_seed=3).resolved()
    train, val = build_datasets(spec, tiny_config, CROP)
    again_train, again_val = build_datasets(spec, tiny_config, CROP)
    assert (len(train), len(val)) == (3, 2)
    assert set(train.indices).isdisjoint(val.indices) and train.indices == again_train.indices
    x, label, _ = train[(1, 12345)]
    assert x.shape == (CROP, 16) and label == 0
    assert torch.equal(train.spectrogram(0), train.base.spectrogram(train.indices[0]))


def test_manifest_labels(tiny_config, tmp_path):
    _write_clips(tmp_path / "audio", 3, tiny_config)
    manifest = tmp_path / "list.csv"
    manifest.write_text("path,genre\naudio/clip0.wav,rock\naudio/clip1.wav,jazz\naudio/clip2.wav,rock\n")
    train, val = build_datasets(DataSpec(str(manifest), val_fraction=0.0), tiny_config, CROP)
    assert val is None and train.label_names == ["jazz", "rock"] and train.labels == [1, 0, 1]


def test_epoch_order_skip_and_shards(datasets):
    train, _ = datasets  # 6 clips
    loader, n, padded, _ = epoch_loader(train, 2, seed=4, epoch=1)
    full = [b.spec for b in loader]
    assert n == 3 and len(full) == 3 and padded == 0.0
    skipped = epoch_loader(train, 2, seed=4, epoch=1, skip_batches=2).loader
    assert [torch.equal(a, b) for a, b in zip([b.spec for b in skipped], full[2:])] == [True]
    other_epoch = [b.spec for b in epoch_loader(train, 2, seed=4, epoch=2).loader]
    assert not all(torch.equal(a, b) for a, b in zip(full, other_epoch))
    shards = [[b.spec for b in epoch_loader(train, 1, seed=4, epoch=1, shard=r, num_shards=2).loader] for r in (0, 1)]
    ordered = [b.spec for b in epoch_loader(train, 1, seed=4, epoch=1).loader]
    assert all(torch.equal(a, b) for a, b in zip(shards[0], ordered[0::2]))
    assert all(torch.equal(a, b) for a, b in zip(shards[1], ordered[1::2]))
