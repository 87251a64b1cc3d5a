"""Models and inputs shared by the model tests."""

from __future__ import annotations

import math

import torch

from melnet_fast import MelNet, MelNetConfig

BACKENDS = ("reference", "cpu")


def tiny_config(**overrides) -> MelNetConfig:
    return MelNetConfig.preset("tiny", **overrides)


def random_model(config: MelNetConfig, dtype=torch.float64, seed: int = 0) -> MelNet:
    """A model whose every parameter is random and non-zero, trainable initial LSTM states included (they are
    zeros at init, which would hide a sampler that ignores them). Weights are scaled by 1/sqrt(fan-in), and
    the paths from x to the head scaled down so that drawn spectrograms stay in a moderate range."""
    torch.manual_seed(seed)
    model = MelNet(config).to(dtype)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("h0", "c0")):
                scale = 0.5
            elif name.endswith("bias") or p.dim() < 2:
                scale = 0.3
            elif "head" in name:  # keeps log_sigma and mu moderate: x feeds back into them as samples are drawn
                scale = 0.3 / math.sqrt(p.shape[-1])
            elif "x_time_proj" in name or "x_freq_proj" in name or "in_proj" in name:
                scale = 0.5
            else:
                scale = 1.0 / math.sqrt(p.shape[-1])
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64).to(dtype) * scale)
    return model


def random_spectrogram(B: int, T: int, F: int, dtype=torch.float64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, T, F, generator=g, dtype=torch.float64).to(dtype)


def random_cond(config: MelNetConfig, B: int, T: int, dtype=torch.float64, seed: int = 0):
    """A cond argument for `config` (None when it takes none): speaker ids and / or features."""
    g = torch.Generator().manual_seed(seed)
    cond = {}
    if config.n_speakers:
        cond["speaker"] = torch.randint(0, config.n_speakers, (B,), generator=g)
    if config.cond_dim:
        cond["features"] = torch.randn(B, T, config.n_mels, config.cond_dim, generator=g,
                                       dtype=torch.float64).to(dtype)
    return cond or None


TEXTS = ("The cat sat.", "A dog, 2 birds!", "Hi", "one more line of text")


def tts_config(**overrides) -> MelNetConfig:
    """A tiny text-to-speech config (centralized stack + attention over characters)."""
    return MelNetConfig.preset("tts_tiny", **{"n_mels": 8, **overrides})


def text_cond(B: int, offset: int = 0) -> dict:
    """cond for a text model: B of TEXTS, of different lengths."""
    return {"text": [TEXTS[(offset + b) % len(TEXTS)] for b in range(B)]}
