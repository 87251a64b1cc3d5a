"""Synthetic text-speech pairs made directly as spectrograms: a check that a text model can learn an alignment
at all, in seconds to minutes on a CPU (no audio, no download).

Each symbol of a small alphabet sounds as its own steady spectrum (two formant-like bumps at channels that
differ per letter) for a random 2-4 frames, a space is a short silence, and the clip ends in silence: reading
the text left to right, one letter after another, is the only way to predict the frames well.
"""

from __future__ import annotations

from typing import List, Tuple

import numpy as np
import torch

ALPHABET = "abcdefgh"
SILENCE, LOUD, NOISE = -1.5, 1.5, 0.1  # normalised log-mel levels of silence, a formant peak, and the noise


def letter_spectrum(letter: str, n_mels: int, alphabet: str = ALPHABET) -> np.ndarray:
    """The steady spectrum [n_mels] of one letter: bumps at two channels that depend on the letter."""
    k = alphabet.index(letter)
    channels = np.arange(n_mels)
    first = (0.1 + 0.5 * k / max(1, len(alphabet) - 1)) * n_mels
    second = first + (0.25 + 0.15 * (k % 3)) * n_mels
    bumps = sum(np.exp(-0.5 * ((channels - c) / (n_mels / 24 + 0.5)) ** 2) for c in (first, second))
    return SILENCE + (LOUD - SILENCE) * np.minimum(bumps, 1.0)


def synthetic_text_speech(n_clips: int, frames: int, n_mels: int, seed: int = 0, alphabet: str = ALPHABET,
                          fill: Tuple[float, float] = (0.55, 0.85)
                          ) -> Tuple[torch.Tensor, List[str], torch.Tensor]:
    """(spectrograms [n_clips, frames, n_mels] float32, texts, positions LongTensor [n_clips, frames]): random
    words of `alphabet` letters spoken letter by letter (2-4 frames each, a 1-2 frame pause between words) over a
    share `fill` of the clip, then silence. positions[n, i] is the index in texts[n] of the symbol sounding at
    frame i (the space during a pause, 0 before the first letter, len(texts[n]) after the last: the true
    alignment). Deterministic in `seed`."""
    rng = np.random.default_rng(seed)
    spectra = {ch: letter_spectrum(ch, n_mels, alphabet) for ch in alphabet}
    specs = np.full((n_clips, frames, n_mels), SILENCE, dtype=np.float32)
    positions = np.zeros((n_clips, frames), dtype=np.int64)
    texts = []
    for n in range(n_clips):
        budget = int(rng.uniform(*fill) * frames)
        t, words = 1, []
        while True:
            word = "".join(rng.choice(list(alphabet), size=int(rng.integers(1, 5))))
            durations = rng.integers(2, 5, size=len(word))
            if words and t + durations.sum() > budget:
                break
            start = sum(len(w) + 1 for w in words)  # index of the word's first letter in the text
            for k, (ch, d) in enumerate(zip(word, durations)):
                specs[n, t:t + d] = spectra[ch]
                positions[n, t:t + d] = start + k
                t += int(d)
            words.append(word)
            pause = int(rng.integers(1, 3))
            positions[n, t:t + pause] = start + len(word)  # the space after the word
            t += pause
        texts.append(" ".join(words))
        positions[n, t - pause:] = len(texts[-1])  # after the last word: end of text
    specs += rng.normal(0, NOISE, size=specs.shape).astype(np.float32)
    return torch.from_numpy(specs), texts, torch.from_numpy(positions)
