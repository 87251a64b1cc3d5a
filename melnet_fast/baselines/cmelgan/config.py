"""CMelGANConfig: every hyperparameter of a cMelGAN (generator, discriminator, audio front end, optimiser).

The presets `small` and `large` follow the student report's models (15.3M and 25.2M parameters, generator and
discriminator together) at the report's spectrogram settings (22050 Hz, 256 mels, hop 864, 2048-point STFT,
10 s clips of 256 frames); `demo` has the audio settings and clip length of MelNet's demo (so the two train on
the same spectrograms) at about twice its parameters (0.22M); `tiny` is for tests.
melnet_fast.baselines.cmelgan.parameter_table() lists their sizes.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict, Tuple

from melnet_fast.audio import AudioSettings
from melnet_fast.config import _finite_number, _positive_int, config_from_dict

_DEMO_AUDIO = dict(n_mels=32, sample_rate=16000, hop_length=256)  # MelNet's demo preset (cli/demo.py)
_PRESETS: Dict[str, Dict[str, Any]] = {
    "tiny": dict(n_mels=16, frames=16, sample_rate=8000, hop_length=128, noise_dim=8, start_channels=8,
                 up_channels=(8, 4), up_strides=((2, 2), (2, 2)), fine_kernels=(3, 5),
                 d_channels=(8, 16), d_kernels=(5, 5), d_strides=(2, 2), d_groups=(1, 4), batch_size=4),
    "demo": dict(**_DEMO_AUDIO, frames=32, noise_dim=32, start_channels=64, up_channels=(32, 16, 8),
                 up_strides=((2, 2), (2, 2), (2, 2)), fine_kernels=(3, 7, 15),
                 d_channels=(16, 32, 64), d_kernels=(9, 9, 5), d_strides=(2, 2, 2), d_groups=(1, 4, 8),
                 batch_size=16, learning_rate=2e-4),
    "small": dict(n_mels=256, frames=256, sample_rate=22050, hop_length=864, n_fft=2048, noise_dim=100,
                  start_channels=256, up_channels=(128, 64, 16, 8), up_strides=((4, 4), (4, 4), (2, 2), (2, 2)),
                  fine_kernels=(3, 7, 15, 23, 31), d_channels=(32, 64, 128, 256, 512),
                  d_kernels=(21, 21, 21, 21, 5), d_strides=(1, 4, 4, 4, 2), d_groups=(1, 4, 16, 16, 64),
                  batch_size=8),
    "large": dict(n_mels=256, frames=256, sample_rate=22050, hop_length=864, n_fft=2048, noise_dim=100,
                  start_channels=256, up_channels=(256, 128, 32, 16), up_strides=((4, 4), (4, 4), (2, 2), (2, 2)),
                  fine_kernels=(3, 7, 15, 23, 31), d_channels=(64, 128, 256, 512, 1024),
                  d_kernels=(21, 21, 21, 21, 5), d_strides=(1, 4, 4, 4, 2), d_groups=(1, 4, 16, 16, 64),
                  batch_size=8),
}
PRESETS = tuple(_PRESETS)
AUDIO_FIELDS = ("sample_rate", "n_mels", "hop_length", "n_fft", "win_length", "f_min", "f_max")


def _int_tuple(name: str, value, length: int | None = None) -> Tuple[int, ...]:
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"{name} must be a non-empty list of ints, got {value!r}")
    if length is not None and len(value) != length:
        raise ValueError(f"{name} must have {length} entries (one per layer), got {len(value)}: {value!r}")
    for k, v in enumerate(value):
        _positive_int(f"{name}[{k}]", v)
    return tuple(int(v) for v in value)


@dataclasses.dataclass(frozen=True)
class CMelGANConfig:
    """Hyperparameters of a cMelGAN and of the spectrograms [frames, n_mels] it makes.

    Generator: noise [noise_dim] * embedding(label) -> linear -> [start_channels, frames / prod(time strides),
    n_mels / prod(freq strides)] -> one 2D transposed convolution per entry of up_channels / up_strides ((time,
    freq) stride; kernel 2 x stride for even strides, 3 for 1, 2 x stride + 1 for odd ones), each followed by a
    residual block of three dilated 3x3 convolutions (reflection padding) -> a 1x1 convolution to one channel ->
    one 1D convolution over time (mel channels as channels) per odd kernel size in fine_kernels, each followed
    by a residual block of three dilated 1D convolutions. Discriminator: the label embedding as a
    [frames, n_mels] channel beside the spectrogram -> strided 2D convolutions (d_channels, d_kernels (odd),
    d_strides, d_groups) -> a linear output.
    n_labels: genres / speakers / folder labels (1 = unlabelled data). leaky_slope: of every LeakyReLU.
    Audio: as MelNetConfig (n_fft None = 6 x hop, win_length None = n_fft, f_max None = sample_rate / 2).
    Training: batch_size, learning_rate and betas of Adam (both networks).
    Invalid values raise ValueError naming the field.
    """

    n_mels: int
    frames: int
    up_channels: Tuple[int, ...]
    up_strides: Tuple[Tuple[int, int], ...]
    fine_kernels: Tuple[int, ...]
    d_channels: Tuple[int, ...]
    d_kernels: Tuple[int, ...]
    d_strides: Tuple[int, ...]
    d_groups: Tuple[int, ...]
    n_labels: int = 1
    noise_dim: int = 100
    start_channels: int = 256
    leaky_slope: float = 0.2
    sample_rate: int = 22050
    hop_length: int = 256
    n_fft: int | None = None
    win_length: int | None = None
    f_min: float = 0.0
    f_max: float | None = None
    batch_size: int = 16
    learning_rate: float = 1e-4
    betas: Tuple[float, float] = (0.5, 0.9)

    def __post_init__(self):
        set_ = lambda name, v: object.__setattr__(self, name, v)  # noqa: E731 (frozen dataclass)
        for name in ("up_channels", "fine_kernels", "d_channels", "d_kernels", "d_strides", "d_groups"):
            set_(name, _int_tuple(name, getattr(self, name)))
        strides = self.up_strides
        if not isinstance(strides, (list, tuple)) or len(strides) != len(self.up_channels):
            raise ValueError(f"up_strides must hold one (time, freq) stride per entry of up_channels "
                             f"({len(self.up_channels)}), got {strides!r}")
        set_("up_strides", tuple(_int_tuple(f"up_strides[{k}]", s, 2) for k, s in enumerate(strides)))
        if not isinstance(self.betas, (list, tuple)) or len(self.betas) != 2:
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        set_("betas", tuple(float(b) for b in self.betas))
        if self.n_fft is None and isinstance(self.hop_length, int):
            set_("n_fft", 6 * self.hop_length)
        if self.win_length is None:
            set_("win_length", self.n_fft)
        self._validate()

    def _validate(self) -> None:
        for name in ("n_mels", "frames", "n_labels", "noise_dim", "start_channels", "batch_size"):
            _positive_int(name, getattr(self, name))
        try:  # the audio fields are checked by the front end's own settings class
            AudioSettings(**{f: getattr(self, f) for f in AUDIO_FIELDS})
        except (TypeError, ValueError) as e:
            raise ValueError(f"invalid audio settings: {e}") from None
        _finite_number("leaky_slope", self.leaky_slope)
        _finite_number("learning_rate", self.learning_rate)
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        for b in self.betas:
            if not (math.isfinite(b) and 0 <= b < 1):
                raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        t_factor, f_factor = self.upsampling
        if self.frames % t_factor or self.n_mels % f_factor:
            raise ValueError(f"frames={self.frames} and n_mels={self.n_mels} must be multiples of the products of "
                             f"the time and frequency strides in up_strides ({t_factor}, {f_factor})")
        for k, size in enumerate(self.generator_sizes()[1:]):
            if min(size) < 2:
                raise ValueError(f"upsampling layer {k} outputs {size[0]} x {size[1]}: the residual block after it "
                                 f"needs at least 2 x 2 (reflection padding); use a larger start or other strides")
        for k, kernel in enumerate(self.fine_kernels):
            if kernel % 2 == 0 or (kernel - 1) // 2 >= self.frames:
                raise ValueError(f"fine_kernels[{k}]={kernel} must be odd and below 2 x frames={2 * self.frames}")
        n = len(self.d_channels)
        for name in ("d_kernels", "d_strides", "d_groups"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} must have {n} entries (one per entry of d_channels), got "
                                 f"{len(getattr(self, name))}")
        channels_in = 2  # the spectrogram and the label plane
        for k, (c, kernel, g) in enumerate(zip(self.d_channels, self.d_kernels, self.d_groups)):
            if kernel % 2 == 0:
                raise ValueError(f"d_kernels[{k}]={kernel} must be odd")
            if channels_in % g or c % g:
                raise ValueError(f"d_groups[{k}]={g} must divide the layer's input channels ({channels_in}) and "
                                 f"d_channels[{k}]={c}")
            channels_in = c

    # ------------------------------------------------------------------ derived sizes
    @property
    def upsampling(self) -> Tuple[int, int]:
        """(time, frequency) factor of the generator's upsampling stack."""
        return (math.prod(s[0] for s in self.up_strides), math.prod(s[1] for s in self.up_strides))

    def generator_sizes(self) -> list:
        """[(T, F) of the start shape, then of each upsampling layer's output]."""
        t_factor, f_factor = self.upsampling
        sizes = [(self.frames // t_factor, self.n_mels // f_factor)]
        for st, sf in self.up_strides:
            sizes.append((sizes[-1][0] * st, sizes[-1][1] * sf))
        return sizes

    def discriminator_sizes(self) -> list:
        """[(T, F) of the input, then of each convolution's output] (odd kernels, 'same' padding: ceil(n / s))."""
        sizes = [(self.frames, self.n_mels)]
        for s in self.d_strides:
            sizes.append((-(-sizes[-1][0] // s), -(-sizes[-1][1] // s)))
        return sizes

    @property
    def seconds(self) -> float:
        """Audio length of one generated clip."""
        return self.frames * self.hop_length / self.sample_rate

    # What the data pipeline (melnet_fast.train.data_source) asks of a model's config besides its audio settings.
    time_factor = 1  # a clip's frames need to be a multiple of nothing (MelNet: of its time splits)
    has_text = False

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        for name, value in d.items():
            if isinstance(value, tuple):
                d[name] = [list(v) if isinstance(v, tuple) else v for v in value]
        return d

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> CMelGANConfig:
        return config_from_dict(cls, d)

    @classmethod
    def preset(cls, name: str, **overrides) -> CMelGANConfig:
        """A named configuration: "tiny" (tests), "demo" (MelNet demo's audio), "small", "large" (the report's)."""
        if name not in _PRESETS:
            raise ValueError(f"unknown cMelGAN preset {name!r}; presets: {', '.join(PRESETS)}")
        return cls(**{**_PRESETS[name], **overrides})

    def replace(self, **changes) -> CMelGANConfig:
        return dataclasses.replace(self, **changes)
