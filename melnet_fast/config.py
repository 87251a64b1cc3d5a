"""MelNetConfig: every hyperparameter of a MelNet model and of its audio front end, with the paper's presets.

`python scripts/parameter_counts.py` prints the parameter count of every preset, tier by tier.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Dict, List, Tuple

from melnet_fast.multiscale import split_counts
from melnet_fast.text.symbols import CHARACTERS, FRONT_ENDS, RESERVED

# Appendix A, Table 2 of the paper (all hidden 512, K = 10, STFT window = 6 x hop), and two CPU-sized models.
_PRESETS: Dict[str, Dict[str, Any]] = {
    "blizzard": dict(n_tiers=6, n_mels=256, hidden_size=512, layers=(12, 5, 4, 3, 2, 2), n_mixtures=10,
                     sample_rate=22050, hop_length=256, max_seconds=10.0, batch_size=32),
    "maestro": dict(n_tiers=4, n_mels=256, hidden_size=512, layers=(16, 6, 5, 4), n_mixtures=10,
                    sample_rate=22050, hop_length=256, max_seconds=6.0, batch_size=16),
    "voxceleb2": dict(n_tiers=5, n_mels=180, hidden_size=512, layers=(16, 6, 5, 4, 3), n_mixtures=10,
                      sample_rate=16000, hop_length=180, max_seconds=6.0, batch_size=128),
    "tiny": dict(n_tiers=3, n_mels=16, hidden_size=4, layers=(2, 1, 1), n_mixtures=3, feature_layers=1,
                 sample_rate=8000, hop_length=128, max_seconds=2.0, batch_size=4),
    "small": dict(n_tiers=3, n_mels=32, hidden_size=64, layers=(4, 2, 2), n_mixtures=5, feature_layers=2,
                  sample_rate=16000, hop_length=160, max_seconds=4.0, batch_size=8),
}
# Text-to-speech (centralized stack + attention over characters in the initial tier). The published paper's
# TTS hyperparameters are not all known: tts_blizzard is the Blizzard preset above with the text path added
# (attention_mixtures=10 as the GMM head; attention at the middle layer of the initial tier). tts_small learns its
# alignment with the guided-attention loss (weight 1, decaying over 1,500 steps; README, "Learning the alignment").
_TEXT = dict(centralized_stack=True, text_symbols=CHARACTERS)
_PRESETS.update({
    "tts_tiny": dict(_TEXT, n_tiers=3, n_mels=16, hidden_size=8, layers=(2, 1, 1), n_mixtures=3, feature_layers=1,
                     attention_mixtures=2, sample_rate=8000, hop_length=128, max_seconds=2.0, batch_size=4),
    "tts_small": dict(_TEXT, n_tiers=3, n_mels=32, hidden_size=48, layers=(4, 2, 2), n_mixtures=5,
                      feature_layers=1, attention_mixtures=5, sample_rate=16000, hop_length=200, max_seconds=4.0,
                      batch_size=8, learning_rate=1e-3, guided_attention=1.0, guided_attention_steps=1500),
    "tts_blizzard": dict(_PRESETS["blizzard"], **_TEXT, attention_mixtures=10),
})
PRESETS = tuple(_PRESETS)


def _lstm_params(R: int, d_in: int, D: int) -> int:
    """Parameters of a SweepLSTM: w_ih, w_hh, bias, h0, c0 for R directions."""
    return R * (4 * D * d_in + 4 * D * D + 4 * D + 2 * D)


def _linear_params(d_in: int, d_out: int, bias: bool = True) -> int:
    return d_in * d_out + (d_out if bias else 0)


@dataclasses.dataclass(frozen=True)
class MelNetConfig:
    """Hyperparameters of a MelNet model (all tiers) and of the spectrograms it models.

    Model: n_tiers G; n_mels F (mel channels = frequency size of the full spectrogram); hidden_size D (every
    hidden size: LSTM states, residual stream); layers[g-1] = L of tier g (tier 1 = initial tier); n_mixtures K;
    feature_layers: depth of each upsampling tier's feature-extraction network (not given in the paper);
    n_speakers (0 = unconditional on speaker) with speaker_dim the size of the learned speaker embedding;
    cond_dim (0 = none): size of general conditioning features given at full resolution [B, T, F, cond_dim].
    Text (initial tier only): centralized_stack adds the published version's stack over whole frames;
    text_symbols (empty = no text) is the vocabulary, one symbol per character of the string (ids 0 and 1 are
    padding and end-of-text); text_frontend "characters" or "phonemes" (espeak-ng), text_language for phonemes;
    text_max_length the most symbols of one text (end-of-text included); attention_mixtures K' of the attention
    window; attention_layer a in [0, layers[0]): the attention reads the centralized stack's h^c[a] and adds its
    context there (None = layers[0] // 2).
    Learning the alignment (text models; see the README's text-to-speech section): attention_initial_step, the
    mean step of the attention positions at initialisation in symbols per initial-tier frame (None = measured on
    the training data when a run starts: its symbols / frames; 0.5 for a model built outside the trainer);
    attention_initial_width, the windows' initial width in symbols; text_input_dropout, dropout on the previous
    frame where the initial tier reads it (the centralized and time-delayed stacks' inputs, training only, as
    Tacotron's prenet dropout), so the next frame cannot be guessed from the last one alone and the text is
    needed; guided_attention, the initial weight of the guided-attention loss (Tachibana et al. 2017: the
    attention's mass away from the diagonal, 0 = off), which decays linearly to zero over guided_attention_steps
    training steps, guided_attention_sigma the width g of its diagonal band (fraction of the text / clip).
    Audio: sample_rate, hop_length, n_fft (default 6 x hop as in the paper), win_length (default n_fft),
    f_min, f_max (None = sample_rate / 2), max_seconds of one example. Training: batch_size, learning_rate and
    momentum (RMSProp, Appendix A).
    Invalid values raise ValueError naming the field.
    """

    n_tiers: int
    n_mels: int
    hidden_size: int
    layers: Tuple[int, ...]
    n_mixtures: int = 10
    feature_layers: int = 2
    n_speakers: int = 0
    speaker_dim: int = 32
    cond_dim: int = 0
    centralized_stack: bool = False
    text_symbols: str = ""
    text_frontend: str = "characters"
    text_language: str = "en-us"
    text_max_length: int = 512
    attention_mixtures: int = 10
    attention_layer: int | None = None
    attention_initial_step: float | None = None
    attention_initial_width: float = 1.0
    text_input_dropout: float = 0.0
    guided_attention: float = 0.0
    guided_attention_sigma: float = 0.2
    guided_attention_steps: int = 2000
    sample_rate: int = 22050
    hop_length: int = 256
    n_fft: int | None = None
    win_length: int | None = None
    f_min: float = 0.0
    f_max: float | None = None
    max_seconds: float = 10.0
    batch_size: int = 32
    learning_rate: float = 1e-4
    momentum: float = 0.9

    def __post_init__(self):
        if isinstance(self.layers, (list, tuple)):
            object.__setattr__(self, "layers", tuple(self.layers))
        if self.n_fft is None and _is_int(self.hop_length):
            object.__setattr__(self, "n_fft", 6 * self.hop_length)
        if self.win_length is None:
            object.__setattr__(self, "win_length", self.n_fft)
        self._validate()

    # ------------------------------------------------------------------ validation
    def _validate(self) -> None:
        _positive_int("n_tiers", self.n_tiers)
        _positive_int("n_mels", self.n_mels)
        _positive_int("hidden_size", self.hidden_size)
        if not isinstance(self.layers, tuple) or len(self.layers) != self.n_tiers:
            raise ValueError(f"layers must hold one layer count per tier (n_tiers={self.n_tiers} values, the "
                             f"initial tier first), got {self.layers!r}")
        for g, L in enumerate(self.layers, start=1):
            _positive_int(f"layers[{g - 1}] (tier {g})", L)
        _positive_int("n_mixtures", self.n_mixtures)
        _positive_int("feature_layers", self.feature_layers)
        _int_at_least("n_speakers", self.n_speakers, 0)
        if self.n_speakers > 0:
            _positive_int("speaker_dim", self.speaker_dim)
        else:
            _int_at_least("speaker_dim", self.speaker_dim, 0)
        _int_at_least("cond_dim", self.cond_dim, 0)
        self._validate_text()
        _, freq_splits = split_counts(self.n_tiers)
        if self.n_mels % (2 ** freq_splits):
            raise ValueError(f"n_mels={self.n_mels} must be divisible by {2 ** freq_splits}: n_tiers="
                             f"{self.n_tiers} splits the frequency axis in two {freq_splits} times")
        _positive_int("sample_rate", self.sample_rate)
        _positive_int("hop_length", self.hop_length)
        _positive_int("n_fft", self.n_fft)
        _positive_int("win_length", self.win_length)
        if self.win_length > self.n_fft:
            raise ValueError(f"win_length={self.win_length} must be <= n_fft={self.n_fft}")
        _finite_number("f_min", self.f_min)
        if self.f_min < 0:
            raise ValueError(f"f_min must be >= 0 Hz, got {self.f_min}")
        nyquist = self.sample_rate / 2
        if self.f_max is not None:
            _finite_number("f_max", self.f_max)
            if not self.f_min < self.f_max <= nyquist:
                raise ValueError(f"f_max must lie in (f_min={self.f_min}, sample_rate / 2={nyquist}] Hz, "
                                 f"got {self.f_max}")
        elif self.f_min >= nyquist:
            raise ValueError(f"f_min={self.f_min} must be below sample_rate / 2={nyquist} Hz")
        _finite_number("max_seconds", self.max_seconds)
        if self.max_seconds <= 0:
            raise ValueError(f"max_seconds must be > 0, got {self.max_seconds}")
        _positive_int("batch_size", self.batch_size)
        for name in ("learning_rate", "momentum"):
            _finite_number(name, getattr(self, name))
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must lie in [0, 1), got {self.momentum}")

    def _validate_text(self) -> None:
        if not isinstance(self.centralized_stack, bool):
            raise ValueError(f"centralized_stack must be a bool, got {self.centralized_stack!r}")
        if not isinstance(self.text_symbols, str):
            raise ValueError(f"text_symbols must be a string of symbols (one per character), got "
                             f"{type(self.text_symbols).__name__}")
        repeated = sorted({ch for ch in self.text_symbols if self.text_symbols.count(ch) > 1})
        if repeated:
            raise ValueError(f"text_symbols must not repeat a symbol, got {repeated} more than once")
        if self.text_symbols and not self.centralized_stack:
            raise ValueError("text conditioning (text_symbols) needs centralized_stack=True: the attention runs "
                             "from the centralized stack")
        if self.text_frontend not in FRONT_ENDS:
            raise ValueError(f"text_frontend must be one of {FRONT_ENDS}, got {self.text_frontend!r}")
        if not isinstance(self.text_language, str) or not self.text_language:
            raise ValueError(f"text_language must be a non-empty string (an espeak-ng language), got "
                             f"{self.text_language!r}")
        _int_at_least("text_max_length", self.text_max_length, 2)
        _positive_int("attention_mixtures", self.attention_mixtures)
        if self.attention_layer is not None and (not _is_int(self.attention_layer)
                                                 or not 0 <= self.attention_layer < self.layers[0]):
            raise ValueError(f"attention_layer must be None or an int in [0, layers[0]={self.layers[0]}), got "
                             f"{self.attention_layer!r}")
        if self.attention_initial_step is not None:
            _positive_number("attention_initial_step", self.attention_initial_step)
        _positive_number("attention_initial_width", self.attention_initial_width)
        _finite_number("text_input_dropout", self.text_input_dropout)
        if not 0 <= self.text_input_dropout < 1:
            raise ValueError(f"text_input_dropout must lie in [0, 1), got {self.text_input_dropout}")
        _finite_number("guided_attention", self.guided_attention)
        if self.guided_attention < 0:
            raise ValueError(f"guided_attention must be >= 0 (0 = off), got {self.guided_attention}")
        _positive_number("guided_attention_sigma", self.guided_attention_sigma)
        _positive_int("guided_attention_steps", self.guided_attention_steps)

    # ------------------------------------------------------------------ derived sizes
    @property
    def has_text(self) -> bool:
        """Whether the initial tier is conditioned on text."""
        return bool(self.text_symbols)

    @property
    def attention_at(self) -> int:
        """The centralized-stack level h^c[a] that the attention reads and adds its context to."""
        return self.layers[0] // 2 if self.attention_layer is None else self.attention_layer

    @property
    def n_text_symbols(self) -> int:
        """Rows of the text embedding: the vocabulary plus the padding and end-of-text ids (0 if no text)."""
        return RESERVED + len(self.text_symbols) if self.text_symbols else 0

    @property
    def time_factor(self) -> int:
        """T of every full-resolution spectrogram must be a multiple of this (2 ** splits along time)."""
        return 2 ** split_counts(self.n_tiers)[0]

    @property
    def freq_factor(self) -> int:
        """2 ** splits along frequency (n_mels is a multiple of it)."""
        return 2 ** split_counts(self.n_tiers)[1]

    @property
    def max_frames(self) -> int:
        """Frames of a max_seconds example, rounded down to a multiple of time_factor."""
        frames = int(self.max_seconds * self.sample_rate) // self.hop_length
        return frames - frames % self.time_factor

    def conditioning_dim(self, tier: int) -> int:
        """Dz of tier `tier` (1-based): feature-extraction output (tiers > 1) + speaker embedding + features."""
        self._check_tier(tier)
        return ((self.hidden_size if tier > 1 else 0) + (self.speaker_dim if self.n_speakers > 0 else 0)
                + self.cond_dim)

    def parameter_counts(self) -> List[int]:
        """Parameters of each tier (tier 1 first), counted arithmetically: no model is built."""
        D, K = self.hidden_size, self.n_mixtures
        counts = []
        for g, L in enumerate(self.layers, start=1):
            dz = self.conditioning_dim(g)
            n = 2 * _linear_params(1, D) + (2 * _linear_params(dz, D, bias=False) if dz else 0)
            n += L * (_lstm_params(3, D, D) + _linear_params(3 * D, D) + _lstm_params(1, D, D)
                      + _linear_params(D, D))
            n += _linear_params(D, 3 * K)
            if g == 1 and self.centralized_stack:
                n += _linear_params(self.n_mels // self.freq_factor, D) + L * (_lstm_params(1, D, D)
                                                                               + _linear_params(D, D))
            if g == 1 and self.has_text:
                Ka = self.attention_mixtures
                n += self.n_text_symbols * D + _lstm_params(2, D, D) + _linear_params(2 * D, D)  # encoder
                n += 4 * D * 2 * D + 4 * D * D + 4 * D + 2 * D + _linear_params(D, 3 * Ka) + _linear_params(D, D)
            if g > 1:
                n += _linear_params(1, D) + self.feature_layers * (_lstm_params(4, D, D) + _linear_params(4 * D, D))
            n += self.n_speakers * self.speaker_dim
            counts.append(n)
        return counts

    def _check_tier(self, tier: int) -> None:
        if not _is_int(tier) or not 1 <= tier <= self.n_tiers:
            raise ValueError(f"tier must be an int in 1..{self.n_tiers}, got {tier!r}")

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        d["layers"] = list(self.layers)
        return d

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> MelNetConfig:
        return config_from_dict(cls, d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> MelNetConfig:
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"MelNetConfig JSON does not parse: {e}") from None
        return cls.from_dict(d)

    @classmethod
    def preset(cls, name: str, **overrides) -> MelNetConfig:
        """A named configuration: "blizzard", "maestro", "voxceleb2" (paper, Table 2), "tiny", "small" (CPU);
        text-to-speech: "tts_tiny", "tts_small" (CPU), "tts_blizzard" (Blizzard with the text path)."""
        if name not in _PRESETS:
            raise ValueError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}")
        return cls(**{**_PRESETS[name], **overrides})

    def replace(self, **changes) -> MelNetConfig:
        return dataclasses.replace(self, **changes)


def config_from_dict(cls, d: Dict[str, Any]):
    """cls(**d) for a config dataclass `cls`; ValueError naming unknown fields (and the valid ones)."""
    if not isinstance(d, dict):
        raise ValueError(f"a {cls.__name__} dict must be a dict, got {type(d).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s) {unknown}; valid fields: {sorted(names)}")
    return cls(**d)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _int_at_least(name: str, v, low: int) -> None:
    if not _is_int(v) or v < low:
        raise ValueError(f"{name} must be an int >= {low}, got {v!r}")


def _positive_int(name: str, v) -> None:
    _int_at_least(name, v, 1)


def _finite_number(name: str, v) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number, got {v!r}")


def _positive_number(name: str, v) -> None:
    _finite_number(name, v)
    if v <= 0:
        raise ValueError(f"{name} must be > 0, got {v!r}")


def parameter_table(names=PRESETS) -> str:
    """A text table of the parameter counts of the given presets, per tier and in total."""
    width = max(10, *(len(name) for name in names))
    lines = [f"{'preset':<{width}} {'total':>13}  per tier (tier 1 first)"]
    for name in names:
        counts = MelNetConfig.preset(name).parameter_counts()
        lines.append(f"{name:<{width}} {sum(counts):>13,}  " + " / ".join(f"{c:,}" for c in counts))
    return "\n".join(lines)
