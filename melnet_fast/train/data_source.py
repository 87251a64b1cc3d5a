"""Where training data comes from: the embedded synthetic music or a corpus of audio (any layout of
melnet_fast.corpora), split into training and held-out sets, and the per-epoch batch order (length-bucketed) that
makes a resumed run see the same batches."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Dict, List, NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from melnet_fast.batching import collate_examples, padded_share, plan_batches
from melnet_fast.config import MelNetConfig
from melnet_fast.corpora import read_corpus
from melnet_fast.data import AudioFolderDataset, SyntheticMusicDataset

SYNTHETIC = "synthetic"


@dataclasses.dataclass
class DataSpec:
    """Which data a run trains and validates on (stored in config.json, so eval and resume rebuild it).

    source: "synthetic" or a corpus (a folder, a CSV manifest, LJSpeech, VCTK, MAESTRO: melnet_fast.corpora).
    A corpus with splits (a split column, MAESTRO) trains on its "train" entries and holds out its "validation"
    entries (its "test" entries when it has no validation ones). Other corpora: a seeded split_seed permutation
    puts val_fraction of the files (at least one, when there are two or more) in the held-out set, unless
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
    """Items `indices` of a SpectrogramCropDataset, with its interface (crop keys, spectrogram, labels, texts)."""

    def __init__(self, base, indices: List[int]):
        self.base, self.indices = base, list(indices)
        self.settings, self.crop_frames, self.label_names = base.settings, base.crop_frames, base.label_names
        self.frame_multiple = base.frame_multiple

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key):
        if isinstance(key, tuple):
            return self.base[(self.indices[key[0]], key[1])]
        return self.base[self.indices[key]]

    @property
    def labels(self) -> List[int]:
        return [self.base.labels[i] for i in self.indices]

    @property
    def texts(self) -> List[str]:
        return [self.base.texts[i] for i in self.indices]

    def num_frames(self, index: int) -> int:
        return self.base.num_frames(self.indices[index])

    def item_frames(self, index: int) -> int:
        return self.base.item_frames(self.indices[index])

    def spectrogram(self, index: int) -> torch.Tensor:
        return self.base.spectrogram(self.indices[index])


def _synthetic(spec: DataSpec, config: MelNetConfig, crop_frames: int, held_out: bool, cache_dir):
    seconds = spec.synthetic_seconds
    if seconds is None:  # long enough for one crop plus a margin for random offsets
        seconds = max(4.0, (crop_frames + 8) * config.hop_length / config.sample_rate)
    n = spec.synthetic_val_clips if held_out else spec.synthetic_clips
    return SyntheticMusicDataset(n, seed=spec.synthetic_seed + int(held_out), settings=config,
                                 crop_frames=crop_frames, duration=seconds, cache_dir=cache_dir,
                                 frame_multiple=config.time_factor)


def _corpus(source: str, config: MelNetConfig, crop_frames: int | None, label_from_folder: bool, cache_dir,
            split=None, corpus=None, min_frames: int | None = None):
    return AudioFolderDataset(source, config, crop_frames, split=split, cache_dir=cache_dir,
                              label_from_folder=label_from_folder, frame_multiple=config.time_factor, corpus=corpus,
                              min_frames=min_frames)


def held_out_split(corpus) -> str | None:
    """The split a corpus holds out for validation: "validation", else "test", else None (no splits)."""
    present = {e.split for e in corpus.entries}
    return next((s for s in ("validation", "test") if s in present), None)


def build_datasets(spec: DataSpec, config: MelNetConfig, crop_frames: int, cache_dir=None,
                   min_frames: int | None = None):
    """(train dataset, held-out dataset or None) of examples of at most crop_frames frames (lengths a multiple of
    config.time_factor); labels and texts as the data has them. min_frames: files of a corpus with fewer frames
    are skipped (crop_frames: every example has exactly crop_frames frames, for models of fixed-length clips). For
    a text model only whole utterances with a text are kept (train.conditioning.whole_utterances).

    Raises FileNotFoundError / ValueError (from melnet_fast.data and melnet_fast.corpora) when the source has no
    usable audio or does not parse.
    """
    train, held_out = _build_datasets(spec, config, crop_frames, cache_dir, min_frames)
    if not config.has_text:
        return train, held_out
    from melnet_fast.train.conditioning import whole_utterances

    return (whole_utterances(train, "the training data"),
            None if held_out is None else whole_utterances(held_out, "the held-out data"))


def _build_datasets(spec: DataSpec, config: MelNetConfig, crop_frames: int, cache_dir=None,
                    min_frames: int | None = None):
    corpus_args = {"label_from_folder": spec.label_from_folder, "cache_dir": cache_dir, "min_frames": min_frames}
    if spec.source == SYNTHETIC:
        train = _synthetic(spec, config, crop_frames, False, cache_dir)
        corpus = None
    else:
        corpus = read_corpus(spec.source, spec.label_from_folder)
        if corpus.has_splits:
            if not corpus.select("train"):
                raise ValueError(f"{corpus.source} has a split column but no 'train' entries")
            train = _corpus(spec.source, config, crop_frames, split="train", corpus=corpus, **corpus_args)
        else:
            train = _corpus(spec.source, config, crop_frames, corpus=corpus, **corpus_args)
    if spec.val_source == SYNTHETIC:
        return train, _synthetic(spec, config, crop_frames, True, cache_dir)
    if spec.val_source is not None:
        return train, _corpus(spec.val_source, config, crop_frames, **corpus_args)
    if spec.source == SYNTHETIC:
        return train, _synthetic(spec, config, crop_frames, True, cache_dir)
    if corpus.has_splits:
        held = held_out_split(corpus)
        return train, (_corpus(spec.source, config, crop_frames, split=held, corpus=corpus, **corpus_args)
                       if held else None)
    n = len(train)
    if n < 2 or spec.val_fraction <= 0:
        return train, None
    n_val = min(n - 1, max(1, round(n * spec.val_fraction)))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(spec.split_seed)).tolist()
    return Subset(train, sorted(order[n_val:])), Subset(train, sorted(order[:n_val]))


def build_eval_dataset(source: str, spec: DataSpec, config: MelNetConfig, segment_frames: int, cache_dir=None,
                       split: str | None = None):
    """The data `melnet-fast eval --data source` scores: for "synthetic" the run's held-out synthetic clips; for a
    corpus its entries of `split` ("all" or None = every entry of a corpus without splits, and the held-out
    entries, "test" else "validation", of a corpus with splits). The dataset's `split` attribute says which."""
    if source == SYNTHETIC:
        return _synthetic(spec, config, segment_frames, True, cache_dir)
    corpus = read_corpus(source, spec.label_from_folder)
    if split is None:
        present = {e.split for e in corpus.entries}
        split = next((s for s in ("test", "validation") if s in present), None)
    elif split == "all":
        split = None
    data = _corpus(source, config, segment_frames, spec.label_from_folder, cache_dir, split, corpus)
    if config.has_text:  # a text model scores whole utterances, each with its text
        from melnet_fast.train.conditioning import whole_utterances

        return whole_utterances(data, f"--data {source}")
    return data


def _epoch_seed(seed: int, epoch: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1, dtype=np.uint64)[0] >> 1)


class EpochLoader(NamedTuple):
    """loader: batches (melnet_fast.batching.Batch) of one epoch after the skipped ones; n_batches: batches in the
    whole epoch; padded_share: share of padded elements in the epoch's batches; unbucketed_share: the same for
    unbucketed batches of the same items (what bucketing saved)."""

    loader: DataLoader
    n_batches: int
    padded_share: float
    unbucketed_share: float


def epoch_loader(dataset, batch_size: int, seed: int, epoch: int, skip_batches: int = 0, shard: int = 0,
                 num_shards: int = 1, num_workers: int = 0, bucket_batches: int = 0) -> EpochLoader:
    """The batches of `epoch` after the first skip_batches (see EpochLoader).

    Batches are melnet_fast.batching.Batch (spec [B, T, F] padded to the longest, lengths, labels, texts). The
    order, crop offsets and length buckets of an epoch are a function of (seed, epoch) only, so a resumed run
    rebuilds them and skips what it already saw without loading it. With num_shards > 1 (data-parallel ranks)
    every rank takes every num_shards-th item of the same order. The last partial batch is dropped when the
    shard holds at least one full batch. bucket_batches: see melnet_fast.batching.plan_batches.
    """
    lengths = [dataset.item_frames(i) for i in range(len(dataset))]
    drop_last = len(range(shard, len(dataset), num_shards)) >= batch_size

    def plan(bucket: int):
        generator = torch.Generator().manual_seed(_epoch_seed(seed, epoch))
        return plan_batches(lengths, batch_size, generator, bucket_batches=bucket, drop_last=drop_last, shard=shard,
                            num_shards=num_shards)

    batches = plan(bucket_batches)
    unbucketed = plan(0) if bucket_batches else batches
    # The loader draws its workers' base seed from this generator, not from the global RNG, so iterating
    # leaves the global RNG state exactly where a resumed run expects it.
    loader_generator = torch.Generator().manual_seed(_epoch_seed(seed, epoch) ^ 1)
    loader = DataLoader(dataset, batch_sampler=batches[skip_batches:], num_workers=num_workers,
                        collate_fn=collate_examples, generator=loader_generator)
    return EpochLoader(loader, len(batches), padded_share(batches, lengths), padded_share(unbucketed, lengths))
