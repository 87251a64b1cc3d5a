"""The normalised log-mel scale every spectrogram of the package lives on, and the range a sample keeps.

x = (log(max(mel, LOG_FLOOR)) - NORM_MEAN) / NORM_STD, with mel the power of a mel bin, 0 dB = a full-scale sine
(melnet_fast.audio computes it and explains the calibration). Constants only, at the bottom of the package, so
that the front end (audio, plots, CLI) and the sampler (ops, model) read the same numbers.
"""

from __future__ import annotations

import math

LOG_FLOOR = 1e-8  # -80 dB: quieter mel bins are clamped to it
NORM_MEAN = -12.0
NORM_STD = 3.5


def normalised_db(db: float) -> float:
    """The normalised log-mel value of a mel power `db` decibels over a full-scale sine."""
    return (db * math.log(10.0) / 10.0 - NORM_MEAN) / NORM_STD


FLOOR = normalised_db(-80.0)  # -1.834: the lowest value of any spectrogram (quieter bins sit here)
ZERO_DB = normalised_db(0.0)  # +3.429: a full-scale sine
# +30 dB over a full-scale sine: no waveform in [-1, 1] comes near it (full-scale square waves reach about +3.4 dB
# in a mel bin), so a drawn value there is a runaway, not sound.
CEILING = normalised_db(30.0)  # +5.402
# What the samplers keep: a drawn value below FLOOR is set to FLOOR (the data's own rule for quiet bins), one
# above CEILING (or NaN) to CEILING. Every spectrogram of the package lies in it.
SAMPLE_RANGE = (FLOOR, CEILING)

__all__ = ["LOG_FLOOR", "NORM_MEAN", "NORM_STD", "normalised_db", "FLOOR", "ZERO_DB", "CEILING", "SAMPLE_RANGE"]
