"""Synthetic music: the embedded default dataset (no download), deterministic from a seed.

Each clip is a few bars in one of four genres that differ in scale, tempo, timbre, rhythm and drums:

  classical  major scale, 72-100 BPM, piano-like (harmonics 1/k^1.3, upper ones dying faster), broken chords
  electronic natural minor, 120-132 BPM, sawtooth (1/k), off-beat chord stabs, four-on-the-floor drums
  lofi       dorian, 70-88 BPM, soft electric piano (1/k^2.5), held seventh chords, swung kit, vinyl hiss
  chiptune   major pentatonic, 140-160 BPM, square waves (odd harmonics), 16th-note arpeggios, noise hats

The structure is there to be learnt: every note is a clear harmonic stack with an ADSR envelope, a four-chord
progression repeats, the one-bar melody motif and the drum pattern repeat (with a few mutations per bar),
and key, tempo, motif and mix vary from clip to clip. Every clip has a faint noise floor (about -60 dBFS).
"""

from __future__ import annotations

import dataclasses
from typing import Tuple

import numpy as np

GENRES = ("classical", "electronic", "lofi", "chiptune")
SYNTH_VERSION = 1  # bump when a seed's clip changes (caches of synthetic spectrograms key on it)
STEPS_PER_BAR = 16  # sixteenth notes in 4/4
MIN_SAMPLE_RATE = 8000  # the highest melody notes (about 2.5 kHz) must stay below 0.45 x the sample rate


@dataclasses.dataclass(frozen=True)
class _Genre:
    scale: Tuple[int, ...]  # semitones above the tonic
    tempo: Tuple[float, float]  # BPM range
    rolloff: float  # harmonic k has amplitude k^-rolloff
    odd_only: bool  # square-like timbre
    n_harmonics: int
    adsr: Tuple[float, float, float, float]  # attack s, decay s, sustain level, release s
    bright_decay: float  # extra decay of upper harmonics per second (piano-like), 0 = none
    chord_size: int  # 3 = triads, 4 = sevenths
    chord_steps: Tuple[int, ...]  # steps of the bar where the chord (or its arpeggio) sounds
    arpeggio: bool  # chord notes one after another instead of together
    melody_density: float  # chance that a step starts a melody note
    kick: Tuple[int, ...] = ()
    snare: Tuple[int, ...] = ()
    hat: Tuple[int, ...] = ()
    swing: float = 0.0  # delay of odd eighth-note steps, as a fraction of a step
    hiss: float = 0.0


_GENRES = {
    "classical": _Genre((0, 2, 4, 5, 7, 9, 11), (72, 100), 1.3, False, 14, (0.005, 0.4, 0.3, 0.3), 1.5, 3,
                        (0, 2, 4, 6, 8, 10, 12, 14), True, 0.3),
    "electronic": _Genre((0, 2, 3, 5, 7, 8, 10), (120, 132), 1.0, False, 16, (0.01, 0.15, 0.6, 0.08), 0.0, 3,
                         (2, 6, 10, 14), False, 0.35, kick=(0, 4, 8, 12), snare=(4, 12),
                         hat=(2, 6, 10, 14)),
    "lofi": _Genre((0, 2, 3, 5, 7, 9, 10), (70, 88), 2.5, False, 8, (0.02, 0.6, 0.5, 0.4), 0.5, 4, (0,), False,
                   0.2, kick=(0, 7, 10), snare=(4, 12), hat=(0, 2, 4, 6, 8, 10, 12, 14), swing=0.33,
                   hiss=0.01),
    "chiptune": _Genre((0, 2, 4, 7, 9), (140, 160), 1.0, True, 15, (0.002, 0.05, 0.7, 0.03), 0.0, 3,
                       tuple(range(16)), True, 0.45, hat=(0, 2, 4, 6, 8, 10, 12, 14)),
}
_PROGRESSIONS = ((0, 4, 5, 3), (0, 5, 3, 4), (0, 3, 4, 0), (5, 3, 0, 4), (0, 2, 5, 4))


def _midi_hz(note: float) -> float:
    return 440.0 * 2.0 ** ((note - 69) / 12)


def _pitch(scale, tonic: int, degree: int) -> int:
    """MIDI note of scale degree `degree` (any integer; wraps into octaves)."""
    octave, step = divmod(degree, len(scale))
    return tonic + 12 * octave + scale[step]


def _tone(g: _Genre, hz: float, seconds: float, velocity: float, sr: int, rng) -> np.ndarray:
    """One note: harmonic stack under an ADSR envelope, `seconds` held plus the release tail."""
    attack, decay, sustain, release = g.adsr
    n = int((seconds + release) * sr)
    t = np.arange(n) / sr
    k = np.arange(1, 2 * g.n_harmonics + 1, 2 if g.odd_only else 1)[: g.n_harmonics]
    k = k[k * hz < 0.45 * sr]  # no partial above ~Nyquist: no aliasing
    amp = k.astype(np.float64) ** -g.rolloff
    phase = rng.uniform(0, 2 * np.pi, size=len(k))
    partials = amp[:, None] * np.sin(2 * np.pi * hz * k[:, None] * t + phase[:, None])
    if g.bright_decay:
        partials *= np.exp(-g.bright_decay * (k[:, None] - 1) ** 0.5 * t)
    held = np.where(t < attack, t / attack, sustain + (1 - sustain) * np.exp(-(t - attack) / decay))
    level_at_off = held[min(int(seconds * sr), n - 1)]
    envelope = np.where(t < seconds, held, level_at_off * np.exp(-(t - seconds) / (release / 5)))
    return (velocity * envelope / amp.sum()) * partials.sum(axis=0)


def _drum(kind: str, sr: int, rng) -> np.ndarray:
    if kind == "kick":  # falling sine 120 -> 45 Hz
        t = np.arange(int(0.3 * sr)) / sr
        hz = 45 + 75 * np.exp(-t / 0.04)
        return 0.9 * np.sin(2 * np.pi * np.cumsum(hz) / sr) * np.exp(-t / 0.12)
    if kind == "snare":  # noise plus a 190 Hz body
        t = np.arange(int(0.2 * sr)) / sr
        return (0.4 * rng.standard_normal(len(t)) + 0.3 * np.sin(2 * np.pi * 190 * t)) * np.exp(-t / 0.05)
    t = np.arange(int(0.05 * sr)) / sr  # hat: differenced noise is bright
    return 0.25 * np.diff(rng.standard_normal(len(t) + 1)) * np.exp(-t / 0.012)


def _add(out: np.ndarray, x: np.ndarray, start: int) -> None:
    if start < len(out):
        m = min(len(x), len(out) - start)
        out[start:start + m] += x[:m]


def synth_clip(seed, sample_rate: int = 22050, duration: float = 4.0,
               genre: str | int | None = None) -> Tuple[np.ndarray, int]:
    """A synthetic music clip -> (waveform float32 [round(duration * sample_rate)], genre id in GENRES).

    Deterministic in (seed, sample_rate, duration, genre); `seed` is anything np.random.default_rng takes.
    genre: a name or index of GENRES, or None to draw it from the seed. Peak level about 0.4-0.9.
    """
    if sample_rate < MIN_SAMPLE_RATE:
        raise ValueError(f"synthetic music needs sample_rate >= {MIN_SAMPLE_RATE} Hz (its melodies reach about "
                         f"2.5 kHz), got {sample_rate}")
    rng = np.random.default_rng(seed)
    gid = int(rng.integers(len(GENRES))) if genre is None else (
        int(genre) if isinstance(genre, (int, np.integer)) else GENRES.index(genre))
    g = _GENRES[GENRES[gid]]
    sr, n = int(sample_rate), int(round(duration * sample_rate))
    out = np.zeros(n)
    step = 60.0 / rng.uniform(*g.tempo) / 4
    tonic = int(rng.integers(55, 67))  # G3 .. F#4
    progression = _PROGRESSIONS[rng.integers(len(_PROGRESSIONS))]
    # One bar of melody: onsets on the 16-step grid (always one on the downbeat) and degrees above the chord.
    onsets = [s for s in range(STEPS_PER_BAR) if s == 0 or rng.random() < g.melody_density]
    motif = {s: int(rng.integers(-2, 8)) for s in onsets}
    drum_hits = {kind: [_drum(kind, sr, rng) for _ in range(2)] for kind in ("kick", "snare", "hat")}

    def at(bar: int, s: int) -> int:
        swing = g.swing * step if s % 2 else 0.0
        return int(((bar * STEPS_PER_BAR + s) * step + swing) * sr)

    for bar in range(int(np.ceil(duration / (step * STEPS_PER_BAR)))):
        root = progression[bar % len(progression)]
        chord = [_pitch(g.scale, tonic - 12, root + 2 * i) for i in range(g.chord_size)]
        _add(out, _tone(g, _midi_hz(chord[0] - 12), 8 * step, 0.5, sr, rng), at(bar, 0))  # bass
        _add(out, _tone(g, _midi_hz(chord[0] - 12), 6 * step, 0.4, sr, rng), at(bar, 8))
        for i, s in enumerate(g.chord_steps):
            notes = [chord[i % len(chord)]] if g.arpeggio else chord
            length = (STEPS_PER_BAR - s) * step if len(g.chord_steps) == 1 else 2 * step
            for note in notes:
                _add(out, _tone(g, _midi_hz(note), length, 0.25, sr, rng), at(bar, s))
        for j, s in enumerate(onsets):
            degree = motif[s] + (int(rng.integers(-1, 2)) if rng.random() < 0.2 else 0)  # mutations
            length = ((onsets + [STEPS_PER_BAR])[j + 1] - s) * step
            _add(out, _tone(g, _midi_hz(_pitch(g.scale, tonic, root + degree)), length, 0.45, sr, rng),
                 at(bar, s))
        for kind in ("kick", "snare", "hat"):
            for s in getattr(g, kind):
                _add(out, drum_hits[kind][int(rng.integers(2))] * rng.uniform(0.8, 1.0), at(bar, s))
    out *= rng.uniform(0.4, 0.9) / max(np.abs(out).max(), 1e-9)
    # A -60 dBFS noise floor, as in any recording: without it a third of the mel bins would sit exactly at the
    # log floor, a point mass a Gaussian mixture can collapse onto.
    out += (1e-3 * rng.uniform(0.5, 2.0) + g.hiss) * rng.standard_normal(n)
    return out.astype(np.float32), gid


__all__ = ["GENRES", "MIN_SAMPLE_RATE", "STEPS_PER_BAR", "SYNTH_VERSION", "synth_clip"]
