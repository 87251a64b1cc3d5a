"""Audio front end: waveform <-> normalised log-mel spectrogram [T, F], and audio file I/O.

Forward (waveform -> spectrogram), following the paper (section 2 and Appendix A):
  1. mono mix (mean over channels), resample to `settings.sample_rate` if needed;
  2. power mel spectrogram |STFT|^2 -> mel filterbank (torchaudio.transforms.MelSpectrogram, hann window,
     centred frames: T = 1 + samples // hop), divided by (sum(window) / 2)^2 so that a full-scale sine
     (amplitude 1) has power 1 in its peak bin whatever n_fft is (0 dB = full-scale sine);
  3. `to_log_mel`: x = (log(max(mel, LOG_FLOOR)) - NORM_MEAN) / NORM_STD.

LOG_FLOOR = 1e-8 is -80 dB below a full-scale sine (librosa's default top_db): quieter bins are clamped.
NORM_MEAN = -12.0, NORM_STD = 3.5 (all three live in melnet_fast.log_mel_scale): the floor maps to -1.83 and
0 dB to +3.43. Calibrated on the embedded synthetic music (melnet_fast.synthetic) at the paper's settings
(22050 Hz, 256 mels, hop 256), where the result has mean -0.30 and std 0.93; at 16 kHz / 80 mels mean +0.36,
std 0.82. The map is fixed (no data statistics), so `from_log_mel` inverts it exactly for any x.

Inverse (spectrogram -> waveform), `spectrogram_to_waveform(..., method=...)`:
  "griffin_lim": torchaudio InverseMelScale (least squares mel -> linear power) refined by non-negative
      least-squares updates, then fast Griffin-Lim (the loop of torchaudio.functional.griffinlim, with a
      seeded or given initial phase);
  "gradient": optimise the waveform itself so its mel spectrogram matches the target (Decorsiere et al. 2015,
      the method the MelNet paper used), L-BFGS (or Adam) on the L2 distance of mel magnitudes, started from
      Griffin-Lim (default) or noise.
Both report the spectral convergence ||A_target - A_est||_F / ||A_target||_F on mel magnitudes A = sqrt(mel).
"""

from __future__ import annotations

import dataclasses
import functools
import time
import warnings
from collections.abc import Mapping
from typing import Any, Tuple

import numpy as np
import torch

from melnet_fast._optional import require
from melnet_fast.log_mel_scale import LOG_FLOOR, NORM_MEAN, NORM_STD

_FIELDS = ("sample_rate", "n_mels", "hop_length", "n_fft", "win_length", "f_min", "f_max")
# (field, the field it derives from, rule), in dependency order.
_DERIVED = (("n_fft", "hop_length", lambda hop: 6 * hop), ("win_length", "n_fft", lambda n: n),
            ("f_max", "sample_rate", lambda sr: sr / 2))


@dataclasses.dataclass(frozen=True)
class AudioSettings:
    """STFT / mel settings. Defaults: the paper's MAESTRO preset (22050 Hz, 256 mels, hop 256, window 6 hop).

    n_fft None -> 6 * hop_length (paper, Appendix A); win_length None -> n_fft; f_max None -> sample_rate / 2.
    """

    sample_rate: int = 22050
    n_mels: int = 256
    hop_length: int = 256
    n_fft: int | None = None
    win_length: int | None = None
    f_min: float = 0.0
    f_max: float | None = None

    def __post_init__(self):
        set_ = functools.partial(object.__setattr__, self)
        if self.n_fft is None:
            set_("n_fft", 6 * int(self.hop_length))
        if self.win_length is None:
            set_("win_length", self.n_fft)
        if self.f_max is None:
            set_("f_max", self.sample_rate / 2)
        for name in ("sample_rate", "n_mels", "hop_length", "n_fft", "win_length"):
            set_(name, int(getattr(self, name)))
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        set_("f_min", float(self.f_min))
        set_("f_max", float(self.f_max))
        if self.win_length > self.n_fft:
            raise ValueError(f"win_length ({self.win_length}) must be <= n_fft ({self.n_fft})")
        if not 0 <= self.f_min < self.f_max <= self.sample_rate / 2:
            raise ValueError(f"need 0 <= f_min < f_max <= sample_rate / 2, got f_min={self.f_min}, "
                             f"f_max={self.f_max}, sample_rate={self.sample_rate}")

    @property
    def n_freqs(self) -> int:
        """Linear STFT bins (n_fft // 2 + 1)."""
        return self.n_fft // 2 + 1


def audio_settings(settings: Any = None, **overrides) -> AudioSettings:
    """AudioSettings from None (defaults), an AudioSettings, a mapping, or any object with some of the
    attributes sample_rate, n_mels, hop_length, n_fft, win_length, f_min, f_max (e.g. a MelNetConfig); keyword
    overrides win, missing fields take the defaults. A field that followed its rule in `settings` (n_fft = 6 hop,
    win_length = n_fft, f_max = sample_rate / 2) follows it again when an override changes its basis."""
    if settings is None:
        base = {}
    elif isinstance(settings, AudioSettings):
        base = dataclasses.asdict(settings)
    elif isinstance(settings, Mapping):
        base = dict(settings)
    else:
        base = {f: getattr(settings, f) for f in _FIELDS if hasattr(settings, f)}
    unknown = (set(base) | set(overrides)) - set(_FIELDS)
    if unknown:
        raise TypeError(f"unknown audio settings {sorted(unknown)}; known: {', '.join(_FIELDS)}")
    changed, original = set(overrides), dict(base)
    for derived, basis, rule in _DERIVED:
        old_basis, old_value = original.get(basis), original.get(derived)
        if basis in changed and derived not in overrides and old_basis is not None and old_value is not None:
            if old_value == rule(old_basis):
                base[derived] = None
                changed.add(derived)
    return AudioSettings(**{**base, **overrides})


def num_frames(num_samples: int, settings: Any = None) -> int:
    """Frames T of the spectrogram of `num_samples` samples (centred frames: 1 + samples // hop)."""
    return 1 + int(num_samples) // audio_settings(settings).hop_length


def min_samples(settings: Any = None) -> int:
    """The fewest samples the front end's STFT accepts: its centred frames are padded by reflecting n_fft // 2
    samples at each end, which needs more samples than that."""
    return audio_settings(settings).n_fft // 2 + 1


def min_frames(settings: Any = None) -> int:
    """The fewest frames a spectrogram needs to be inverted: its waveform, (T - 1) * hop samples, must reach
    min_samples."""
    s = audio_settings(settings)
    return -(-min_samples(s) // s.hop_length) + 1


def num_samples(frames: int, settings: Any = None) -> int:
    """Samples of the waveform an inversion returns for T frames: (T - 1) * hop."""
    return (int(frames) - 1) * audio_settings(settings).hop_length


class _Frontend:
    """The transforms of one AudioSettings on one device (built once, see _frontend)."""

    def __init__(self, s: AudioSettings, device: torch.device):
        torchaudio = require("torchaudio", "the mel spectrogram front end")

        with warnings.catch_warnings():
            # Narrow low mel filters can be empty at small n_fft; those channels sit at the log floor.
            warnings.filterwarnings("ignore", message=".*filterbank has all zero values.*")
            self.mel = torchaudio.transforms.MelSpectrogram(
                sample_rate=s.sample_rate, n_fft=s.n_fft, win_length=s.win_length, hop_length=s.hop_length,
                f_min=s.f_min, f_max=s.f_max, n_mels=s.n_mels, power=2.0, center=True, pad_mode="reflect",
            ).to(device)
            self.inverse_mel = torchaudio.transforms.InverseMelScale(
                n_stft=s.n_freqs, n_mels=s.n_mels, sample_rate=s.sample_rate, f_min=s.f_min, f_max=s.f_max,
                # gelsd copes with rank-deficient filterbanks (empty filters) but exists on the CPU only.
                driver="gelsd" if device.type == "cpu" else "gels",
            ).to(device)
        self.settings = s
        self.window = self.mel.spectrogram.window  # [win_length], hann
        self.fb = self.mel.mel_scale.fb  # [n_freqs, n_mels]
        self.power_scale = float(self.window.sum() / 2) ** 2

    def stft(self, waveform):
        s = self.settings
        return torch.stft(waveform, s.n_fft, s.hop_length, s.win_length, self.window, center=True,
                          pad_mode="reflect", return_complex=True)

    def istft(self, spec, length):
        s = self.settings
        return torch.istft(spec, s.n_fft, s.hop_length, s.win_length, self.window, length=length)

    def mel_from_stft(self, spec):
        """Complex STFT [n_freqs, T] -> mel power [T, F] (0 dB = full-scale sine, as mel_spectrogram)."""
        return (spec.abs().pow(2).transpose(0, 1) @ self.fb) / self.power_scale


@functools.lru_cache(maxsize=16)
def _frontend(settings: AudioSettings, device: str) -> _Frontend:
    return _Frontend(settings, torch.device(device))


def _as_mono(waveform) -> torch.Tensor:
    """Tensor or array [samples] or [channels, samples] -> float32 [samples] (channel mean)."""
    w = waveform if torch.is_tensor(waveform) else torch.as_tensor(np.asarray(waveform))
    if w.dim() == 2:
        w = w.mean(dim=0, dtype=torch.float32)
    if w.dim() != 1:
        raise ValueError(f"waveform must be [samples] or [channels, samples], got shape {tuple(w.shape)}")
    return w.float()


def resample(waveform: torch.Tensor, orig_sr: int, new_sr: int) -> torch.Tensor:
    """[..., samples] at orig_sr -> [..., samples * new_sr / orig_sr] (torchaudio sinc resampler)."""
    if int(orig_sr) == int(new_sr):
        return waveform
    return require("torchaudio", "resampling").functional.resample(waveform, int(orig_sr), int(new_sr))


def mel_spectrogram(waveform, settings: Any = None, *, input_rate: int | None = None,
                    **overrides) -> torch.Tensor:
    """waveform [samples] or [channels, samples] (mono-mixed) -> mel power [T, F], 0 dB = full-scale sine.

    settings / overrides: as audio_settings (e.g. mel_spectrogram(w, sample_rate=16000, n_mels=80)).
    input_rate: the waveform's rate if it differs from settings.sample_rate (it is resampled first).
    T = 1 + samples // hop at the settings' rate, F = n_mels.
    """
    s = audio_settings(settings, **overrides)
    w = _as_mono(waveform)
    if input_rate is not None:
        w = resample(w, input_rate, s.sample_rate)
    if w.numel() < min_samples(s):
        raise ValueError(f"the waveform has {w.numel()} samples; the STFT (n_fft={s.n_fft}) needs at least "
                         f"{min_samples(s)}")
    fe = _frontend(s, str(w.device))
    return fe.mel(w).transpose(0, 1) / fe.power_scale


def to_log_mel(mel: torch.Tensor) -> torch.Tensor:
    """Mel power [..., F] -> normalised log-mel (log(max(mel, LOG_FLOOR)) - NORM_MEAN) / NORM_STD."""
    return (torch.log(mel.clamp(min=LOG_FLOOR)) - NORM_MEAN) / NORM_STD


def from_log_mel(x: torch.Tensor) -> torch.Tensor:
    """Inverse of to_log_mel: normalised log-mel [..., F] -> mel power exp(x * NORM_STD + NORM_MEAN)."""
    return torch.exp(x * NORM_STD + NORM_MEAN)


def log_mel_spectrogram(waveform, settings: Any = None, *, input_rate: int | None = None,
                        **overrides) -> torch.Tensor:
    """waveform [samples] or [channels, samples] -> normalised log-mel [T, F] (what the model sees).
    Arguments as mel_spectrogram."""
    return to_log_mel(mel_spectrogram(waveform, settings, input_rate=input_rate, **overrides))


def spectral_convergence(mel_target: torch.Tensor, mel_estimate: torch.Tensor) -> float:
    """||sqrt(target) - sqrt(estimate)||_F / ||sqrt(target)||_F for mel power spectrograms [T, F]."""
    a, b = mel_target.clamp(min=0).sqrt(), mel_estimate.clamp(min=0).sqrt()
    return float(torch.linalg.norm(a - b) / torch.linalg.norm(a).clamp(min=1e-12))


# ----------------------------------------------------------------------------------------- inversion


def _progress(n: int, desc: str, enabled: bool):
    tqdm = require("tqdm.auto", "the progress bar").tqdm
    return tqdm(total=n, desc=desc, disable=not enabled, leave=False)


def _initial_waveform(init, length: int, seed: int, dtype, device) -> torch.Tensor:
    if torch.is_tensor(init) or isinstance(init, np.ndarray):
        w = _as_mono(init).to(device=device, dtype=dtype)
        return torch.nn.functional.pad(w[:length], (0, max(0, length - w.numel())))
    if init != "noise":
        raise ValueError(f"init must be 'noise' or a waveform tensor, got {init!r}")
    g = torch.Generator().manual_seed(seed)
    return (1e-2 * torch.randn(length, generator=g, dtype=dtype)).to(device)


def _linear_power(fe: _Frontend, mel: torch.Tensor, nnls_iter: int) -> torch.Tensor:
    """Mel power [T, F] -> linear STFT power [n_freqs, T] (unnormalised, as the STFT gives it)."""
    target = (mel * fe.power_scale).transpose(0, 1)  # [F, T]
    power = fe.inverse_mel(target)
    if nnls_iter:
        # InverseMelScale is relu(min-norm least squares): mapped back to mel, that alone is 0.24-0.27 off
        # (SC) on the test signals of tests/audio; multiplicative non-negative least-squares updates (ISRA)
        # bring it to 0.06-0.07 in 100 steps, and Griffin-Lim's result from 0.26-0.29 to 0.11-0.12.
        power = power + 1e-8 * target.max()  # a zero stays zero under these updates
        numerator = fe.fb @ target
        for _ in range(nnls_iter):
            power = power * numerator / (fe.fb @ (fe.fb.T @ power)).clamp(min=1e-30)
    return power


def griffin_lim(mel: torch.Tensor, settings: Any = None, *, n_iter: int = 64, momentum: float = 0.99,
                init="noise", nnls_iter: int = 100, seed: int = 0,
                progress: bool = True) -> Tuple[torch.Tensor, dict]:
    """Mel power [T, F] -> (waveform [(T - 1) * hop], info). InverseMelScale (refined by nnls_iter
    non-negative least-squares updates; 0 = torchaudio's alone), then fast Griffin-Lim with momentum.

    init: "noise" (seeded random phase), "zeros" (zero phase, as torchaudio's rand_init=False), or a
    waveform whose STFT phase starts the iteration. info: method, n_iter, spectral_convergence, history
    (SC per iteration), seconds.
    """
    s = audio_settings(settings)
    t0 = time.perf_counter()
    mel = mel.detach().float()
    fe = _frontend(s, str(mel.device))
    length = num_samples(mel.shape[0], s)
    magnitude = _linear_power(fe, mel, nnls_iter).sqrt()  # [n_freqs, T]
    if isinstance(init, str) and init == "zeros":
        angles = torch.ones_like(magnitude, dtype=torch.complex64)
    else:
        spec = fe.stft(_initial_waveform(init, length, seed, mel.dtype, mel.device))
        angles = spec / spec.abs().add(1e-16)
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}")
    alpha = momentum / (1 + momentum)  # torchaudio's convention for the same `momentum` argument
    previous = torch.zeros((), dtype=mel.dtype, device=mel.device)
    history = []
    with _progress(n_iter, "griffin-lim", progress) as bar:
        for _ in range(n_iter):
            rebuilt = fe.stft(fe.istft(magnitude * angles, length))
            history.append(spectral_convergence(mel, fe.mel_from_stft(rebuilt)))
            angles = rebuilt - previous * alpha if alpha else rebuilt
            angles = angles / angles.abs().add(1e-16)
            previous = rebuilt
            bar.set_postfix(sc=f"{history[-1]:.4f}", refresh=False)
            bar.update()
    waveform = fe.istft(magnitude * angles, length)
    sc = spectral_convergence(mel, fe.mel_from_stft(fe.stft(waveform)))
    info = dict(method="griffin_lim", n_iter=n_iter, spectral_convergence=sc, history=history,
                seconds=time.perf_counter() - t0)
    return waveform, info


def gradient_inversion(mel: torch.Tensor, settings: Any = None, *, n_iter: int = 100, init="griffin_lim",
                       gl_iter: int = 32, optimizer: str = "lbfgs", lr: float | None = None, seed: int = 0,
                       progress: bool = True) -> Tuple[torch.Tensor, dict]:
    """Mel power [T, F] -> (waveform [(T - 1) * hop], info): optimise the waveform so that its mel spectrogram
    matches (Decorsiere et al. 2015; the MelNet paper's inversion).

    Loss: ||A_est - A_target||_F^2 / ||A_target||_F^2 = SC^2 on mel magnitudes A = sqrt(mel). A log-magnitude
    distance was tried and dropped: it fits quiet bins at the expense of loud ones (200 L-BFGS steps from
    Griffin-Lim took SC from 0.11-0.12 up to 0.18-0.20 on the chirp + tone + noise-burst signals of
    tests/audio at 8 kHz / 40 mels, where this loss reaches 0.028-0.035). optimizer: "lbfgs" (default,
    strong-Wolfe line search, lr 1) or "adam" (lr 3e-3; slower: 0.050-0.076 after the same 200 steps).
    init: "griffin_lim" (gl_iter iterations of griffin_lim first), "noise", or a waveform. The best iterate
    (lowest SC) is returned.
    info: method, n_iter, spectral_convergence, initial_spectral_convergence, history, seconds.
    """
    if optimizer not in ("lbfgs", "adam"):
        raise ValueError(f"optimizer must be 'lbfgs' or 'adam', got {optimizer!r}")
    # Callers often hold no_grad or inference_mode (a sampler, say); this function needs autograd.
    with torch.inference_mode(False), torch.enable_grad():
        return _gradient_inversion(mel.detach().float().clone(), audio_settings(settings), n_iter, init,
                                   gl_iter, optimizer, lr, seed, progress)


def _gradient_inversion(mel, s, n_iter, init, gl_iter, optimizer, lr, seed, progress):
    t0 = time.perf_counter()
    fe = _frontend(s, str(mel.device))
    length = num_samples(mel.shape[0], s)
    if isinstance(init, str) and init == "griffin_lim":
        init, _ = griffin_lim(mel, s, n_iter=gl_iter, seed=seed, progress=False)
    x = _initial_waveform(init, length, seed, mel.dtype, mel.device).detach().clone().requires_grad_(True)

    target = mel.clamp(min=0).sqrt()
    norm2 = target.pow(2).sum().clamp(min=1e-12)

    def estimate(w):
        return fe.mel_from_stft(fe.stft(w))

    if optimizer == "adam":
        opt = torch.optim.Adam([x], lr=lr or 3e-3)
    else:
        # One iteration per step() so the loop below can report and keep the best; max_eval must be raised
        # with it (its default, 5/4 max_iter, would cut the line search to one evaluation).
        opt = torch.optim.LBFGS([x], lr=lr or 1.0, max_iter=1, max_eval=20, history_size=20,
                                line_search_fn="strong_wolfe", tolerance_grad=0.0, tolerance_change=0.0)

    def closure():
        opt.zero_grad()
        # The small offset keeps d sqrt / d mel finite where the estimate is exactly silent.
        loss = ((estimate(x) + 1e-12).sqrt() - target).pow(2).sum() / norm2
        loss.backward()
        return loss

    with torch.no_grad():
        first_sc = spectral_convergence(mel, estimate(x))
    best, history = (first_sc, x.detach().clone()), []
    with _progress(n_iter, "gradient inversion", progress) as bar:
        for _ in range(n_iter):
            if optimizer == "lbfgs":
                opt.step(closure)
            else:
                closure()
                opt.step()
            with torch.no_grad():
                sc = spectral_convergence(mel, estimate(x))
            history.append(sc)
            if sc < best[0]:
                best = (sc, x.detach().clone())
            bar.set_postfix(sc=f"{sc:.4f}", refresh=False)
            bar.update()
    info = dict(method="gradient", n_iter=n_iter, spectral_convergence=best[0],
                initial_spectral_convergence=first_sc, history=history, seconds=time.perf_counter() - t0)
    return best[1], info


_METHODS = {"griffin_lim": griffin_lim, "gradient": gradient_inversion}


def spectrogram_to_waveform(spec: torch.Tensor, settings: Any = None, *, method: str = "gradient",
                            log: bool = True, **kwargs) -> Tuple[torch.Tensor, dict]:
    """Spectrogram [T, F] -> (waveform [(T - 1) * hop], info dict with "spectral_convergence").

    spec: normalised log-mel (as log_mel_spectrogram returns) when log=True, else mel power.
    method: "griffin_lim" or "gradient"; kwargs go to griffin_lim / gradient_inversion (n_iter, init, seed,
    progress, ...).
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {sorted(_METHODS)}, got {method!r}")
    if spec.dim() != 2:
        raise ValueError(f"spec must be [T, F], got shape {tuple(spec.shape)}")
    s = audio_settings(settings)
    if spec.shape[1] != s.n_mels:
        raise ValueError(f"spec has {spec.shape[1]} mel channels, settings say n_mels={s.n_mels}")
    if spec.shape[0] < min_frames(s):
        raise ValueError(f"spec has {spec.shape[0]} frames; the inversion needs at least {min_frames(s)} (a "
                         f"waveform of (T - 1) * hop_length >= {min_samples(s)} samples)")
    mel = from_log_mel(spec) if log else spec
    return _METHODS[method](mel, s, **kwargs)


# ----------------------------------------------------------------------------------------------- I/O


def load_audio(path, sample_rate: int | None = None, *, mono: bool = True, start: float | None = None,
               end: float | None = None) -> Tuple[torch.Tensor, int]:
    """Read wav / flac / ogg (anything libsndfile reads) -> (waveform, rate).

    waveform: float32 [samples] (mono mix) or [channels, samples] when mono=False, resampled to `sample_rate`
    if given (rate is then sample_rate). start / end: seconds of the file to read (None = from its start / to its
    end); only that part is decoded. Raises soundfile's error on unreadable files.
    """
    soundfile = require("soundfile", "reading audio files")
    frames = {}
    if start is not None or end is not None:
        file_rate = soundfile.info(str(path)).samplerate
        frames = {"start": round((start or 0.0) * file_rate),
                  "stop": None if end is None else round(end * file_rate)}
    data, rate = soundfile.read(str(path), dtype="float32", always_2d=True, **frames)  # [samples, channels]
    w = torch.from_numpy(np.ascontiguousarray(data.T))
    if mono:
        w = w.mean(dim=0)
    if sample_rate is not None and int(sample_rate) != rate:
        w, rate = resample(w, rate, int(sample_rate)), int(sample_rate)
    return w, int(rate)


def save_wav(path, waveform, sample_rate: int, *, subtype: str = "PCM_16") -> None:
    """Write waveform [samples] or [channels, samples] to a wav file. Samples beyond [-1, 1] are clipped
    (with a warning) since PCM cannot hold them."""
    soundfile = require("soundfile", "writing wav files")
    w = torch.as_tensor(waveform).detach().cpu().float()
    if w.dim() not in (1, 2):
        raise ValueError(f"waveform must be [samples] or [channels, samples], got shape {tuple(w.shape)}")
    peak = float(w.abs().max()) if w.numel() else 0.0
    if peak > 1.0 and subtype.startswith("PCM"):
        warnings.warn(f"save_wav: peak {peak:.3f} > 1, clipping ({path})", stacklevel=2)
        w = w.clamp(-1.0, 1.0)
    soundfile.write(str(path), w.T.numpy() if w.dim() == 2 else w.numpy(), int(sample_rate), subtype=subtype,
                    format="WAV")


__all__ = [
    "AudioSettings", "audio_settings", "num_frames", "num_samples", "min_samples", "min_frames", "resample",
    "mel_spectrogram", "to_log_mel", "from_log_mel", "log_mel_spectrogram", "spectral_convergence", "griffin_lim",
    "gradient_inversion", "spectrogram_to_waveform", "load_audio", "save_wav",
    "LOG_FLOOR", "NORM_MEAN", "NORM_STD",
]
