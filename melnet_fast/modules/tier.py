"""Tier: everything one tier owns: its network, and the modules that build its conditioning z."""

from __future__ import annotations

from typing import Tuple

import torch
from torch import nn

from melnet_fast.modules.centralized import DEFAULT_INITIAL_STEP
from melnet_fast.modules.feature_extraction import FeatureExtractionNetwork
from melnet_fast.modules.gmm_head import MixtureParams
from melnet_fast.modules.text_encoder import TextEncoder, TextMemory
from melnet_fast.modules.tier_network import TierNetwork


class Tier(nn.Module):
    """One tier g of MelNet, trainable on its own (it shares no parameter with the other tiers).

    Fields: feature_net (upsampling tiers only) over x^<g; speaker_embedding (when n_speakers > 0), its own
    per tier; network, the TierNetwork of x^g. The conditioning is z = [feature_net(x^<g) (D) ; speaker
    embedding broadcast (speaker_dim) ; general features on this tier's grid (features_dim)], in this order.
    Text (the initial tier of a text model): text_encoder (n_text_symbols > 0) encodes the texts, read by the
    attention of the network's centralized stack (centralized_channels = F of the tier > 0); input_dropout and
    attention_init as in TierNetwork.
    """

    def __init__(self, hidden_size: int, n_layers: int, n_mixtures: int, upsampling: bool, feature_layers: int,
                 n_speakers: int = 0, speaker_dim: int = 0, features_dim: int = 0, centralized_channels: int = 0,
                 n_text_symbols: int = 0, attention_mixtures: int = 0, attention_layer: int = 0,
                 input_dropout: float = 0.0, attention_init: Tuple[float, float] = (DEFAULT_INITIAL_STEP, 1.0)):
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
        self.text_encoder = TextEncoder(n_text_symbols, hidden_size) if n_text_symbols else None
        self.network = TierNetwork(hidden_size, n_layers, n_mixtures, self.cond_dim, centralized_channels,
                                   attention_mixtures if n_text_symbols else 0, attention_layer, input_dropout,
                                   attention_init)

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

    def encode_text(self, text: Tuple[torch.Tensor, torch.Tensor] | None) -> TextMemory | None:
        """(ids LongTensor [B, U], lengths LongTensor [B]) -> TextMemory, or None (no text)."""
        if text is None:
            return None
        if self.text_encoder is None:
            raise ValueError("this tier is not conditioned on text")
        return self.text_encoder(*text)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                speaker: torch.Tensor | None = None, features: torch.Tensor | None = None,
                lengths: torch.Tensor | None = None, text: Tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> MixtureParams:
        """x^g [B, T, F] -> MixtureParams of p(x^g | x^<g, speaker, features, text), each [B, T, F, K].

        lengths: LongTensor [B] of real frames (padding at the end), or None. The tier network itself needs no
        lengths: it is causal in time, so padding after a frame never reaches it; the feature network does.
        text: (ids LongTensor [B, U], text lengths LongTensor [B]) for the initial tier of a text model.
        """
        return self.forward_with_alignment(x, context, speaker, features, lengths, text)[0]

    def forward_with_alignment(self, x, context=None, speaker=None, features=None, lengths=None, text=None):
        """(forward's MixtureParams, attention weights [B, T, U] per frame or None without text)."""
        z = self.conditioning(tuple(x.shape), context, speaker, features, lengths)
        return self.network.forward_with_alignment(x, z, self.encode_text(text))
