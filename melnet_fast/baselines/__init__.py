"""Baselines beside MelNet, trained and evaluated with the same tools: cMelGAN (melnet_fast.baselines.cmelgan)."""

from melnet_fast.baselines.cmelgan import CMelGAN, CMelGANConfig

__all__ = ["CMelGAN", "CMelGANConfig"]
