"""Corpus layouts: which audio files a path holds, with their labels, speakers, texts, splits and excerpt bounds.

read_corpus(path) recognises, in this order:
  generic CSV   a .csv file with a header row: `path` (relative to the CSV's folder) and optional `label` (or
                `genre`), `speaker`, `text`, `split` (train / validation / test; val, valid, dev accepted),
                `start` and `end` (seconds: the excerpt of the file to use). Other columns are ignored.
  MAESTRO       a maestro-v*.csv file, or a folder holding one: columns `split` and `audio_filename` (relative to
                the CSV's folder), `canonical_composer` (when present) as the label.
  LJSpeech      metadata.csv with `|` separators (id|text|normalized text, no header) and audio in wavs/ID.wav: the
                folder holding it or the file itself; the text is the normalized one when given (numbers spelled
                out), else the raw text.
  manifest      a folder holding manifest.csv (what `melnet-fast data` writes): that generic CSV.
  VCTK          a folder with wav48*/SPEAKER/*.wav|flac: speaker ids from the folders, texts from txt/SPEAKER/ID.txt
                when there; of VCTK 0.92's two microphones (ID_mic1, ID_mic2) only mic1 is kept.
  speakers      any folder whose audio files all sit one level down in two or more SPEAKER/ folders.
  folder        any other folder: every audio file under it, unlabelled (or labelled by top-level subfolder with
                label_from_folder).
A layout that does not parse raises CorpusError (a ValueError) naming the file, the line and the column.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import re
from pathlib import Path
from typing import Dict, List, Sequence

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")
MANIFEST_COLUMNS = ("path", "label", "speaker", "text", "split", "start", "end")  # of the generic CSV
SPLITS = ("train", "validation", "test")
SPLIT_ALIASES = {"val": "validation", "valid": "validation", "dev": "validation"}
LABEL_COLUMNS = ("label", "genre")  # the first one a CSV has is its label column (else `speaker` labels it)
MANIFEST_NAME = "manifest.csv"
LJSPEECH_METADATA = "metadata.csv"
_MAESTRO = re.compile(r"^maestro-v.*\.csv$", re.IGNORECASE)
_VCTK_MIC = re.compile(r"^(.*)_mic([12])$")


class CorpusError(ValueError):
    """A corpus file that does not follow its layout (missing column, bad value, ...)."""


@dataclasses.dataclass(frozen=True)
class Entry:
    """One audio item of a corpus: a file, or the excerpt [start, end) seconds of it (None = from the start /
    to the end). label / speaker / text: None when the layout has none; split: "train", "validation", "test" or
    None."""

    path: Path
    label: str | None = None
    speaker: str | None = None
    text: str | None = None
    split: str | None = None
    start: float | None = None
    end: float | None = None


@dataclasses.dataclass
class Corpus:
    """The entries of a corpus and how they were read. layout: one of "csv", "maestro", "ljspeech", "vctk",
    "speakers", "folder". label_kind: which field labels the entries for class conditioning ("label",
    "speaker" or None: unlabelled)."""

    source: Path
    layout: str
    entries: List[Entry]

    @property
    def label_kind(self) -> str | None:
        if any(e.label is not None for e in self.entries):
            return "label"
        if any(e.speaker is not None for e in self.entries):
            return "speaker"
        return None

    def label_of(self, entry: Entry) -> str | None:
        """The class label of an entry (its label, else its speaker, as label_kind says)."""
        kind = self.label_kind
        return None if kind is None else getattr(entry, kind)

    @property
    def label_names(self) -> List[str]:
        """Sorted label names over the whole corpus (every split), so that ids agree between splits."""
        return sorted({self.label_of(e) for e in self.entries} - {None})

    @property
    def has_splits(self) -> bool:
        return any(e.split is not None for e in self.entries)

    def select(self, splits: str | Sequence[str] | None) -> List[Entry]:
        """Entries whose split is among `splits` (None: all entries)."""
        if splits is None:
            return list(self.entries)
        wanted = {splits} if isinstance(splits, str) else set(splits)
        bad = sorted(wanted - set(SPLITS))
        if bad:
            raise ValueError(f"unknown split(s) {bad}; splits are {', '.join(SPLITS)}")
        return [e for e in self.entries if e.split in wanted]


def read_corpus(source, label_from_folder: bool = False) -> Corpus:
    """The Corpus at `source` (a file or a folder; see the module docstring for the layouts).

    FileNotFoundError when source does not exist; CorpusError when a layout's file does not parse; ValueError
    when a folder holds no audio.
    """
    source = Path(source)
    if source.is_file():
        return _read_file(source)
    if not source.is_dir():
        raise FileNotFoundError(f"no such folder or manifest: {source}")
    maestro = sorted(p for p in source.iterdir() if _MAESTRO.match(p.name) and p.is_file())
    if maestro:
        return _read_maestro(maestro[-1])  # the newest version when several are there
    if (source / LJSPEECH_METADATA).is_file() and (source / "wavs").is_dir():
        return _read_ljspeech(source / LJSPEECH_METADATA)
    if (source / MANIFEST_NAME).is_file():
        return _read_csv(source / MANIFEST_NAME)
    vctk = sorted(p for p in source.glob("wav48*") if p.is_dir())
    if vctk:
        return _read_vctk(source, vctk[0])
    return _read_folder(source, label_from_folder)


# ------------------------------------------------------------------------------------------------ files


def _read_file(path: Path) -> Corpus:
    if _MAESTRO.match(path.name):
        return _read_maestro(path)
    with open(path, encoding="utf-8-sig", newline="") as f:
        first = f.readline()
    if "|" in first and "path" not in next(csv.reader([first]), []):
        return _read_ljspeech(path)
    return _read_csv(path)


def _rows(path: Path) -> tuple[List[tuple[int, Dict[str, str]]], List[str]]:
    """([(line number, row)], columns) of a CSV with a header; values stripped, missing ones ""."""
    rows = []
    with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: spreadsheets write a BOM
        reader = csv.DictReader(f)
        for row in reader:
            rows.append((reader.line_num, {(k or "").strip(): v.strip() if isinstance(v, str) else ""
                                           for k, v in row.items()}))
        columns = [c.strip() for c in (reader.fieldnames or [])]
    return rows, columns


def _require(path: Path, columns: List[str], needed: Sequence[str], what: str) -> None:
    missing = [c for c in needed if c not in columns]
    if missing:
        raise CorpusError(f"{path}: {what} needs the column(s) {missing}, found columns {columns}")


def _split(path: Path, line: int, value: str, column: str = "split") -> str | None:
    if not value:
        return None
    v = value.lower()
    v = SPLIT_ALIASES.get(v, v)
    if v not in SPLITS:
        raise CorpusError(f"{path} line {line}: column '{column}' must be one of {', '.join(SPLITS)} "
                          f"(or {', '.join(SPLIT_ALIASES)}), got {value!r}")
    return v


def _seconds(path: Path, line: int, column: str, value: str) -> float | None:
    if not value:
        return None
    try:
        t = float(value)
    except ValueError:
        t = math.nan
    if not math.isfinite(t) or t < 0:
        raise CorpusError(f"{path} line {line}: column '{column}' must be a number of seconds >= 0, got {value!r}")
    return t


def _read_csv(path: Path) -> Corpus:
    rows, columns = _rows(path)
    _require(path, columns, ["path"], "a manifest")
    label_column = next((c for c in LABEL_COLUMNS if c in columns), None)
    root = path.parent
    entries = []
    for n, row in rows:
        if not row.get("path"):
            raise CorpusError(f"{path} line {n}: column 'path' is empty")
        label = row.get(label_column) if label_column else None
        if label_column and not label:
            raise CorpusError(f"{path} line {n}: column '{label_column}' is empty (every row needs a label)")
        speaker = row.get("speaker") if "speaker" in columns else None
        if "speaker" in columns and not speaker:
            raise CorpusError(f"{path} line {n}: column 'speaker' is empty (every row needs a speaker)")
        start = _seconds(path, n, "start", row.get("start", ""))
        end = _seconds(path, n, "end", row.get("end", ""))
        if end is not None and end <= (start or 0.0):
            raise CorpusError(f"{path} line {n}: column 'end' ({end}) must be greater than 'start' ({start or 0})")
        entries.append(Entry(root / row["path"], label, speaker, row.get("text") if "text" in columns else None,
                             _split(path, n, row.get("split", "")), start, end))
    return Corpus(path, "csv", entries)


def _read_maestro(path: Path) -> Corpus:
    rows, columns = _rows(path)
    _require(path, columns, ["split", "audio_filename"], "a MAESTRO metadata file")
    entries = []
    for n, row in rows:
        if not row["audio_filename"]:
            raise CorpusError(f"{path} line {n}: column 'audio_filename' is empty")
        split = _split(path, n, row["split"])
        if split is None:
            raise CorpusError(f"{path} line {n}: column 'split' is empty")
        entries.append(Entry(path.parent / row["audio_filename"], row.get("canonical_composer") or None,
                             split=split))
    return Corpus(path, "maestro", entries)


def _read_ljspeech(path: Path) -> Corpus:
    entries = []
    with open(path, encoding="utf-8-sig", newline="") as f:
        for n, line in enumerate(f, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            fields = line.split("|")
            if len(fields) not in (2, 3) or not fields[0].strip():
                raise CorpusError(f"{path} line {n}: expected 'id|text|normalized text' (LJSpeech metadata), "
                                  f"got {len(fields)} field(s)")
            text = (fields[2] if len(fields) == 3 and fields[2].strip() else fields[1]).strip()
            if not text:
                raise CorpusError(f"{path} line {n}: the text of {fields[0].strip()} is empty")
            entries.append(Entry(path.parent / "wavs" / f"{fields[0].strip()}.wav", text=text))
    return Corpus(path, "ljspeech", entries)


# ---------------------------------------------------------------------------------------------- folders


def _audio_files(folder: Path) -> List[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())


def _read_vctk(root: Path, audio_root: Path) -> Corpus:
    files = [p for p in _audio_files(audio_root) if p.parent.parent == audio_root]
    if not files:
        raise ValueError(f"no usable audio in {root}: no {'/'.join(AUDIO_EXTENSIONS)} files in "
                         f"{audio_root.name}/SPEAKER/")
    stems = {p.with_suffix("") for p in files}
    entries = []
    for p in files:
        m = _VCTK_MIC.match(p.stem)
        if m and m.group(2) == "2" and p.with_name(f"{m.group(1)}_mic1").with_suffix("") in stems:
            continue  # the same utterance from the second microphone
        utterance = m.group(1) if m else p.stem
        speaker = p.parent.name
        txt = root / "txt" / speaker / f"{utterance}.txt"
        text = txt.read_text(encoding="utf-8", errors="replace").strip() if txt.is_file() else None
        entries.append(Entry(p, speaker=speaker, text=text or None))
    return Corpus(root, "vctk", entries)


def _read_folder(root: Path, label_from_folder: bool) -> Corpus:
    files = _audio_files(root)
    if not files:
        raise ValueError(f"no usable audio in {root}: no {'/'.join(AUDIO_EXTENSIONS)} files")
    tops = [p.relative_to(root).parts[0] if p.parent != root else "." for p in files]
    if label_from_folder:
        return Corpus(root, "folder", [Entry(p, label=t) for p, t in zip(files, tops)])
    if all(p.parent.parent == root for p in files) and len(set(tops)) >= 2:
        return Corpus(root, "speakers", [Entry(p, speaker=t) for p, t in zip(files, tops)])
    return Corpus(root, "folder", [Entry(p) for p in files])


__all__ = ["AUDIO_EXTENSIONS", "MANIFEST_COLUMNS", "SPLITS", "MANIFEST_NAME", "CorpusError", "Entry", "Corpus",
           "read_corpus"]
