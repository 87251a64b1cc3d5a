"""What the corpus makers share: the programs they need (found, or installed from Debian on request), held-out
splits by group, audio clean-up and writing, and the generic CSV manifest with its summary."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Sequence

import numpy as np

from melnet_fast._optional import require
from melnet_fast.atomic_files import atomic_write_bytes
from melnet_fast.corpora import MANIFEST_COLUMNS, MANIFEST_NAME, SPLITS

SUMMARY_NAME = "corpus.json"
PEAK = 0.7  # every clip is scaled to this peak: the corpora hold no level differences between sources


class MissingTool(RuntimeError):
    """A program or package a corpus maker needs is not installed; the message says how to install it."""


def find_program(name: str, debian_package: str, install: bool = False) -> str:
    """The path of program `name`; when missing, installed from Debian package `debian_package` if install
    (apt-get, as root or through sudo), else MissingTool naming the package."""
    path = shutil.which(name)
    if path is None and install:
        install_debian([debian_package])
        path = shutil.which(name)
    if path is None:
        raise MissingTool(f"{name} is not installed: install the Debian package {debian_package} "
                          f"(apt-get install {debian_package}), or pass --install")
    return path


def find_file(candidates: Sequence[str], debian_package: str, what: str, install: bool = False) -> Path:
    """The first existing path of `candidates`; when none exists, installed as find_program does."""
    for attempt in range(2):
        for c in candidates:
            if Path(c).is_file():
                return Path(c)
        if attempt or not install:
            break
        install_debian([debian_package])
    raise MissingTool(f"no {what} found (looked for {', '.join(candidates)}): install the Debian package "
                      f"{debian_package} (apt-get install {debian_package}), or pass --install")


def install_debian(packages: List[str]) -> None:
    """apt-get install the packages (apt-get update first if the first try fails); MissingTool on failure."""
    prefix = [] if os.geteuid() == 0 else (["sudo", "-n"] if shutil.which("sudo") else None)
    if prefix is None or shutil.which("apt-get") is None:
        raise MissingTool(f"cannot install {' '.join(packages)}: needs apt-get and root (or sudo); install them "
                          f"yourself")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = prefix + ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]
    if subprocess.run(install, env=env, capture_output=True).returncode == 0:
        return
    subprocess.run(prefix + ["apt-get", "update", "-q"], env=env, capture_output=True)
    done = subprocess.run(install, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise MissingTool(f"apt-get install {' '.join(packages)} failed: {done.stderr.strip()[-500:]}")


def split_groups(groups: Sequence[str], labels: Sequence[str | None], seed: int,
                 held_out: float = 0.1) -> Dict[str, str]:
    """group -> "train" / "validation" / "test": a seeded split of the distinct groups (pieces, sentences), never of
    their members, so no group has clips in two splits. Per label (stratified): held_out of its groups (at least
    one each once it has 3 or more) go to validation and as many to test.

    groups[k], labels[k]: the group and label of clip k (a group has one label).
    """
    by_label: Dict[str | None, List[str]] = {}
    for group, label in zip(groups, labels):
        members = by_label.setdefault(label, [])
        if group not in members:
            members.append(group)
    rng = np.random.default_rng(seed)
    out: Dict[str, str] = {}
    for label in sorted(by_label, key=lambda v: "" if v is None else v):
        members = sorted(by_label[label])
        rng.shuffle(members)
        n = len(members)
        k = max(1, round(n * held_out)) if n >= 3 else 0
        for i, group in enumerate(members):
            out[group] = "validation" if i < k else "test" if i < 2 * k else "train"
    return out


def tidy(waveform: np.ndarray, sample_rate: int, threshold: float = 1e-3, pad_seconds: float = 0.05) -> np.ndarray:
    """Mono float32 [samples]: channels mixed, leading and trailing near-silence cut (keeping pad_seconds), and
    scaled to peak PEAK. An all-silent input comes back empty."""
    w = np.asarray(waveform, dtype=np.float32)
    if w.ndim == 2:
        w = w.mean(axis=1)
    loud = np.flatnonzero(np.abs(w) > threshold * max(float(np.abs(w).max(initial=0.0)), 1e-12))
    if loud.size == 0 or float(np.abs(w).max(initial=0.0)) == 0.0:
        return w[:0]
    pad = int(pad_seconds * sample_rate)
    w = w[max(0, loud[0] - pad):loud[-1] + pad + 1]
    return (w * (PEAK / float(np.abs(w).max()))).astype(np.float32)


def write_flac(path: Path, waveform: np.ndarray, sample_rate: int) -> None:
    """16-bit FLAC, written under a temporary name and renamed (no half-written file is ever seen)."""
    soundfile = require("soundfile", "writing corpus audio")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.flac")
    soundfile.write(str(tmp), waveform, sample_rate, subtype="PCM_16", format="FLAC")
    os.replace(tmp, path)


def write_manifest(out_dir: Path, rows: Iterable[Mapping[str, object]], extra_columns: Sequence[str] = ()) -> Path:
    """out_dir/manifest.csv in the generic layout (melnet_fast.corpora): the MANIFEST_COLUMNS any row uses, then
    extra_columns; `path` relative to out_dir. Written atomically."""
    rows = list(rows)
    columns = [c for c in MANIFEST_COLUMNS if any(row.get(c) not in (None, "") for row in rows)]
    columns += [c for c in extra_columns if c not in columns]
    for row in rows:
        if row.get("split") not in (None, *SPLITS):
            raise ValueError(f"split must be one of {SPLITS}, got {row.get('split')!r}")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: _cell(row.get(c)) for c in columns})
    path = out_dir / MANIFEST_NAME
    atomic_write_bytes(path, buffer.getvalue().encode("utf-8"))
    return path


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def write_summary(out_dir: Path, summary: Dict) -> Path:
    path = out_dir / SUMMARY_NAME
    atomic_write_bytes(path, (json.dumps(summary, indent=1, sort_keys=True) + "\n").encode("utf-8"))
    return path


def summarise(rows: Sequence[Mapping[str, object]], label_key: str, seconds_of) -> Dict:
    """Clips, minutes and labels of a manifest's rows, in total and per split."""
    def block(subset):
        labels = sorted({str(r[label_key]) for r in subset})
        return {"clips": len(subset), "minutes": round(sum(seconds_of(r) for r in subset) / 60, 2),
                "labels": labels}

    out = {"all": block(rows)}
    for split in SPLITS:
        out[split] = block([r for r in rows if r.get("split") == split])
    return out


def prepare_out_dir(out_dir, overwrite: bool) -> Path:
    """Create out_dir; ValueError when it already holds a manifest and overwrite is False."""
    out = Path(out_dir)
    if (out / MANIFEST_NAME).exists() and not overwrite:
        raise ValueError(f"{out} already holds a corpus ({MANIFEST_NAME}); pass --overwrite to make it again")
    out.mkdir(parents=True, exist_ok=True)
    return out


__all__ = ["MissingTool", "find_program", "find_file", "install_debian", "split_groups", "tidy", "write_flac",
           "write_manifest", "write_summary", "summarise", "prepare_out_dir", "SUMMARY_NAME"]
