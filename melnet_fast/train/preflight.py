"""Checks made before long work starts: output paths writable, sizes within the memory and disk there are.

Each check raises PreflightError with a message that names the argument (`arg`, e.g. "--out") and what was
expected, so a command can print it as one line instead of failing after minutes of work.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import torch


class PreflightError(ValueError):
    """A check before the work failed; the message names the argument and what was expected."""


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _probe(folder: Path, arg: str, shown: str) -> None:
    """Create and delete a file in `folder`: the one test of writability that sees read-only mounts, ACLs
    and network file systems alike."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-probe-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise PreflightError(f"{arg} {shown}: cannot write in {folder} ({e.strerror or e})") from None


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def _make_dir(folder: Path, arg: str, shown: str) -> None:
    """Create `folder` (and its parents) if needed and check that files can be written in it."""
    base = _nearest_existing(folder)
    if not base.is_dir():
        raise PreflightError(f"{arg} {shown}: {base} is a file, not a directory")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PreflightError(f"{arg} {shown}: cannot create {folder} ({e.strerror or e})") from None
    _probe(folder, arg, shown)


def writable_directory(path: str | os.PathLike, arg: str) -> Path:
    """Create directory `path` (and its parents) if needed and check that files can be written in it."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise PreflightError(f"{arg} {path} is a file; expected a directory (or a path to create one at)")
    _make_dir(p, arg, str(path))
    return p


def writable_file(path: str | os.PathLike, arg: str) -> Path:
    """Check that file `path` can be written (its folder is created if needed; an existing file is replaced)."""
    p = Path(path)
    if p.is_dir():
        raise PreflightError(f"{arg} {path} is a directory; expected a file name")
    _make_dir(p.parent, arg, str(path))
    return p


def free_disk(path: str | os.PathLike, need: int, arg: str, what: str) -> None:
    """PreflightError when the file system of `path` has less than `need` bytes free for `what`."""
    free = shutil.disk_usage(_nearest_existing(Path(path))).free
    if free < need:
        raise PreflightError(f"{arg} {path}: {what} needs about {human_bytes(need)} of disk, its file system has "
                             f"{human_bytes(free)} free")


def _cgroup_headroom() -> int | None:
    try:  # cgroup v2: a container's limit, which MemAvailable does not see
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text())
    except (OSError, ValueError):
        return None
    return None if limit == "max" else max(0, int(limit) - used)


def available_memory(device: torch.device | str) -> int | None:
    """Bytes a new allocation can take on `device` (host: MemAvailable within the cgroup's limit; CUDA: free
    device memory plus what torch has cached), or None when unknown."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    available = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    headroom = _cgroup_headroom()
    if headroom is not None:
        available = headroom if available is None else min(available, headroom)
    return available


def enough_memory(need: int, device: torch.device | str, arg: str, what: str) -> None:
    """PreflightError when `what` (about `need` bytes) cannot fit in the memory `device` has available."""
    have = available_memory(device)
    if have is not None and need > have:
        raise PreflightError(f"{arg}: {what} needs about {human_bytes(need)} of memory, {device} has "
                             f"{human_bytes(have)} available")


# ------------------------------------------------------------------------------------- size estimates
# Floats kept per element of a tier's grid and per unit of hidden size (what the layers hold: LSTM input
# projections, gates, states and outputs, projections, residuals), fitted to the peak resident memory above the
# model's own on the CPU backend (float32): training small (D 64, 128) at 8 x 64 frames 490 / 1032 MB measured,
# 499 / 1049 MB estimated; sampling small 1 x 2048 and 4 x 1024 frames 267 / 519 MB, 273 / 545 MB; inverting 4000
# / 16000 tiny frames 195 / 648 MB, 184 / 736 MB. A GPU under bf16 autocast needs less.
_TRAIN_PER_LAYER = 30  # a tier-network layer, with autograd (4 directions: 3 time-delayed, 1 frequency-delayed)
_TRAIN_PER_FEATURE_LAYER = 28  # a feature-extraction layer of an upsampling tier (4 directions)
_SAMPLE_PER_ELEMENT = 34  # sampling: conditioning terms and the feature-extraction pass, no autograd
_INVERSION_PER_BIN = 120  # inversion: bytes per linear STFT bin and frame (complex copies, autograd of L-BFGS)


def training_bytes(config, batch: int, frames: int, tiers, recompute: bool = False) -> int:
    """About the peak memory of one training step on batches [batch, frames, n_mels] of `tiers`: activations
    (of the largest tier alone with recompute) plus parameters, gradients and RMSProp's two buffers."""
    from melnet_fast.multiscale import tier_shapes

    D, K = config.hidden_size, config.n_mixtures
    shapes = tier_shapes(frames, config.n_mels, config.n_tiers)
    per_tier = []
    for g in tiers:
        T, F = shapes[g - 1]
        floats = D * (_TRAIN_PER_LAYER * config.layers[g - 1]
                      + (_TRAIN_PER_FEATURE_LAYER * config.feature_layers if g > 1 else 0)) + 10 * K
        per_tier.append(4 * batch * T * F * floats)
    activations = max(per_tier) if recompute else sum(per_tier)
    return activations + 4 * 4 * sum(config.parameter_counts())


def sampling_bytes(config, count: int, frames: int) -> int:
    """About the peak memory of MelNet.sample(count, frames): the largest tier's conditioning and features."""
    from melnet_fast.multiscale import tier_shapes

    largest = max(T * F for T, F in tier_shapes(frames, config.n_mels, config.n_tiers))
    return 4 * count * (largest * _SAMPLE_PER_ELEMENT * config.hidden_size + 2 * frames * config.n_mels)


def inversion_bytes(config, frames: int) -> int:
    """About the peak memory of inverting one spectrogram of `frames` frames to audio."""
    n_freqs = config.n_fft // 2 + 1
    return _INVERSION_PER_BIN * n_freqs * frames + 16 * frames * config.hop_length


def checkpoint_bytes(parameters: int) -> int:
    """About the disk one set of checkpoints of a model of `parameters` float32 weights takes: the training state
    (weights and the optimizer's two buffers per weight, RMSProp's or Adam's), the latest and best weights, and
    room for the temporary file of the largest write."""
    return 4 * parameters * (3 + 1 + 1 + 3)
