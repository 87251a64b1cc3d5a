"""Building blocks of cMelGAN: weight-normalised convolutions and MelGAN's residual block of dilated convolutions."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

DILATIONS = (1, 3, 9)  # MelGAN's residual stack: receptive field 27 per block along each axis
# A residual branch starts small beside its shortcut, and the shortcut a little below 1, so that a stack keeps
# about the scale of its input (measured: the demo generator's output starts with std 0.97, near the data's 0.8).
BRANCH_GAIN, SHORTCUT_GAIN = 0.5, 0.9


def normalised(conv: nn.Module, gain: float) -> nn.Module:
    """conv with weight normalisation (the report puts it on every convolution), each output channel's weight
    starting at norm `gain` and its bias at 0: the output's scale is then about gain x the input's (for a
    transposed convolution of stride s, pass gain x sqrt(prod(s)): each output sees only 1/prod(s) of the
    kernel). PyTorch's default initialisation shrinks the scale about 3x per convolution, so that at the depth of
    these stacks the generator's output would barely depend on its noise."""
    conv = weight_norm(conv, dim=1 if isinstance(conv, nn.modules.conv._ConvTransposeNd) else 0)
    with torch.no_grad():
        conv.parametrizations.weight.original0.fill_(gain)
        if conv.bias is not None:  # a constant offset would otherwise be a large part of the early output
            conv.bias.zero_()
    return conv


def leaky_gain(slope: float) -> float:
    """The gain that keeps the scale of a signal through a LeakyReLU (He et al.)."""
    return (2.0 / (1.0 + slope**2)) ** 0.5


class ResidualStack(nn.Module):
    """Three residual layers x <- shortcut(x) + branch(x), branch = LeakyReLU, reflection pad, 3-tap convolution
    with dilation 1, 3, 9, LeakyReLU, 1x1 convolution; shortcut = 1x1 convolution (MelGAN's block).

    dims 1: x [B, C, T]; dims 2: x [B, C, T, F]. sizes: the spatial size the block will see; a dilation is capped
    at size - 1 along each axis (reflection padding needs a pad smaller than the input)."""

    def __init__(self, channels: int, sizes: Sequence[int], slope: float, dims: int):
        super().__init__()
        conv = nn.Conv1d if dims == 1 else nn.Conv2d
        pad = nn.ReflectionPad1d if dims == 1 else nn.ReflectionPad2d
        self.branches, self.shortcuts = nn.ModuleList(), nn.ModuleList()
        gain = leaky_gain(slope)
        for d in DILATIONS:
            dilation = tuple(min(d, n - 1) for n in sizes)
            padding = (dilation[0],) * 2 if dims == 1 else (dilation[1], dilation[1], dilation[0], dilation[0])
            self.branches.append(nn.Sequential(
                nn.LeakyReLU(slope), pad(padding), normalised(conv(channels, channels, 3, dilation=dilation), gain),
                nn.LeakyReLU(slope), normalised(conv(channels, channels, 1), gain * BRANCH_GAIN)))
            self.shortcuts.append(normalised(conv(channels, channels, 1), SHORTCUT_GAIN))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for branch, shortcut in zip(self.branches, self.shortcuts):
            x = shortcut(x) + branch(x)
        return x
