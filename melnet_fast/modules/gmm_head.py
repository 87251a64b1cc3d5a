"""The output layer of a tier: theta = W_theta h^f[L] (D -> 3K), split into the mixture's parameters."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

# Scale of the head's initial weights relative to nn.Linear's default (see GMMHead.__init__).
INIT_SCALE = 0.1


class MixtureParams(NamedTuple):
    """Unconstrained parameters of a K-component Gaussian mixture per element, each [..., K]:
    means, log standard deviations, and logits of the weights (pi = softmax(logit_pi))."""

    mu: torch.Tensor
    log_sigma: torch.Tensor
    logit_pi: torch.Tensor


class GMMHead(nn.Linear):
    """Linear(D, 3K) whose output [..., 3K] is read as (mu, log_sigma, logit_pi) = theta[..., :K],
    theta[..., K:2K], theta[..., 2K:]. forward(h [..., D]) -> MixtureParams of [..., K] tensors."""

    def __init__(self, hidden_size: int, n_mixtures: int):
        super().__init__(hidden_size, 3 * n_mixtures)
        self.n_mixtures = n_mixtures
        # A small initial head: each drawn value feeds the next channel's input, and with nn.Linear's default
        # scale an untrained model's samples run away along frequency (to inf within a few channels).
        with torch.no_grad():
            self.weight.mul_(INIT_SCALE)

    def forward(self, h: torch.Tensor) -> MixtureParams:
        theta = super().forward(h)
        K = self.n_mixtures
        return MixtureParams(theta[..., :K], theta[..., K:2 * K], theta[..., 2 * K:])
