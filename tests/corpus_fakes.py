"""Stand-ins for the external tools of the corpus makers (music21, FluidSynth), so that the writers, splits and
manifests run in every CI job on generated audio."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from melnet_fast.corpus_makers import common, music

# label -> lengths in seconds of its pieces (the fake corpus of every collection has these)
PIECE_SECONDS = {"bach": [9.0, 7.5, 13.0], "folk": [6.2, 4.0, 10.0, 12.5]}


def fake_tone(seconds: float, sr: int, seed: int) -> np.ndarray:
    """A harmonic tone with a little noise, standing in for a rendered piece or a spoken sentence."""
    t = np.arange(int(seconds * sr)) / sr
    f0 = 110.0 * (1 + seed % 7)
    w = sum(0.2 / k * np.sin(2 * np.pi * k * f0 * t) for k in range(1, 4))
    return (w + 0.01 * np.random.default_rng(seed).standard_normal(t.size)).astype(np.float32)


def patch_music_tools(monkeypatch) -> None:
    """music21's corpus and FluidSynth replaced by fake pieces of PIECE_SECONDS (the writer, splits and manifest
    stay the real ones); run make_music_corpus with labels among PIECE_SECONDS and jobs=1."""

    def candidates(label, seed):
        return [f"/corpus/{label}/piece{k}.xml" for k in range(len(PIECE_SECONDS[label]))]

    def render(source, program, out_path, max_seconds, sample_rate, soundfont, fluidsynth):
        label, k = source.split("/")[2], int(source[-5])
        seconds = min(PIECE_SECONDS[label][k], max_seconds)
        w = fake_tone(seconds, sample_rate, k + 10 * program)
        common.write_flac(Path(out_path), common.tidy(w, sample_rate), sample_rate)
        return seconds

    monkeypatch.setattr(music, "candidate_pieces", candidates)
    monkeypatch.setattr(music, "render_piece", render)
    monkeypatch.setattr(music, "find_program", lambda *a, **k: "fluidsynth")
    monkeypatch.setattr(music, "find_file", lambda *a, **k: "gm.sf2")
    monkeypatch.setattr(music, "_music21", lambda: type("m21", (), {"__version__": "test"}))
    monkeypatch.setattr(music.subprocess, "run", lambda *a, **k: type("done", (), {"stdout": "FluidSynth test"}))
