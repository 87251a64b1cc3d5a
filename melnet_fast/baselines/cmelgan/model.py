"""CMelGAN: generator and discriminator of one conditional GAN, with input checks, sampling, save and load."""

from __future__ import annotations

import os
import warnings
from typing import Tuple

import torch
from torch import nn

from melnet_fast import checkpoint
from melnet_fast.baselines.cmelgan.config import CMelGANConfig
from melnet_fast.baselines.cmelgan.networks import Discriminator, Generator

FORMAT = "melnet_fast.CMelGAN"


class CMelGAN(nn.Module):
    """cMelGAN (student report, section 3.2): a label-conditional, fully convolutional GAN over spectrograms
    [B, T=config.frames, F=config.n_mels] in MelNet's normalised log-mel space.

    Fields: config, generator (Generator), discriminator (Discriminator). Labels are LongTensor [B] in
    0..config.n_labels - 1 (genres, speakers, folder labels; 0 for unlabelled data).
    """

    def __init__(self, config: CMelGANConfig):
        super().__init__()
        if not isinstance(config, CMelGANConfig):
            raise ValueError(f"config must be a CMelGANConfig, got {type(config).__name__}")
        self.config = config
        self.generator = Generator(config)
        self.discriminator = Discriminator(config)

    def _param(self) -> torch.Tensor:
        return self.generator.linear.weight

    # ------------------------------------------------------------------ checks
    def check_labels(self, labels, batch: int, name: str = "labels") -> torch.Tensor:
        """labels (LongTensor [batch] on the model's device, or None when n_labels == 1) -> LongTensor [batch]."""
        c, p = self.config, self._param()
        if labels is None:
            if c.n_labels > 1:
                raise ValueError(f"{name} is required: this model is conditioned on {c.n_labels} labels "
                                 f"(LongTensor [B] of ids in 0..{c.n_labels - 1})")
            return torch.zeros(batch, dtype=torch.long, device=p.device)
        if not isinstance(labels, torch.Tensor) or labels.dtype != torch.long or labels.shape != (batch,):
            got = f"{labels.dtype} {tuple(labels.shape)}" if isinstance(labels, torch.Tensor) else type(labels).__name__
            raise ValueError(f"{name} must be a LongTensor of shape [{batch}], got {got}")
        if labels.device != p.device:
            raise ValueError(f"{name} is on {labels.device} but the model is on {p.device}")
        if batch and not bool(((labels >= 0) & (labels < c.n_labels)).all()):
            raise ValueError(f"{name} must lie in 0..{c.n_labels - 1}, got values {labels.min()}..{labels.max()}")
        return labels

    def check_spectrogram(self, x, name: str = "x") -> None:
        """ValueError unless x is a finite [B, frames, n_mels] tensor in the model's dtype and on its device."""
        c, p = self.config, self._param()
        want = f"[B, T={c.frames}, F={c.n_mels}]"
        if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[1:] != (c.frames, c.n_mels) or not len(x):
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{name} must be a spectrogram tensor {want} (cMelGAN makes clips of a fixed size), "
                             f"got {got}")
        if x.dtype != p.dtype or x.device != p.device:
            raise ValueError(f"{name} is {x.dtype} on {x.device} but the model is {p.dtype} on {p.device}")
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"{name} holds NaN or inf; a spectrogram must be finite (log-amplitude, normalised)")

    # ------------------------------------------------------------------ the two networks
    def generate(self, noise: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """noise [B, noise_dim], labels [B] -> spectrograms [B, frames, n_mels] (with autograd)."""
        c, p = self.config, self._param()
        if not isinstance(noise, torch.Tensor) or noise.dim() != 2 or noise.shape[1] != c.noise_dim:
            got = tuple(noise.shape) if isinstance(noise, torch.Tensor) else type(noise).__name__
            raise ValueError(f"noise must have shape [B, noise_dim={c.noise_dim}], got {got}")
        if noise.dtype != p.dtype or noise.device != p.device:
            raise ValueError(f"noise is {noise.dtype} on {noise.device} but the model is {p.dtype} on {p.device}")
        return self.generator(noise, self.check_labels(labels, noise.shape[0]))

    def score(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, frames, n_mels], labels [B] -> discriminator scores [B] (high = real with that label)."""
        self.check_spectrogram(x)
        return self.discriminator(x, self.check_labels(labels, x.shape[0]))

    @torch.no_grad()
    def sample(self, batch: int, frames: int | None = None, cond: torch.Tensor | None = None,
               temperature: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
        """Spectrograms [batch, frames, n_mels] (the signature of MelNet.sample where it applies).

        frames: a multiple of config.frames (default one clip); a longer output is that many independently drawn
        clips of the same label, one after the other (the generator makes fixed-size clips). cond: labels
        LongTensor [batch] (may be None when n_labels == 1). temperature: the noise is drawn from N(0, temperature^2);
        at 0 every sample is the same spectrogram, whatever its label (the label's embedding multiplies the
        noise, as in the report). generator: the source of the noise.
        """
        c, p = self.config, self._param()
        for name, v in (("batch", batch), ("frames", c.frames if frames is None else frames)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        frames = c.frames if frames is None else frames
        if frames % c.frames:
            raise ValueError(f"frames={frames} must be a multiple of the model's clip length config.frames="
                             f"{c.frames}")
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) \
                or not 0 <= temperature < float("inf"):
            raise ValueError(f"temperature must be a finite number >= 0, got {temperature!r}")
        labels = self.check_labels(cond, batch, "cond")
        clips = frames // c.frames
        noise = torch.randn(clips * batch, c.noise_dim, generator=generator, device=p.device, dtype=p.dtype)
        x = self.generator(noise * temperature, labels.repeat(clips))  # clip-major: [clips * batch, T, F]
        x = x.view(clips, batch, c.frames, c.n_mels).transpose(0, 1).reshape(batch, frames, c.n_mels)
        bad = int((~torch.isfinite(x)).sum())
        if bad:
            warnings.warn(f"cMelGAN generated {bad} non-finite values (are the weights finite?)", RuntimeWarning,
                          stacklevel=2)
        return x

    # ------------------------------------------------------------------ bookkeeping
    def parameter_counts(self) -> Tuple[int, int]:
        """(generator parameters, discriminator parameters)."""
        return tuple(sum(p.numel() for p in net.parameters()) for net in (self.generator, self.discriminator))

    def save(self, path: str | os.PathLike) -> None:
        """Write config and weights of both networks to one safetensors file, atomically."""
        checkpoint.write_checkpoint(path, self.state_dict(), self.config.to_dict(), FORMAT)

    @classmethod
    def load(cls, path: str | os.PathLike, config: CMelGANConfig | None = None,
             map_location: str | torch.device = "cpu") -> CMelGAN:
        """Build the model a checkpoint describes and load its weights (no code is executed).

        config: when given, the checkpoint must have been written with this exact config, else ValueError.
        """
        return checkpoint.load_model(cls, CMelGANConfig, path, config, map_location, FORMAT)

    def extra_repr(self) -> str:
        c = self.config
        return f"frames={c.frames}, n_mels={c.n_mels}, n_labels={c.n_labels}, noise_dim={c.noise_dim}"
