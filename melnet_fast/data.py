"""Datasets of log-mel spectrograms and their DataLoader.

Every dataset here holds whole normalised log-mel spectrograms [T_i, F] (melnet_fast.audio) and serves random
fixed-length crops: item -> (spec [crop_frames, F] float32, label int). `make_loader` batches them to
(spec [B, crop_frames, F] float32, label [B] int64) and draws both the order and the crop offsets from one
seeded generator in the main process, so batches are the same for any num_workers.

  AudioFolderDataset  a folder of wav / flac / ogg (recursive) or a CSV manifest (path, optional label);
                      bad files are skipped with one SkippedAudioWarning each and counted in `.skipped`.
  SyntheticMusicDataset  clips of melnet_fast.synthetic, deterministic from a seed (no download).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any, Dict, Iterator, List, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from melnet_fast import audio
from melnet_fast.synthetic import GENRES, SYNTH_VERSION, synth_clip

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")
LABEL_COLUMNS = ("label", "genre", "speaker")  # the first one a manifest has is its label column
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
    """Base class: whole spectrograms [T_i, F] and labels; items are crops of crop_frames frames.

    dataset[i] takes a crop at a random offset from torch's RNG (seeded per worker by the DataLoader);
    dataset[(i, crop_seed)] takes the offset crop_seed % (T_i - crop_frames + 1), as make_loader does.
    crop_frames None: whole spectrograms (only batchable when they all have the same length).
    """

    def __init__(self, crop_frames: int | None, settings: audio.AudioSettings):
        if crop_frames is not None and int(crop_frames) < 1:
            raise ValueError(f"crop_frames must be >= 1 or None, got {crop_frames}")
        self.crop_frames = None if crop_frames is None else int(crop_frames)
        self.settings = settings
        self.label_names: List[str] = []  # label id -> name; empty when the data is unlabelled (labels 0)
        self._specs: List[Any] = []  # torch [T, F] tensors, or .npy paths read by memory map
        self._frames: List[int] = []
        self.labels: List[int] = []

    def __len__(self) -> int:
        return len(self._specs)

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    def num_frames(self, index: int) -> int:
        """T of item `index`."""
        return self._frames[index]

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

    def __getitem__(self, key) -> Tuple[torch.Tensor, int]:
        index, crop_seed = key if isinstance(key, tuple) else (key, None)
        frames = self._frames[index]
        if self.crop_frames is None:
            return self._read(index, 0, frames), self.labels[index]
        span = frames - self.crop_frames + 1
        if crop_seed is None:
            offset = int(torch.randint(span, ()))
        else:
            offset = int(crop_seed) % span
        return self._read(index, offset, offset + self.crop_frames), self.labels[index]

    def _add(self, spec, frames: int, label: int) -> None:
        self._specs.append(spec)
        self._frames.append(int(frames))
        self.labels.append(int(label))


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
    """Random crops [crop_frames, F] of the log-mel spectrograms of a folder of audio files or of a manifest.

    source: a folder (every .wav / .flac / .ogg under it, recursively; unlabelled, or labelled by top-level
    subfolder when label_from_folder) or a CSV file with a column "path" (relative to the CSV's folder) and an
    optional label column (the first of label / genre / speaker), whose names are mapped to ids in sorted
    order (`label_names`). Audio is mono-mixed and resampled to settings.sample_rate.

    Bad files are skipped, each with one SkippedAudioWarning, and listed in `skipped` (reason -> paths):
    missing, unreadable, empty, non-finite (NaN or inf samples, or a spectrogram that overflows), too many
    channels (> max_channels), silent (peak <= silence_threshold, or every bin at the log floor), too short
    (fewer frames than crop_frames). ValueError if nothing is usable. A cached spectrogram holding NaN or inf is
    computed again (with a warning).

    cache_dir: spectrograms are stored there as .npy, keyed by file path, mtime, size, settings and the
    normalisation; later datasets read them instead of decoding audio (`cache_hits`, `cache_misses`).
    in_memory False (needs cache_dir) keeps only the cache paths and reads each crop by memory map.
    settings / overrides: as melnet_fast.audio.audio_settings.
    """

    def __init__(self, source, settings: Any = None, crop_frames: int | None = 64, *,
                 cache_dir=None, in_memory: bool = True, label_from_folder: bool = False,
                 silence_threshold: float = 1e-4, max_channels: int = 2, **overrides):
        super().__init__(crop_frames, audio.audio_settings(settings, **overrides))
        if not in_memory and cache_dir is None:
            raise ValueError("in_memory=False reads spectrograms from the cache: give a cache_dir")
        self.source = Path(source)
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        if self.cache_dir is not None:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.silence_threshold, self.max_channels = float(silence_threshold), int(max_channels)
        self.skipped: Dict[str, List[str]] = {}
        self.paths: List[Path] = []  # the usable files, in item order
        self.cache_hits = self.cache_misses = 0

        entries, names = self._list_entries(label_from_folder)
        self.label_names = names
        for path, label in entries:
            try:
                spec, frames = self._spectrogram(path, in_memory)
            except _Skip as skip:
                self.skipped.setdefault(skip.reason, []).append(str(path))
                warnings.warn(f"skipping {path}: {skip.reason}" + (f" ({skip.detail})" if skip.detail else ""),
                              SkippedAudioWarning, stacklevel=2)
                continue
            self.paths.append(path)
            self._add(spec, frames, label)
        if not self._specs:
            counts = ", ".join(f"{len(self.skipped[r])} {r}" for r in SKIP_REASONS if r in self.skipped)
            raise ValueError(f"no usable audio in {self.source}: {counts}")

    @property
    def skip_counts(self) -> Dict[str, int]:
        """reason -> number of files skipped for it."""
        return {reason: len(paths) for reason, paths in self.skipped.items()}

    def _list_entries(self, label_from_folder: bool) -> Tuple[List[Tuple[Path, int]], List[str]]:
        """(path, label id) of every file the source names, and the label names."""
        if self.source.is_dir():
            files = sorted(p for p in self.source.rglob("*")
                           if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())
            if not files:
                raise ValueError(f"no usable audio in {self.source}: no {'/'.join(AUDIO_EXTENSIONS)} files")
            if not label_from_folder:
                return [(p, 0) for p in files], []
            tags = [p.relative_to(self.source).parts[0] if p.parent != self.source else "." for p in files]
        elif self.source.is_file():
            files, tags = self._read_manifest()
        else:
            raise FileNotFoundError(f"no such folder or manifest: {self.source}")
        if tags is None:
            return [(p, 0) for p in files], []
        names = sorted(set(tags))
        ids = {name: i for i, name in enumerate(names)}
        return [(p, ids[t]) for p, t in zip(files, tags)], names

    def _read_manifest(self) -> Tuple[List[Path], List[str] | None]:
        with open(self.source, newline="", encoding="utf-8-sig") as f:  # -sig: spreadsheets write a BOM
            rows = list(csv.DictReader(f))
        columns = list(rows[0].keys()) if rows else []
        if "path" not in columns:
            raise ValueError(f"{self.source}: a manifest needs a 'path' column, found {columns}")
        label_column = next((c for c in LABEL_COLUMNS if c in columns), None)
        root = self.source.parent
        files = [root / row["path"].strip() for row in rows]
        if label_column is None:
            return files, None
        tags = [(row[label_column] or "").strip() for row in rows]
        for n, tag in enumerate(tags):
            if not tag:
                raise ValueError(f"{self.source}: row {n + 2} has no {label_column}")
        return files, tags

    def _spectrogram(self, path: Path, in_memory: bool):
        """(spectrogram tensor [T, F] or its cache path, T), or _Skip."""
        try:
            stat = path.stat()
        except OSError:
            raise _Skip("missing") from None
        cache = None
        if self.cache_dir is not None:
            key = _cache_key(self.settings, path=str(path.resolve()), mtime_ns=stat.st_mtime_ns, size=stat.st_size)
            cache = _cache_path(self.cache_dir, path.name, key)
            spec = _load_cached(cache, mmap=True)
            if spec is not None:
                self.cache_hits += 1
                return self._checked(cache, spec, in_memory)
            self.cache_misses += 1
        spec = self._compute(path).numpy()
        if cache is not None:
            _save_atomic(cache, spec)
        return self._checked(cache, spec, in_memory)

    def _checked(self, cache, spec: np.ndarray, in_memory: bool):
        frames = spec.shape[0]
        if self.crop_frames is not None and frames < self.crop_frames:
            raise _Skip("too short", f"{frames} frames < crop of {self.crop_frames}")
        if spec.max() <= _FLOOR:  # nothing above the log floor: silence to the model, whatever the peak
            raise _Skip("silent", "every bin at the log floor")
        if not in_memory:
            return str(cache), frames
        return torch.from_numpy(np.array(spec, dtype=np.float32)), frames

    def _compute(self, path: Path) -> torch.Tensor:
        import soundfile

        try:
            info = soundfile.info(str(path))
            if info.frames == 0:
                raise _Skip("empty")
            if info.channels > self.max_channels:
                raise _Skip("too many channels", f"{info.channels} > {self.max_channels}")
            waveform, _ = audio.load_audio(path, self.settings.sample_rate)
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
        if self.crop_frames is not None and audio.num_frames(waveform.numel(), self.settings) < self.crop_frames:
            raise _Skip("too short", f"{audio.num_frames(waveform.numel(), self.settings)} frames "
                                     f"< crop of {self.crop_frames}")
        spec = audio.log_mel_spectrogram(waveform, self.settings).float().contiguous()
        if not bool(torch.isfinite(spec).all()):
            raise _Skip("non-finite", f"the spectrogram overflows (peak sample {peak:.3g})")
        return spec


# -------------------------------------------------------------------------------------------- synthetic


class SyntheticMusicDataset(SpectrogramCropDataset):
    """n_clips clips of melnet_fast.synthetic (genres cycled in turn, so balanced), deterministic in seed.

    Clip k is synth_clip([seed, k], settings.sample_rate, duration, genre=genres[k % len(genres)]); labels are
    genre ids in GENRES (label_names = GENRES). crop_frames None: whole clips (all the same length).
    cache_dir: spectrograms stored as .npy as for AudioFolderDataset.
    """

    def __init__(self, n_clips: int, seed: int = 0, settings: Any = None, crop_frames: int | None = 64, *,
                 duration: float = 4.0, genres: Sequence[str] = GENRES, cache_dir=None, **overrides):
        super().__init__(crop_frames, audio.audio_settings(settings, **overrides))
        if n_clips < 1:
            raise ValueError(f"n_clips must be >= 1, got {n_clips}")
        unknown = [g for g in genres if g not in GENRES]
        if unknown or not genres:
            raise ValueError(f"genres must be a non-empty subset of {GENRES}, got {list(genres)}")
        self.seed, self.duration, self.genres = int(seed), float(duration), tuple(genres)
        self.label_names = list(GENRES)
        frames = audio.num_frames(int(round(duration * self.settings.sample_rate)), self.settings)
        if self.crop_frames is not None and frames < self.crop_frames:
            raise ValueError(f"clips of {duration} s have {frames} frames, fewer than crop_frames="
                             f"{self.crop_frames}")
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


class CropSampler(Sampler):
    """Yields (index, crop_seed) pairs: the order (a permutation if shuffle) and crop seeds come from
    `generator`, in the main process, so they do not depend on the number of workers."""

    def __init__(self, n: int, shuffle: bool, generator: torch.Generator):
        self.n, self.shuffle, self.generator = n, shuffle, generator

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[Tuple[int, int]]:
        order = torch.randperm(self.n, generator=self.generator) if self.shuffle else torch.arange(self.n)
        seeds = torch.randint(0, 2**62, (self.n,), generator=self.generator)
        return iter(zip(order.tolist(), seeds.tolist()))


def make_loader(dataset: SpectrogramCropDataset, batch_size: int, num_workers: int = 0, shuffle: bool = True,
                seed: int = 0, *, drop_last: bool = False, **loader_kwargs) -> DataLoader:
    """DataLoader of (spec [B, crop_frames, F] float32, label [B] int64) batches.

    One epoch is one crop of every item; order and crop offsets are drawn from a generator seeded with `seed`
    (new ones each epoch), so two loaders with the same seed give the same batches, whatever num_workers.
    loader_kwargs go to DataLoader (pin_memory, persistent_workers, ...).
    """
    generator = torch.Generator().manual_seed(int(seed))
    sampler = CropSampler(len(dataset), shuffle, generator)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                      drop_last=drop_last, generator=generator, **loader_kwargs)


__all__ = [
    "AUDIO_EXTENSIONS", "SKIP_REASONS", "SkippedAudioWarning", "SpectrogramCropDataset", "AudioFolderDataset",
    "SyntheticMusicDataset", "CropSampler", "make_loader",
]
