"""Tier: everything one tier owns: its network, and the modules that build its conditioning z."""

from __future__ import annotations

from typing import Tuple

import torch
from torch import nn

from melnet_fast.modules.feature_extraction import FeatureExtractionNetwork
from melnet_fast.modules.gmm_head import MixtureParams
from melnet_fast.modules.tier_network import TierNetwork


class Tier(nn.Module):
    """One tier g of MelNet, trainable on its own (it shares no parameter with the other tiers).

    Fields: feature_net (upsampling tiers only) over x^<g; speaker_embedding (when n_speakers > 0), its own
    per tier; network, the TierNetwork of x^g. The conditioning is z = [feature_net(x^<g) (D) ; speaker
    embedding broadcast (speaker_dim) ; general features on this tier's grid (features_dim)], in this order.
    """

    def __init__(self, hidden_size: int, n_layers: int, n_mixtures: int, upsampling: bool, feature_layers: int,
                 n_speakers: int = 0, speaker_dim: int = 0, features_dim: int = 0):
        super().__init__()
        self.upsampling = upsampling
        self.n_speakers = n_speakers
        self.features_dim = features_dim
        if upsampling:
            self.feature_net = FeatureExtractionNetwork(hidden_size, feature_layers)
        if n_speakers > 0:
            self.speaker_embedding = nn.Embedding(n_speakers, speaker_dim)
        self.cond_dim = ((hidden_size if upsampling else 0) + (speaker_dim if n_speakers > 0 else 0)
                         + features_dim)
        self.network = TierNetwork(hidden_size, n_layers, n_mixtures, self.cond_dim)

    def conditioning(self, grid: Tuple[int, int, int], context: torch.Tensor | None = None,
                     speaker: torch.Tensor | None = None, features: torch.Tensor | None = None,
                     lengths: torch.Tensor | None = None) -> torch.Tensor | None:
        """z [B, T, F, Dz] on this tier's grid = (B, T, F), or None when Dz = 0.

        context: x^<g [B, T, F] (upsampling tiers); speaker: LongTensor [B]; features: [B, T, F, features_dim].
        Each must be given exactly when this tier uses it (checked by the caller, MelNet). lengths: LongTensor
        [B] of real frames on this tier's grid, or None (all real): the feature-extraction network reads
        backwards in time from each example's last real frame.
        """
        B, T, F = grid
        parts = []
        if self.upsampling:
            parts.append(self.feature_net(context, lengths))
        if self.n_speakers > 0:
            parts.append(self.speaker_embedding(speaker)[:, None, None, :].expand(B, T, F, -1))
        if self.features_dim > 0:
            parts.append(features)
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                speaker: torch.Tensor | None = None, features: torch.Tensor | None = None,
                lengths: torch.Tensor | None = None) -> MixtureParams:
        """x^g [B, T, F] -> MixtureParams of p(x^g | x^<g, speaker, features), each [B, T, F, K].

        lengths: LongTensor [B] of real frames (padding at the end), or None. The tier network itself needs no
        lengths: it is causal in time, so padding after a frame never reaches it; the feature network does.
        """
        z = self.conditioning(tuple(x.shape), context, speaker, features, lengths)
        return self.network(x, z)
