"""Datasets of log-mel spectrograms and their DataLoader.

Every dataset here holds whole normalised log-mel spectrograms [T_i, F] (melnet_fast.audio) and serves
variable-length examples (melnet_fast.batching.Example): an item longer than crop_frames is cropped to it at a
random offset, a shorter one is kept whole; lengths are rounded down to a multiple of frame_multiple (the model's
time_factor). `make_loader` pads them to the longest of each batch (melnet_fast.batching.Batch: spec [B, T, F],
lengths [B], labels [B], texts) and draws the order, the crop offsets and the length buckets from one seeded
generator in the main process, so batches are the same for any num_workers.

  AudioFolderDataset  the audio of any corpus layout melnet_fast.corpora reads (a folder, a generic CSV manifest,
                      LJSpeech, VCTK-style speaker folders, MAESTRO), optionally one split of it; bad files are
                      skipped with one SkippedAudioWarning each and counted in `.skipped`.
  SyntheticMusicDataset  clips of melnet_fast.synthetic, deterministic from a seed (no download).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import warnings
from pathlib import Path
from typing import Any, Dict, Iterator, List, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from melnet_fast import audio
from melnet_fast._optional import require
from melnet_fast.batching import Example, collate_examples, plan_batches
from melnet_fast.corpora import AUDIO_EXTENSIONS, Corpus, Entry, read_corpus
from melnet_fast.synthetic import GENRES, SYNTH_VERSION, synth_clip

# Why a file is skipped, in the order the error message lists them.
SKIP_REASONS = ("missing", "unreadable", "empty", "non-finite", "too many channels", "silent", "too short")
_CACHE_VERSION = 1  # bump when the stored spectrogram changes meaning
_FLOOR = float(audio.to_log_mel(torch.zeros(())))  # the normalised value of silence (audio.LOG_FLOOR)


class SkippedAudioWarning(UserWarning):
    """A file of a dataset was left out (unreadable, empty, non-finite, silent, too short, too many channels,
    missing)."""


class _Skip(Exception):
    def __init__(self, reason: str, detail: str = ""):
        super().__init__(reason)
        self.reason, self.detail = reason, detail


class SpectrogramCropDataset(Dataset):
    """Base class: whole spectrograms [T_i, F], labels and texts; items are Examples of at most crop_frames frames.

    An item of T_i frames has item_frames(i) = min(T_i, crop_frames) rounded down to a multiple of frame_multiple;
    a longer spectrogram is cropped at an offset: dataset[i] draws it from torch's RNG (seeded per worker by the
    DataLoader), dataset[(i, crop_seed)] takes crop_seed % (T_i - item_frames(i) + 1), as the loaders do.
    crop_frames None: whole spectrograms (rounded down to the multiple). Spectrograms shorter than min_frames
    (default frame_multiple) are not kept by the subclasses (a "too short" skip).
    """

    def __init__(self, crop_frames: int | None, settings: audio.AudioSettings, frame_multiple: int = 1,
                 min_frames: int | None = None):
        if crop_frames is not None and int(crop_frames) < 1:
            raise ValueError(f"crop_frames must be >= 1 or None, got {crop_frames}")
        if int(frame_multiple) < 1:
            raise ValueError(f"frame_multiple must be >= 1, got {frame_multiple}")
        self.crop_frames = None if crop_frames is None else int(crop_frames)
        self.frame_multiple = int(frame_multiple)
        if self.crop_frames is not None and self.crop_frames % self.frame_multiple:
            raise ValueError(f"crop_frames={self.crop_frames} must be a multiple of frame_multiple="
                             f"{self.frame_multiple}")
        self.min_frames = max(self.frame_multiple, int(min_frames or 1))
        self.settings = settings
        self.label_names: List[str] = []  # label id -> name; empty when the data is unlabelled (labels 0)
        self._specs: List[Any] = []  # torch [T, F] tensors, or .npy paths read by memory map
        self._frames: List[int] = []
        self.labels: List[int] = []
        self.texts: List[str] = []  # "" where the corpus has no text
        self.speakers: List[str | None] = []

    def __len__(self) -> int:
        return len(self._specs)

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    def num_frames(self, index: int) -> int:
        """T of item `index` (its whole spectrogram)."""
        return self._frames[index]

    def item_frames(self, index: int) -> int:
        """Frames of the examples item `index` serves (see the class docstring)."""
        n = self._frames[index] if self.crop_frames is None else min(self._frames[index], self.crop_frames)
        return n - n % self.frame_multiple

    def spectrogram(self, index: int) -> torch.Tensor:
        """The whole normalised log-mel spectrogram [T, F] of item `index`."""
        return self._read(index, 0, self._frames[index])

    def _read(self, index: int, start: int, stop: int) -> torch.Tensor:
        spec = self._specs[index]
        if isinstance(spec, (str, os.PathLike)):
            spec = np.load(spec, mmap_mode="r")  # reads only the crop's pages
            return torch.from_numpy(np.array(spec[start:stop], dtype=np.float32))
        # A copy: a view would carry its whole storage along when a worker sends it to the main process.
        return spec[start:stop].clone()

    def __getitem__(self, key) -> Example:
        index, crop_seed = key if isinstance(key, tuple) else (key, None)
        n = self.item_frames(index)
        span = self._frames[index] - n + 1
        offset = int(torch.randint(span, ())) if crop_seed is None else int(crop_seed) % span
        return Example(self._read(index, offset, offset + n), self.labels[index], self.texts[index])

    def _too_short(self, frames: int) -> bool:
        return frames < self.min_frames

    def _add(self, spec, frames: int, label: int, text: str | None = None, speaker: str | None = None) -> None:
        self._specs.append(spec)
        self._frames.append(int(frames))
        self.labels.append(int(label))
        self.texts.append(text or "")
        self.speakers.append(speaker)


# -------------------------------------------------------------------------------------------- cache


def _cache_path(cache_dir: Path, name: str, key: dict) -> Path:
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return cache_dir / f"{Path(name).stem}-{digest}.npy"


def _cache_key(settings: audio.AudioSettings, **fields) -> dict:
    # The normalisation constants are part of what is stored, so part of the key.
    norm = dict(floor=audio.LOG_FLOOR, mean=audio.NORM_MEAN, std=audio.NORM_STD)
    return dict(fields, settings=dataclasses.asdict(settings), norm=norm, version=_CACHE_VERSION)


def _load_cached(path: Path | None, mmap: bool = False):
    """The array stored at `path` (memory-mapped if mmap), or None when absent or unreadable."""
    if path is None:
        return None
    try:
        array = np.load(path, mmap_mode="r" if mmap else None)
    except (OSError, ValueError):  # absent, or damaged: the caller computes it again
        return None
    if not np.isfinite(array).all():  # damaged too (the dataset only stores finite spectrograms)
        warnings.warn(f"cache file {path} holds NaN or inf: computing it again", stacklevel=3)
        return None
    return array


def _save_atomic(path: Path, array: np.ndarray) -> None:
    # Written under a temporary name, then renamed: a reader in another process never sees half a file.
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npy")
    np.save(tmp, array)
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------ audio folders


class AudioFolderDataset(SpectrogramCropDataset):
    """Examples of the log-mel spectrograms of a corpus: any layout melnet_fast.corpora reads (a folder of audio,
    a generic CSV manifest, LJSpeech, VCTK-style speaker folders, MAESTRO).

    split: None (every entry), or "train" / "validation" / "test" (or a list of them) for a corpus with splits.
    Labels (class conditioning) are the corpus's labels, else its speakers (Corpus.label_kind), mapped to ids in
    sorted order over the whole corpus (`label_names`), so that every split uses the same ids; texts (LJSpeech,
    VCTK, a CSV text column) are in `texts`, speaker names in `speakers`. label_from_folder: a plain folder is
    labelled by top-level subfolder. Audio is mono-mixed and resampled to settings.sample_rate, then cut to the
    entry's [start, end) seconds when the corpus gives them.

    Bad files are skipped, each with one SkippedAudioWarning, and listed in `skipped` (reason -> paths):
    missing, unreadable, empty, non-finite (NaN or inf samples, or a spectrogram that overflows), too many
    channels (> max_channels), silent (peak <= silence_threshold, or every bin at the log floor), too short
    (fewer frames than min_frames, default frame_multiple, or fewer samples than the STFT needs). ValueError if
    nothing is usable. A cached spectrogram holding NaN or inf is computed again (with a warning).

    cache_dir: spectrograms are stored there as .npy, keyed by file path, mtime, size, excerpt, settings and the
    normalisation; later datasets read them instead of decoding audio (`cache_hits`, `cache_misses`).
    in_memory False (needs cache_dir) keeps only the cache paths and reads each crop by memory map.
    settings / overrides: as melnet_fast.audio.audio_settings.
    """

    def __init__(self, source, settings: Any = None, crop_frames: int | None = 64, *, split=None,
                 cache_dir=None, in_memory: bool = True, label_from_folder: bool = False,
                 silence_threshold: float = 1e-4, max_channels: int = 2, frame_multiple: int = 1,
                 min_frames: int | None = None, corpus: Corpus | None = None, **overrides):
        super().__init__(crop_frames, audio.audio_settings(settings, **overrides), frame_multiple, min_frames)
        if not in_memory and cache_dir is None:
            raise ValueError("in_memory=False reads spectrograms from the cache: give a cache_dir")
        self.source = Path(source)
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        if self.cache_dir is not None:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.silence_threshold, self.max_channels = float(silence_threshold), int(max_channels)
        self.skipped: Dict[str, List[str]] = {}
        self.paths: List[Path] = []  # the usable files, in item order
        self.entries: List[Entry] = []  # the usable corpus entries, in item order
        self.cache_hits = self.cache_misses = 0

        self.split = split
        self.corpus = corpus if corpus is not None else read_corpus(self.source, label_from_folder)
        self.label_names = self.corpus.label_names
        ids = {name: i for i, name in enumerate(self.label_names)}
        entries = self.corpus.select(split)
        if not entries:
            raise ValueError(f"no usable audio in {self.source}: no entry in split {split!r}")
        for entry in entries:
            try:
                spec, frames = self._spectrogram(entry, in_memory)
            except _Skip as skip:
                self.skipped.setdefault(skip.reason, []).append(str(entry.path))
                warnings.warn(f"skipping {entry.path}: {skip.reason}" + (f" ({skip.detail})" if skip.detail else ""),
                              SkippedAudioWarning, stacklevel=2)
                continue
            self.paths.append(entry.path)
            self.entries.append(entry)
            label = self.corpus.label_of(entry)
            self._add(spec, frames, ids[label] if label is not None else 0, entry.text, entry.speaker)
        if not self._specs:
            counts = ", ".join(f"{len(self.skipped[r])} {r}" for r in SKIP_REASONS if r in self.skipped)
            raise ValueError(f"no usable audio in {self.source}: {counts}")

    @property
    def skip_counts(self) -> Dict[str, int]:
        """reason -> number of files skipped for it."""
        return {reason: len(paths) for reason, paths in self.skipped.items()}

    def _spectrogram(self, entry: Entry, in_memory: bool):
        """(spectrogram tensor [T, F] or its cache path, T), or _Skip."""
        path = entry.path
        try:
            stat = path.stat()
        except OSError:
            raise _Skip("missing") from None
        cache = None
        if self.cache_dir is not None:
            key = _cache_key(self.settings, path=str(path.resolve()), mtime_ns=stat.st_mtime_ns, size=stat.st_size,
                             start=entry.start, end=entry.end)
            cache = _cache_path(self.cache_dir, path.name, key)
            spec = _load_cached(cache, mmap=True)
            if spec is not None:
                self.cache_hits += 1
                return self._checked(cache, spec, in_memory)
            self.cache_misses += 1
        spec = self._compute(path, entry.start, entry.end).numpy()
        if cache is not None:
            _save_atomic(cache, spec)
        return self._checked(cache, spec, in_memory)

    def _checked(self, cache, spec: np.ndarray, in_memory: bool):
        frames = spec.shape[0]
        if self._too_short(frames):
            raise _Skip("too short", f"{frames} frames < {self.min_frames}")
        if spec.max() <= _FLOOR:  # nothing above the log floor: silence to the model, whatever the peak
            raise _Skip("silent", "every bin at the log floor")
        if not in_memory:
            return str(cache), frames
        return torch.from_numpy(np.array(spec, dtype=np.float32)), frames

    def _compute(self, path: Path, start: float | None = None, end: float | None = None) -> torch.Tensor:
        soundfile = require("soundfile", "reading audio files")
        try:
            info = soundfile.info(str(path))
            if info.frames == 0:
                raise _Skip("empty")
            if info.channels > self.max_channels:
                raise _Skip("too many channels", f"{info.channels} > {self.max_channels}")
            waveform, _ = audio.load_audio(path, self.settings.sample_rate, start=start, end=end)
        except _Skip:
            raise
        except Exception as e:  # libsndfile reports a bad file in several exception types
            raise _Skip("unreadable", f"{type(e).__name__}: {e}") from None
        if waveform.numel() == 0:
            raise _Skip("empty")
        bad = int((~torch.isfinite(waveform)).sum())
        if bad:
            raise _Skip("non-finite", f"{bad} NaN or inf samples")
        peak = float(waveform.abs().max())
        if peak <= self.silence_threshold:
            raise _Skip("silent", f"peak {peak:.2g}")
        frames = audio.num_frames(waveform.numel(), self.settings)
        if self._too_short(frames):
            raise _Skip("too short", f"{frames} frames < {self.min_frames}")
        if waveform.numel() < audio.min_samples(self.settings):  # the STFT's reflection padding needs them
            raise _Skip("too short", f"{waveform.numel()} samples < {audio.min_samples(self.settings)}")
        spec = audio.log_mel_spectrogram(waveform, self.settings).float().contiguous()
        if not bool(torch.isfinite(spec).all()):
            raise _Skip("non-finite", f"the spectrogram overflows (peak sample {peak:.3g})")
        return spec


# -------------------------------------------------------------------------------------------- synthetic


class SyntheticMusicDataset(SpectrogramCropDataset):
    """n_clips clips of melnet_fast.synthetic (genres cycled in turn, so balanced), deterministic in seed.

    Clip k is synth_clip([seed, k], settings.sample_rate, duration, genre=genres[k % len(genres)]); labels are
    genre ids in GENRES (label_names = GENRES). crop_frames None: whole clips (all the same length).
    cache_dir: spectrograms stored as .npy as for AudioFolderDataset. frame_multiple: as SpectrogramCropDataset.
    """

    def __init__(self, n_clips: int, seed: int = 0, settings: Any = None, crop_frames: int | None = 64, *,
                 duration: float = 4.0, genres: Sequence[str] = GENRES, cache_dir=None, frame_multiple: int = 1,
                 **overrides):
        super().__init__(crop_frames, audio.audio_settings(settings, **overrides), frame_multiple)
        if n_clips < 1:
            raise ValueError(f"n_clips must be >= 1, got {n_clips}")
        unknown = [g for g in genres if g not in GENRES]
        if unknown or not genres:
            raise ValueError(f"genres must be a non-empty subset of {GENRES}, got {list(genres)}")
        self.seed, self.duration, self.genres = int(seed), float(duration), tuple(genres)
        self.label_names = list(GENRES)
        frames = audio.num_frames(int(round(duration * self.settings.sample_rate)), self.settings)
        if self._too_short(frames):
            raise ValueError(f"clips of {duration} s have {frames} frames, fewer than min_frames={self.min_frames}")
        cache_dir = None if cache_dir is None else Path(cache_dir)
        if cache_dir is not None:
            cache_dir.mkdir(parents=True, exist_ok=True)
        for k in range(int(n_clips)):
            genre = self.genres[k % len(self.genres)]
            cache = None
            if cache_dir is not None:
                key = _cache_key(self.settings, synthetic=[self.seed, k], duration=self.duration, genre=genre,
                                 generator=SYNTH_VERSION)
                cache = _cache_path(cache_dir, f"synthetic-{genre}", key)
            spec = _load_cached(cache)
            if spec is not None:
                spec = torch.from_numpy(spec)
            else:
                waveform, _ = synth_clip([self.seed, k], self.settings.sample_rate, self.duration, genre=genre)
                spec = audio.log_mel_spectrogram(torch.from_numpy(waveform), self.settings).float()
                if cache is not None:
                    _save_atomic(cache, spec.numpy())
            self._add(spec, spec.shape[0], GENRES.index(genre))


# ---------------------------------------------------------------------------------------------- loader


class BatchPlanSampler(Sampler):
    """Yields the batches of melnet_fast.batching.plan_batches (lists of (index, crop_seed)), a new plan each
    epoch, drawn from `generator` in the main process, so they do not depend on the number of workers."""

    def __init__(self, dataset: SpectrogramCropDataset, batch_size: int, shuffle: bool, generator: torch.Generator,
                 bucket_batches: int = 0, drop_last: bool = False):
        self.lengths = [dataset.item_frames(i) for i in range(len(dataset))]
        self.batch_size, self.shuffle, self.generator = batch_size, shuffle, generator
        self.bucket_batches, self.drop_last = bucket_batches, drop_last

    def __len__(self) -> int:
        n = len(self.lengths)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[List[Tuple[int, int]]]:
        # A generator: the plan is drawn at the first batch, not when the DataLoader creates (and, with workers,
        # discards and creates again) the iterator, so the draws do not depend on num_workers.
        yield from plan_batches(self.lengths, self.batch_size, self.generator, shuffle=self.shuffle,
                                bucket_batches=self.bucket_batches, drop_last=self.drop_last)


def make_loader(dataset: SpectrogramCropDataset, batch_size: int, num_workers: int = 0, shuffle: bool = True,
                seed: int = 0, *, drop_last: bool = False, bucket_batches: int = 0, **loader_kwargs) -> DataLoader:
    """DataLoader of melnet_fast.batching.Batch (spec [B, T, F] padded to the longest, lengths [B], labels [B],
    texts).

    One epoch is one example of every item; order, crop offsets and buckets are drawn from a generator seeded
    with `seed` (new ones each epoch), so two loaders with the same seed give the same batches, whatever
    num_workers. bucket_batches > 0: length-bucketed batches (see plan_batches). loader_kwargs go to DataLoader
    (pin_memory, persistent_workers, ...).
    """
    generator = torch.Generator().manual_seed(int(seed))
    sampler = BatchPlanSampler(dataset, batch_size, shuffle, generator, bucket_batches, drop_last)
    return DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers, collate_fn=collate_examples,
                      generator=generator, **loader_kwargs)


__all__ = [
    "AUDIO_EXTENSIONS", "SKIP_REASONS", "SkippedAudioWarning", "SpectrogramCropDataset", "AudioFolderDataset",
    "SyntheticMusicDataset", "BatchPlanSampler", "make_loader", "Example", "read_corpus",
]
