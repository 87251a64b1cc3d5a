"""TierNetwork: the autoregressive network of one tier (paper, section 4): time- and frequency-delayed stacks."""

from __future__ import annotations

from typing import List, Tuple

import torch
import torch.nn.functional as Fn
from torch import nn

from melnet_fast.modules.centralized import DEFAULT_INITIAL_STEP, CentralizedStack
from melnet_fast.modules.delayed import FrequencyDelayedLayer, TimeDelayedLayer
from melnet_fast.modules.gmm_head import GMMHead, MixtureParams
from melnet_fast.modules.text_encoder import TextMemory
from melnet_fast.ops.tier_sampling.layout import parameter_names


class TierNetwork(nn.Module):
    """theta[i, j] = f(x[<i, :], x[i, <j], z[., .]) for one tier's grid, L layers of hidden size D.

    Inputs: h^t[0] = x_time_proj(x[i-1, j]) + cond_time_proj(z[i, j]) (frame -1 is zeros),
            h^f[0] = x_freq_proj(x[i, j-1]) + cond_freq_proj(z[i, j]) (channel -1 is zeros);
    then per layer l: h^t = time_layers[l](h^t); h^f = freq_layers[l](h^f, h^t); theta = head(h^f).
    The cond projections exist only when cond_dim Dz > 0 (bias-free).
    With a centralized stack (centralized_channels = F of the tier > 0; the initial tier of a text model),
    layer l of the frequency-delayed stack reads h^t[l] + h^c[l] (h^c broadcast over frequency):
    h^f = freq_layers[l](h^f, h^t + h^c[l]); the stack's attention over a text runs when attention_mixtures > 0.
    input_dropout: dropout on the previous frame x[i-1] where this network reads it (the time-delayed stack's
    input, and the centralized stack's), in training only; attention_init: (initial step, initial width) of the
    attention window (CentralizedStack).
    """

    def __init__(self, hidden_size: int, n_layers: int, n_mixtures: int, cond_dim: int = 0,
                 centralized_channels: int = 0, attention_mixtures: int = 0, attention_layer: int = 0,
                 input_dropout: float = 0.0, attention_init: Tuple[float, float] = (DEFAULT_INITIAL_STEP, 1.0)):
        super().__init__()
        self.input_dropout = nn.Dropout(input_dropout)
        D = hidden_size
        self.hidden_size, self.n_layers, self.n_mixtures, self.cond_dim = D, n_layers, n_mixtures, cond_dim
        self.x_time_proj = nn.Linear(1, D)
        self.x_freq_proj = nn.Linear(1, D)
        if cond_dim > 0:
            self.cond_time_proj = nn.Linear(cond_dim, D, bias=False)
            self.cond_freq_proj = nn.Linear(cond_dim, D, bias=False)
        self.time_layers = nn.ModuleList(TimeDelayedLayer(D) for _ in range(n_layers))
        self.freq_layers = nn.ModuleList(FrequencyDelayedLayer(D) for _ in range(n_layers))
        self.head = GMMHead(D, n_mixtures)
        self.centralized = None
        if centralized_channels:
            self.centralized = CentralizedStack(centralized_channels, D, n_layers, attention_mixtures,
                                                attention_layer, input_dropout, *attention_init)

    def conditioning_terms(self, z: torch.Tensor | None, grid: Tuple[int, int, int] | None = None
                           ) -> Tuple[torch.Tensor, torch.Tensor]:
        """(cz_t, cz_f), each [B, T, F, D]: W^t_z z and W^f_z z (paper eqs. 8-9).

        z: [B, T, F, Dz], or None when Dz = 0; then grid = (B, T, F) gives the shape and both terms are zeros.
        """
        if self.cond_dim == 0:
            if z is not None:
                grid = tuple(z.shape[:3])
            if grid is None:
                raise ValueError("conditioning_terms: pass z [B, T, F, 0] or grid=(B, T, F) when cond_dim is 0")
            w = self.x_time_proj.weight
            zeros = w.new_zeros(*grid, self.hidden_size)
            return zeros, zeros.clone()
        self._check_z(z)
        return self.cond_time_proj(z), self.cond_freq_proj(z)

    def _check_z(self, z) -> None:
        if z is None or z.dim() != 4 or z.shape[-1] != self.cond_dim:
            got = None if z is None else tuple(z.shape)
            raise ValueError(f"z must have shape [B, T, F, {self.cond_dim}] (the tier's conditioning), got {got}")

    def forward(self, x: torch.Tensor, z: torch.Tensor | None = None, text: TextMemory | None = None
                ) -> MixtureParams:
        """x [B, T, F], z [B, T, F, Dz] or None (Dz = 0), text (the encoded texts, for a network with attention)
        -> MixtureParams(mu, log_sigma, logit_pi), each [B, T, F, K]; theta[:, i, j] depends on x only through
        x[:, <i, :] and x[:, i, <j]."""
        return self.forward_with_alignment(x, z, text)[0]

    def forward_with_alignment(self, x: torch.Tensor, z: torch.Tensor | None = None,
                               text: TextMemory | None = None) -> tuple[MixtureParams, torch.Tensor | None]:
        """(forward's MixtureParams, the attention weights [B, T, U] of every frame, or None without text)."""
        T, F = x.shape[1], x.shape[2]
        x_prev_frame = self.input_dropout(Fn.pad(x, (0, 0, 1, 0))[:, :T, :])  # x[i-1, j]; dropout: training only
        x_prev_channel = Fn.pad(x, (1, 0))[:, :, :F]  # x[i, j-1]
        ht = self.x_time_proj(x_prev_frame.unsqueeze(-1))
        hf = self.x_freq_proj(x_prev_channel.unsqueeze(-1))
        if self.cond_dim > 0:
            self._check_z(z)
            ht = ht + self.cond_time_proj(z)
            hf = hf + self.cond_freq_proj(z)
        elif z is not None and z.shape[-1] != 0:
            raise ValueError(f"this tier network takes no conditioning (cond_dim=0), got z of shape "
                             f"{tuple(z.shape)}")
        if self.centralized is None:
            if text is not None:
                raise ValueError("this tier network takes no text (it has no centralized stack with attention)")
            hc, alignment = [None] * self.n_layers, None
        else:
            hc, alignment = self.centralized(x, text)
        for time_layer, freq_layer, hc_l in zip(self.time_layers, self.freq_layers, hc):
            ht = time_layer(ht)
            hf = freq_layer(hf, ht if hc_l is None else ht + hc_l.unsqueeze(2))
        return self.head(hf), alignment

    def sampler_weights(self) -> List[torch.Tensor]:
        """The weights in the order ops.sample_tier reads them (detached), the sampler layout of
        melnet_fast.ops.tier_sampling.layout (csrc/sampler_layout.h). The cond projections are not included: the
        sampler receives their outputs (conditioning_terms)."""
        return [self.get_parameter(name).detach() for name in parameter_names(self.n_layers)]

    def centralized_sampler_weights(self) -> List[torch.Tensor]:
        """The centralized stack's weights in the order ops.sample_tier_centralized reads them (detached):
        in_proj.weight [D, F], .bias [D]; per layer lstm w_ih [1, 4D, D], w_hh [1, 4D, D], bias [1, 4D],
        h0 [1, D], c0 [1, D], proj.weight [D, D], .bias [D]; with text the attention's w_ih [4D, 2D], w_hh [4D, D],
        bias [4D], h0 [D], c0 [D], window.weight [3K', D], window.bias [3K'], context_proj.weight [D, D], .bias [D]
        (melnet_fast.ops.tier_sampling.centralized_weights)."""
        c = self.centralized
        if c is None:
            raise ValueError("this tier network has no centralized stack")
        ws = [c.in_proj.weight, c.in_proj.bias]
        for layer in c.layers:
            ws += [layer.lstm.w_ih, layer.lstm.w_hh, layer.lstm.bias, layer.lstm.h0, layer.lstm.c0,
                   layer.proj.weight, layer.proj.bias]
        if c.attention is not None:
            a = c.attention
            ws += [a.w_ih, a.w_hh, a.bias, a.h0, a.c0, a.window.weight, a.window.bias, a.context_proj.weight,
                   a.context_proj.bias]
        return [w.detach() for w in ws]
