"""Where training data comes from: the embedded synthetic music or a folder / CSV manifest of audio, split into
training and held-out sets, and the per-epoch batch order that makes a resumed run see the same batches."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from melnet_fast.config import MelNetConfig
from melnet_fast.data import AudioFolderDataset, CropSampler, SyntheticMusicDataset

SYNTHETIC = "synthetic"


@dataclasses.dataclass
class DataSpec:
    """Which data a run trains and validates on (stored in config.json, so eval and resume rebuild it).

    source: "synthetic" or a folder / CSV manifest of audio. Folder data: a seeded split_seed permutation puts
    val_fraction of the files (at least one, when there are two or more) in the held-out set, unless
    val_source names separate held-out data. Synthetic data: synthetic_clips training clips from seed
    synthetic_seed and synthetic_val_clips held-out clips from seed synthetic_seed + 1, of synthetic_seconds
    each (None: 4 s, longer when a training crop needs it). label_from_folder: folder data labelled by
    top-level subfolder (for speaker / genre conditioning).
    """

    source: str
    val_source: str | None = None
    val_fraction: float = 0.1
    split_seed: int = 0
    synthetic_clips: int = 64
    synthetic_val_clips: int = 8
    synthetic_seconds: float | None = None
    synthetic_seed: int = 0
    label_from_folder: bool = False
    label_names: List[str] | None = None  # filled in by the trainer: label id -> name (genre, speaker, folder)

    def __post_init__(self):
        if not (isinstance(self.val_fraction, (int, float)) and 0 <= self.val_fraction < 1):
            raise ValueError(f"val_fraction must be a number in [0, 1), got {self.val_fraction!r}")
        for name in ("synthetic_clips", "synthetic_val_clips"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> DataSpec:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def resolved(self) -> DataSpec:
        """A copy whose paths are absolute (so the run can be resumed from another working directory)."""
        out = dataclasses.replace(self)
        if out.source != SYNTHETIC:
            out.source = str(Path(out.source).expanduser().resolve())
        if out.val_source not in (None, SYNTHETIC):
            out.val_source = str(Path(out.val_source).expanduser().resolve())
        return out


class Subset(Dataset):
    """Items `indices` of a SpectrogramCropDataset, with its interface (crop keys, spectrogram, labels)."""

    def __init__(self, base, indices: List[int]):
        self.base, self.indices = base, list(indices)
        self.settings, self.crop_frames, self.label_names = base.settings, base.crop_frames, base.label_names

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key):
        if isinstance(key, tuple):
            return self.base[(self.indices[key[0]], key[1])]
        return self.base[self.indices[key]]

    @property
    def labels(self) -> List[int]:
        return [self.base.labels[i] for i in self.indices]

    def num_frames(self, index: int) -> int:
        return self.base.num_frames(self.indices[index])

    def spectrogram(self, index: int) -> torch.Tensor:
        return self.base.spectrogram(self.indices[index])


def _synthetic(spec: DataSpec, config: MelNetConfig, crop_frames: int, held_out: bool, cache_dir):
    seconds = spec.synthetic_seconds
    if seconds is None:  # long enough for one crop plus a margin for random offsets
        seconds = max(4.0, (crop_frames + 8) * config.hop_length / config.sample_rate)
    n = spec.synthetic_val_clips if held_out else spec.synthetic_clips
    return SyntheticMusicDataset(n, seed=spec.synthetic_seed + int(held_out), settings=config,
                                 crop_frames=crop_frames, duration=seconds, cache_dir=cache_dir)


def _folder(source: str, config: MelNetConfig, crop_frames: int, label_from_folder: bool, cache_dir):
    return AudioFolderDataset(source, config, crop_frames, cache_dir=cache_dir, label_from_folder=label_from_folder)


def build_datasets(spec: DataSpec, config: MelNetConfig, crop_frames: int, cache_dir=None):
    """(train dataset, held-out dataset or None) of crops [crop_frames, n_mels]; labels as the data has them.

    Raises FileNotFoundError / ValueError (from melnet_fast.data) when the source has no usable audio.
    """
    if spec.source == SYNTHETIC:
        train = _synthetic(spec, config, crop_frames, False, cache_dir)
    else:
        train = _folder(spec.source, config, crop_frames, spec.label_from_folder, cache_dir)
    if spec.val_source == SYNTHETIC:
        return train, _synthetic(spec, config, crop_frames, True, cache_dir)
    if spec.val_source is not None:
        return train, _folder(spec.val_source, config, crop_frames, spec.label_from_folder, cache_dir)
    if spec.source == SYNTHETIC:
        return train, _synthetic(spec, config, crop_frames, True, cache_dir)
    n = len(train)
    if n < 2 or spec.val_fraction <= 0:
        return train, None
    n_val = min(n - 1, max(1, round(n * spec.val_fraction)))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(spec.split_seed)).tolist()
    return Subset(train, sorted(order[n_val:])), Subset(train, sorted(order[:n_val]))


def build_eval_dataset(source: str, spec: DataSpec, config: MelNetConfig, segment_frames: int, cache_dir=None):
    """The data `melnet-fast eval --data source` scores: all of a folder / manifest, or for "synthetic" the
    run's held-out synthetic clips. Items shorter than one segment are skipped (with a warning)."""
    if source == SYNTHETIC:
        return _synthetic(spec, config, segment_frames, True, cache_dir)
    return _folder(source, config, segment_frames, spec.label_from_folder, cache_dir)


def _epoch_seed(seed: int, epoch: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1, dtype=np.uint64)[0] >> 1)


def epoch_loader(dataset, batch_size: int, seed: int, epoch: int, skip_batches: int = 0, shard: int = 0,
                 num_shards: int = 1, num_workers: int = 0) -> Tuple[DataLoader, int]:
    """(loader of the batches of `epoch` after the first skip_batches, batches in the whole epoch).

    Batches are (spec [B, crop_frames, F], label [B]). The order and crop offsets of an epoch are a function of
    (seed, epoch) only, so a resumed run rebuilds them and skips what it already saw without loading it.
    With num_shards > 1 (data-parallel ranks) every rank takes every num_shards-th item of the same order.
    The last partial batch is dropped when the shard holds at least one full batch.
    """
    generator = torch.Generator().manual_seed(_epoch_seed(seed, epoch))
    pairs = list(CropSampler(len(dataset), True, generator))[shard::num_shards]
    # The loader draws its workers' base seed from this generator, not from the global RNG, so iterating
    # leaves the global RNG state exactly where a resumed run expects it.
    loader_generator = torch.Generator().manual_seed(_epoch_seed(seed, epoch) ^ 1)
    drop_last = len(pairs) >= batch_size
    n_batches = len(pairs) // batch_size if drop_last else math.ceil(len(pairs) / batch_size)
    remaining = pairs[skip_batches * batch_size:]
    loader = DataLoader(dataset, batch_size=batch_size, sampler=remaining, drop_last=drop_last,
                        num_workers=num_workers, generator=loader_generator)
    return loader, n_batches
