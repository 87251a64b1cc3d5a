"""`melnet-fast data speech DIR`: real English sentences read by espeak-ng in several voices, with their text.

The sentences come from the fortune cookie files of the Debian package `fortunes` (quotations, proverbs and
jokes: real English written by people), filtered to single sentences of a few seconds; espeak-ng (Debian) reads
each in one of VOICES (the speaker label), at a seeded rate and pitch around the voice's own. Held-out splits are
by sentence: no sentence is read in two splits.

Reproducible from the seed: it chooses the sentences, voices, rates and pitches; espeak-ng is deterministic.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np

from melnet_fast._optional import require
from melnet_fast.corpus_makers.common import (
    MissingTool,
    find_program,
    install_debian,
    prepare_out_dir,
    split_groups,
    summarise,
    tidy,
    write_flac,
    write_manifest,
    write_summary,
)

# speaker -> (espeak-ng voice, words per minute, pitch 0-99): accents and voice variants espeak-ng ships.
VOICES: Dict[str, Tuple[str, int, int]] = {
    "us-male": ("en-us+m3", 160, 40),
    "us-female": ("en-us+f2", 165, 60),
    "british-male": ("en-gb+m1", 155, 45),
    "scottish-female": ("en-gb-scotland+f3", 160, 55),
    "caribbean-male": ("en-029+m2", 150, 35),
    "rp-female": ("en-gb-x-rp+f4", 170, 65),
}
FORTUNES_DIR = Path("/usr/share/games/fortunes")
FORTUNES_PACKAGE = "fortunes"
FORTUNE_FILES = ("wisdom", "literature", "science", "education", "work", "love", "platitudes", "art", "songs-poems",
                 "food", "pets", "kids", "sports", "people", "miscellaneous")
_PLAIN = re.compile(r"^[A-Za-z0-9 ,.;:!?'\-]+$")
RATE_JITTER, PITCH_JITTER = 0.08, 6  # per clip, uniform in +-: the same voice does not read everything alike


def read_sentences(folder: Path = FORTUNES_DIR, files: Sequence[str] = FORTUNE_FILES, min_chars: int = 20,
                   max_chars: int = 100) -> List[str]:
    """Distinct sentences of the fortune files (entries separated by lines holding '%'), sorted: an entry's text
    without its attribution ("-- author" lines), whitespace joined, kept when it is min_chars to max_chars long,
    starts with a capital, ends with . ! or ?, holds at most two sentences, only letters, digits and plain
    punctuation, and no shouted word."""
    out = set()
    for name in files:
        path = Path(folder) / name
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        for entry in re.split(r"\n%\n", text):
            body = []
            for line in entry.strip().splitlines():
                if line.strip().startswith("--"):
                    break
                body.append(line.strip())
            s = re.sub(r"\s+", " ", " ".join(body)).strip()
            if (min_chars <= len(s) <= max_chars and _PLAIN.match(s) and s[0].isupper() and s[-1] in ".!?"
                    and sum(s.count(c) for c in ".!?") <= 2 and not re.search(r"[A-Z]{3,}", s)):
                out.add(s)
    return sorted(out)


def speak(espeak: str, voice: str, rate: int, pitch: int, text: str, out_path: Path) -> float:
    """espeak-ng reads `text` into a FLAC at out_path (silence at the ends cut, peak-normalised); returns seconds."""
    soundfile = require("soundfile", "writing the speech corpus")
    with tempfile.TemporaryDirectory() as tmp:
        wav = os.path.join(tmp, "clip.wav")
        subprocess.run([espeak, "-v", voice, "-s", str(rate), "-p", str(pitch), "-w", wav], input=text.encode(),
                       check=True, capture_output=True, timeout=120)
        waveform, sr = soundfile.read(wav, dtype="float32", always_2d=True)
    waveform = tidy(waveform, sr)
    if waveform.size == 0:
        return 0.0
    write_flac(out_path, waveform, sr)
    return waveform.size / sr


def plan_clips(sentences: Sequence[str], speakers: Sequence[str], n_sentences: int, voices_per_sentence: int,
               seed: int) -> List[Dict]:
    """The clips to make: n_sentences sentences drawn from `sentences`, each read by voices_per_sentence distinct
    speakers (balanced over the speakers), each at a seeded rate and pitch jitter. Rows with text, speaker,
    rate_scale, pitch_shift."""
    rng = np.random.default_rng(seed)
    chosen = [sentences[i] for i in sorted(rng.choice(len(sentences), min(n_sentences, len(sentences)),
                                                      replace=False))]
    k = min(voices_per_sentence, len(speakers))
    cycle = list(rng.permutation(len(speakers)))
    clips, turn = [], 0
    for text in chosen:
        picked: List[int] = []
        while len(picked) < k:
            s = cycle[turn % len(cycle)]
            turn += 1
            if s not in picked:
                picked.append(s)
        for s in picked:
            clips.append({"text": text, "speaker": speakers[s],
                          "rate_scale": float(1 + rng.uniform(-RATE_JITTER, RATE_JITTER)),
                          "pitch_shift": int(rng.integers(-PITCH_JITTER, PITCH_JITTER + 1))})
    return clips


def make_speech_corpus(out_dir, *, n_sentences: int = 600, speakers: Sequence[str] = tuple(VOICES),
                       voices_per_sentence: int = 1, seed: int = 0, held_out: float = 0.1, min_chars: int = 20,
                       max_chars: int = 100, jobs: int | None = None, install: bool = False, overwrite: bool = False,
                       log: Callable[[str], None] = print) -> Dict:
    """Write the speech corpus to out_dir (audio/SPEAKER/NNNN.flac, manifest.csv with path, speaker, text, split;
    corpus.json) and return the summary. MissingTool when espeak-ng or the fortunes files are missing."""
    unknown = [s for s in speakers if s not in VOICES]
    if unknown or not speakers:
        raise ValueError(f"speakers must be a non-empty subset of {list(VOICES)}, got {list(speakers)}")
    if not isinstance(n_sentences, int) or n_sentences < 1:
        raise ValueError(f"n_sentences must be an int >= 1, got {n_sentences!r}")
    espeak = find_program("espeak-ng", "espeak-ng", install)
    if not any((FORTUNES_DIR / f).is_file() for f in FORTUNE_FILES) and install:
        install_debian([FORTUNES_PACKAGE])
    sentences = read_sentences(FORTUNES_DIR, FORTUNE_FILES, min_chars, max_chars)
    if not sentences:
        raise MissingTool(f"no English sentences found in {FORTUNES_DIR}: install the Debian package "
                          f"{FORTUNES_PACKAGE} (apt-get install {FORTUNES_PACKAGE}), or pass --install")
    out = prepare_out_dir(out_dir, overwrite)
    clips = plan_clips(sentences, list(speakers), n_sentences, voices_per_sentence, seed)
    for k, clip in enumerate(clips):
        clip["path"] = f"audio/{clip['speaker']}/{k:05d}.flac"

    def one(clip):
        voice, rate, pitch = VOICES[clip["speaker"]]
        return speak(espeak, voice, round(rate * clip["rate_scale"]), min(99, max(0, pitch + clip["pitch_shift"])),
                     clip["text"], out / clip["path"])

    with ThreadPoolExecutor(jobs or os.cpu_count() or 1) as pool:  # espeak-ng runs in its own processes
        seconds = list(pool.map(one, clips))
    kept = []
    for clip, s in zip(clips, seconds):
        if s > 0:
            kept.append({**clip, "seconds": s})
    log(f"  {len(kept)} clips read by {len(set(c['speaker'] for c in kept))} voices")
    split = split_groups([c["text"] for c in kept], [None] * len(kept), seed, held_out)
    rows = [{"path": c["path"], "speaker": c["speaker"], "text": c["text"], "split": split[c["text"]],
             "seconds": round(c["seconds"], 3)} for c in kept]
    write_manifest(out, rows, extra_columns=("seconds",))
    version = subprocess.run([espeak, "--version"], capture_output=True, text=True).stdout.strip()
    summary = {
        "kind": "speech", "seed": seed, "held_out": held_out, "voices_per_sentence": voices_per_sentence,
        "sentences": {s: len({r["text"] for r in rows if r["split"] == s}) for s in ("train", "validation", "test")},
        "voices": {s: dict(zip(("espeak_voice", "words_per_minute", "pitch"), VOICES[s])) for s in speakers},
        "text_source": f"Debian package {FORTUNES_PACKAGE}: {FORTUNES_DIR}/{{{','.join(FORTUNE_FILES)}}}",
        "tools": {"espeak-ng": version},
        **summarise(rows, "speaker", lambda r: r["seconds"]),
    }
    write_summary(out, summary)
    return summary


def describe(summary: Dict) -> str:
    a, n = summary["all"], summary["sentences"]
    return (f"{a['clips']} clips, {a['minutes']:.1f} min, {len(a['labels'])} speakers ({', '.join(a['labels'])}); "
            f"sentences: {n['train']} train / {n['validation']} validation / {n['test']} test")


__all__ = ["VOICES", "make_speech_corpus", "read_sentences", "plan_clips", "speak", "describe"]
