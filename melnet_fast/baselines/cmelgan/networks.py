"""cMelGAN's two networks (student report, section 3.2): the generator and the conditional discriminator.

Spectrograms are [B, T, F] (time-major, normalised log-mel, as MelNet's); labels are LongTensor [B].
"""

from __future__ import annotations

import torch
from torch import nn

from melnet_fast.baselines.cmelgan.blocks import ResidualStack, leaky_gain, normalised
from melnet_fast.baselines.cmelgan.config import CMelGANConfig


def _transposed_kernel(stride: int) -> tuple:
    """(kernel, padding) of a transposed convolution that multiplies its input size by exactly `stride`:
    kernel stride + 2 ceil(stride / 2) (2 x stride for even strides, 3 for stride 1)."""
    padding = -(-stride // 2)
    return stride + 2 * padding, padding


class Generator(nn.Module):
    """forward(noise [B, noise_dim], labels [B]) -> spectrogram [B, frames, n_mels].

    noise * embedding(label) -> linear -> [start_channels, T0, F0] -> the upsampling stack (2D transposed
    convolutions, each followed by a 2D residual stack) -> 1x1 convolution to one channel -> the fine-tuning stack
    (1D convolutions over time with the mel channels as channels, kernel sizes increasing, each followed by a 1D
    residual stack). The output is linear: the normalised log-mel values are not bounded."""

    def __init__(self, config: CMelGANConfig):
        super().__init__()
        c = config
        self.config = c
        slope, gain = c.leaky_slope, leaky_gain(c.leaky_slope)
        sizes = c.generator_sizes()
        self.start_shape = (c.start_channels, *sizes[0])
        self.embedding = nn.Embedding(c.n_labels, c.noise_dim)
        self.linear = nn.Linear(c.noise_dim, c.start_channels * sizes[0][0] * sizes[0][1])
        self.start_act = nn.LeakyReLU(slope)
        layers, channels = [], c.start_channels
        for out, (st, sf), size in zip(c.up_channels, c.up_strides, sizes[1:]):
            (kt, pt), (kf, pf) = _transposed_kernel(st), _transposed_kernel(sf)
            layers.append(nn.Sequential(
                normalised(nn.ConvTranspose2d(channels, out, (kt, kf), stride=(st, sf), padding=(pt, pf)),
                           gain * (st * sf) ** 0.5),
                nn.LeakyReLU(slope), ResidualStack(out, size, slope, dims=2)))
            channels = out
        self.upsampling = nn.Sequential(*layers)
        self.to_spectrogram = normalised(nn.Conv2d(channels, 1, 1), 1.0)
        F = c.n_mels
        self.fine_tuning = nn.Sequential(*(nn.Sequential(
            nn.ReflectionPad1d((k - 1) // 2), normalised(nn.Conv1d(F, F, k), 1.0), nn.LeakyReLU(slope),
            ResidualStack(F, (c.frames,), slope, dims=1)) for k in c.fine_kernels))

    def forward(self, noise: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = self.start_act(self.linear(noise * self.embedding(labels)))
        h = self.upsampling(h.view(-1, *self.start_shape))  # [B, C, T, F]
        h = self.to_spectrogram(h)[:, 0]  # [B, T, F]
        return self.fine_tuning(h.transpose(1, 2)).transpose(1, 2)  # convolutions over time: [B, F, T]


class Discriminator(nn.Module):
    """forward(x [B, frames, n_mels], labels [B]) -> score [B] (linear: high = a real spectrogram of that label).

    The label's embedding, one value per spectrogram element, is the second input channel; then strided
    grouped 2D convolutions (large kernels stay affordable in groups), LeakyReLU, and a linear layer."""

    def __init__(self, config: CMelGANConfig):
        super().__init__()
        c = config
        self.config = c
        self.embedding = nn.Embedding(c.n_labels, c.frames * c.n_mels)
        layers, channels = [], 2
        for out, k, s, g in zip(c.d_channels, c.d_kernels, c.d_strides, c.d_groups):
            layers += [normalised(nn.Conv2d(channels, out, k, stride=s, padding=k // 2, groups=g),
                                  leaky_gain(c.leaky_slope)),
                       nn.LeakyReLU(c.leaky_slope)]
            channels = out
        self.convolutions = nn.Sequential(*layers)
        T, F = c.discriminator_sizes()[-1]
        self.linear = nn.Linear(channels * T * F, 1)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        plane = self.embedding(labels).view_as(x)
        h = self.convolutions(torch.stack((x, plane), dim=1))
        return self.linear(h.flatten(1))[:, 0]
