"""`melnet-fast data music DIR`: real music made on the machine. Scores from the corpus the music21 package ships
(Bach chorales, Palestrina masses, Monteverdi madrigals, trecento songs, fiddle tunes) are played by FluidSynth
with a General MIDI SoundFont (Debian packages fluidsynth and fluid-soundfont-gm), cut into excerpts, labelled by
collection, and split into train / validation / test by piece (never by excerpt of one piece).

Reproducible from the seed: it chooses the pieces (a seeded order of each collection's files); music21, FluidSynth
and the SoundFont play them deterministically.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import subprocess
import tempfile
import zlib
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np

from melnet_fast._optional import missing_message, require
from melnet_fast.corpus_makers.common import (
    MissingTool,
    find_file,
    find_program,
    prepare_out_dir,
    split_groups,
    summarise,
    tidy,
    write_flac,
    write_manifest,
    write_summary,
)

# label -> (music21 corpus folder, file-name pattern, General MIDI program that plays every part). One timbre per
# collection, close to how the music is performed.
COLLECTIONS: Dict[str, Tuple[str, str, int]] = {
    "bach": ("bach", r"^bwv", 19),  # chorales: church organ
    "palestrina": ("palestrina", r"", 52),  # mass movements: choir aahs
    "monteverdi": ("monteverdi", r"^madrigal", 48),  # madrigals: string ensemble
    "trecento": ("trecento", r"", 73),  # fourteenth-century songs: flute
    "folk": ("ryansMammoth", r"", 40),  # fiddle tunes: violin
}
SOUNDFONTS = ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/sounds/sf2/default-GM.sf2")
DEFAULT_QPM = 120.0  # music21 writes this tempo into the MIDI file when a score has none
MIN_EXCERPT_SECONDS = 1.0  # a last excerpt shorter than this is dropped
MIN_SAMPLE_RATE = 4000


def _music21():
    try:
        import music21
    except ImportError:
        raise MissingTool(missing_message("music21", "melnet-fast data music")) from None
    return music21


def candidate_pieces(label: str, seed: int) -> List[str]:
    """The files of collection `label` in music21's corpus, in a seeded order (the first ones are used)."""
    folder, pattern, _ = COLLECTIONS[label]
    corpus = _music21().corpus
    files = sorted(str(p) for p in corpus.getCorePaths()
                   if Path(p).parent.name == folder and re.search(pattern, Path(p).name))
    order = np.random.default_rng([seed, zlib.crc32(label.encode())]).permutation(len(files))
    return [files[i] for i in order]


def piece_id(label: str, path: str) -> str:
    """A stable name of a piece: label/file stem, other characters than letters, digits and .+- as '_'."""
    return f"{label}/" + re.sub(r"[^A-Za-z0-9.+-]+", "_", Path(path).stem)


def render_piece(source: str, program: int, out_path: str, max_seconds: float, sample_rate: int, soundfont: str,
                 fluidsynth: str) -> float:
    """Play the score at `source` with General MIDI `program` into a FLAC at out_path (at most max_seconds, silence
    at the ends cut, peak-normalised). Returns its duration in seconds (0.0 when nothing audible came out)."""
    soundfile = require("soundfile", "rendering the music corpus")
    m21 = _music21()
    score = m21.converter.parse(source)
    if isinstance(score, m21.stream.Opus):
        score = score.scores[0]
    marks = score.flatten().getElementsByClass(m21.tempo.MetronomeMark)
    qpm = float(marks[0].getQuarterBPM()) if marks and marks[0].getQuarterBPM() else DEFAULT_QPM
    score = _truncated(m21, score, max_seconds * qpm / 60.0 * 1.25)
    for note in list(score.recurse().notes):  # grace notes last no time: FluidSynth would hold them forever
        if note.duration.isGrace or note.duration.quarterLength == 0:
            note.activeSite.remove(note)
    for part in score.parts if score.parts else [score]:
        for old in list(part.recurse().getElementsByClass(m21.instrument.Instrument)):
            old.activeSite.remove(old)
        part.insert(0, m21.instrument.instrumentFromMidiProgram(program))
    with tempfile.TemporaryDirectory() as tmp:
        midi, wav = os.path.join(tmp, "piece.mid"), os.path.join(tmp, "piece.wav")
        score.write("midi", fp=midi)
        subprocess.run([fluidsynth, "-ni", "-q", "-g", "0.5", "-r", str(sample_rate), "-F", wav, soundfont, midi],
                       check=True, capture_output=True, timeout=60 + 4 * max_seconds)
        waveform, rate = soundfile.read(wav, dtype="float32", always_2d=True)
    waveform = tidy(waveform, rate)[:int(max_seconds * rate)]
    if waveform.size == 0:
        return 0.0
    write_flac(Path(out_path), waveform, rate)
    return waveform.size / rate


def _truncated(m21, score, max_quarters: float):
    """The score up to the first measure that starts after max_quarters quarter notes (all of it if shorter)."""
    if score.highestTime <= max_quarters or not score.parts:
        return score
    measures = score.parts[0].getElementsByClass(m21.stream.Measure)
    last = next((m.number for m in measures if m.offset >= max_quarters), None)
    return score if last is None else score.measures(0, last)


def _executor(jobs: int):
    """Processes for jobs > 1 (music21 is pure Python), else the calling process."""
    if jobs <= 1:
        return _InProcess()
    # fork: the workers run music21 and FluidSynth only (no torch), and need no importable __main__ as spawn does
    context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    return ProcessPoolExecutor(jobs, mp_context=context)


class _InProcess:
    """The part of an Executor make_music_corpus uses, running each call at once in this process."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def submit(self, fn, *args) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args))
        except Exception as e:
            future.set_exception(e)
        return future


def excerpts(duration: float, clip_seconds: float) -> List[Tuple[float, float]]:
    """[start, end) seconds of consecutive excerpts of clip_seconds covering a piece; a last excerpt shorter than
    MIN_EXCERPT_SECONDS is dropped, so lengths vary only at the end of a piece."""
    out, start = [], 0.0
    while start < duration:
        end = min(start + clip_seconds, duration)
        if end - start >= MIN_EXCERPT_SECONDS:
            out.append((round(start, 3), round(end, 3)))
        start += clip_seconds
    return out


def make_music_corpus(out_dir, *, labels: Sequence[str] = tuple(COLLECTIONS), pieces_per_label: int = 12,
                      clip_seconds: float = 6.0, max_piece_seconds: float = 60.0, sample_rate: int = 16000,
                      seed: int = 0, held_out: float = 0.1, jobs: int | None = None, install: bool = False,
                      overwrite: bool = False, log: Callable[[str], None] = print) -> Dict:
    """Write the music corpus to out_dir (audio/LABEL/PIECE.flac, manifest.csv, corpus.json) and return the summary.

    labels: collections to use (keys of COLLECTIONS); pieces_per_label pieces of each, at most max_piece_seconds
    each, cut into excerpts of clip_seconds (rows of the manifest, with start / end). held_out: the share of each
    collection's pieces in validation, and as many in test. jobs: parallel renderers (default: CPU count).
    install: apt-get the missing Debian packages. MissingTool when a tool is missing.
    """
    unknown = [x for x in labels if x not in COLLECTIONS]
    if unknown or not labels:
        raise ValueError(f"labels must be a non-empty subset of {list(COLLECTIONS)}, got {list(labels)}")
    for name, v, low in (("pieces_per_label", pieces_per_label, 1), ("sample_rate", sample_rate, MIN_SAMPLE_RATE)):
        if not isinstance(v, int) or v < low:
            raise ValueError(f"{name} must be an int >= {low}, got {v!r}")
    if not (clip_seconds >= MIN_EXCERPT_SECONDS and max_piece_seconds >= clip_seconds):
        raise ValueError(f"need {MIN_EXCERPT_SECONDS} <= clip_seconds <= max_piece_seconds, got {clip_seconds} "
                         f"and {max_piece_seconds}")
    fluidsynth = find_program("fluidsynth", "fluidsynth", install)
    soundfont = str(find_file(SOUNDFONTS, "fluid-soundfont-gm", "General MIDI SoundFont", install))
    m21 = _music21()
    out = prepare_out_dir(out_dir, overwrite)

    pieces: List[Tuple[str, str, float]] = []  # (label, piece id, seconds)
    failed: List[str] = []
    jobs = jobs or os.cpu_count() or 1
    with _executor(jobs) as pool:
        for label in labels:
            queue = candidate_pieces(label, seed)
            got = 0
            while got < pieces_per_label and queue:  # a piece that does not play is replaced by the next one
                batch, queue = queue[:pieces_per_label - got], queue[pieces_per_label - got:]
                ids = [piece_id(label, src) for src in batch]
                futures = [pool.submit(render_piece, src, COLLECTIONS[label][2], str(out / "audio" / f"{pid}.flac"),
                                       max_piece_seconds, sample_rate, soundfont, fluidsynth)
                           for src, pid in zip(batch, ids)]
                for pid, future in zip(ids, futures):
                    try:
                        seconds = future.result()
                    except Exception as e:  # a score music21 cannot read, or that FluidSynth cannot play
                        failed.append(f"{pid}: {type(e).__name__}: {str(e)[:200]}")
                        continue
                    if seconds < MIN_EXCERPT_SECONDS:
                        failed.append(f"{pid}: silent")
                        continue
                    pieces.append((label, pid, seconds))
                    got += 1
                    log(f"  {pid}: {seconds:.1f} s")
            if got < pieces_per_label:
                log(f"  {label}: only {got} of {pieces_per_label} pieces could be played")
    if not pieces:
        raise RuntimeError(f"no piece could be played; first failures: {failed[:3]}")

    split = split_groups([p for _, p, _ in pieces], [label for label, _, _ in pieces], seed, held_out)
    rows = [{"path": f"audio/{pid}.flac", "label": label, "split": split[pid], "start": start, "end": end,
             "piece": pid}
            for label, pid, seconds in pieces for start, end in excerpts(seconds, clip_seconds)]
    write_manifest(out, rows, extra_columns=("piece",))
    version = subprocess.run([fluidsynth, "--version"], capture_output=True, text=True).stdout.splitlines()
    summary = {
        "kind": "music", "seed": seed, "sample_rate": sample_rate, "clip_seconds": clip_seconds,
        "max_piece_seconds": max_piece_seconds, "held_out": held_out,
        "pieces": {s: sorted(p for p, v in split.items() if v == s) for s in ("train", "validation", "test")},
        "collections": {x: {"music21_folder": COLLECTIONS[x][0], "gm_program": COLLECTIONS[x][2]} for x in labels},
        "tools": {"music21": m21.__version__, "fluidsynth": version[0] if version else "?", "soundfont": soundfont},
        "failed": failed,
        **summarise(rows, "label", lambda r: r["end"] - r["start"]),
    }
    write_summary(out, summary)
    return summary


def describe(summary: Dict) -> str:
    """One line about a corpus summary: clips, minutes, labels, pieces per split."""
    a = summary["all"]
    pieces = {s: len(v) for s, v in summary["pieces"].items()}
    return (f"{a['clips']} clips, {a['minutes']:.1f} min, {len(a['labels'])} labels ({', '.join(a['labels'])}); "
            f"pieces: {pieces['train']} train / {pieces['validation']} validation / {pieces['test']} test; "
            f"clips: {summary['train']['clips']} / {summary['validation']['clips']} / {summary['test']['clips']}")


__all__ = ["COLLECTIONS", "make_music_corpus", "candidate_pieces", "render_piece", "excerpts", "describe",
           "piece_id"]
