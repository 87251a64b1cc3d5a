"""Fixtures of the cMelGAN tests: one thread (the CPU is shared), and small random models."""

from __future__ import annotations

import pytest
import torch

from melnet_fast.baselines.cmelgan import CMelGAN, CMelGANConfig


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test of this folder runs on one thread (fixture in tests/conftest.py)."""


def odd_config(**changes) -> CMelGANConfig:
    """Odd sizes: 20 frames x 12 mels from a 4 x 2 start (strides (5, 3) then (1, 2)), 3 labels."""
    base = dict(n_mels=12, frames=20, n_labels=3, noise_dim=5, start_channels=6, up_channels=(5, 3),
                up_strides=((5, 3), (1, 2)), fine_kernels=(3, 7), d_channels=(4, 6), d_kernels=(5, 3),
                d_strides=(2, 3), d_groups=(2, 2), sample_rate=8000, hop_length=128)
    return CMelGANConfig(**{**base, **changes})


def random_gan(config: CMelGANConfig, seed: int = 0, dtype=torch.float32) -> CMelGAN:
    torch.manual_seed(seed)
    return CMelGAN(config).to(dtype)
