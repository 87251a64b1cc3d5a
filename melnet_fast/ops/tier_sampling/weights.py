"""The flat weight list of one tier network, as the samplers take it, and its checks.

Order (D hidden, L layers, K mixtures): x_time_proj.weight [D,1], .bias [D], x_freq_proj.weight [D,1], .bias [D],
then per layer: time w_ih [3,4D,D], w_hh [3,4D,D], bias [3,4D], h0 [3,D], c0 [3,D], proj.weight [D,3D],
proj.bias [D], freq w_ih [1,4D,D], w_hh [1,4D,D], bias [1,4D], h0 [1,D], c0 [1,D], proj.weight [D,D],
proj.bias [D]; then head.weight [3K,D], head.bias [3K]. Time directions are ("t+", "f+", "f-").
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch

PER_LAYER = 14


class Layer(NamedTuple):
    t_w_ih: torch.Tensor
    t_w_hh: torch.Tensor
    t_bias: torch.Tensor
    t_h0: torch.Tensor
    t_c0: torch.Tensor
    t_proj_w: torch.Tensor
    t_proj_b: torch.Tensor
    f_w_ih: torch.Tensor
    f_w_hh: torch.Tensor
    f_bias: torch.Tensor
    f_h0: torch.Tensor
    f_c0: torch.Tensor
    f_proj_w: torch.Tensor
    f_proj_b: torch.Tensor


class TierWeights(NamedTuple):
    xt_w: torch.Tensor
    xt_b: torch.Tensor
    xf_w: torch.Tensor
    xf_b: torch.Tensor
    layers: list
    head_w: torch.Tensor
    head_b: torch.Tensor


def expected_shapes(D: int, L: int, K: int) -> list[tuple[int, ...]]:
    shapes = [(D, 1), (D,), (D, 1), (D,)]
    for _ in range(L):
        shapes += [(3, 4 * D, D), (3, 4 * D, D), (3, 4 * D), (3, D), (3, D), (D, 3 * D), (D,),
                   (1, 4 * D, D), (1, 4 * D, D), (1, 4 * D), (1, D), (1, D), (D, D), (D,)]
    return shapes + [(3 * K, D), (3 * K,)]


def unpack(weights: Sequence[torch.Tensor], n_layers: int, n_mixtures: int) -> TierWeights:
    """Check the flat list against the layout above and group it."""
    weights = list(weights)
    if len(weights) != 4 + PER_LAYER * n_layers + 2:
        raise ValueError(f"weights must hold {4 + PER_LAYER * n_layers + 2} tensors for n_layers={n_layers}, "
                         f"got {len(weights)}")
    D = weights[0].shape[0]
    for idx, (w, shape) in enumerate(zip(weights, expected_shapes(D, n_layers, n_mixtures))):
        if tuple(w.shape) != shape:
            raise ValueError(f"weights[{idx}] must have shape {list(shape)} (hidden {D}, K={n_mixtures}), "
                             f"got {list(w.shape)}")
    layers = [Layer(*weights[4 + PER_LAYER * l: 4 + PER_LAYER * (l + 1)]) for l in range(n_layers)]
    return TierWeights(weights[0], weights[1], weights[2], weights[3], layers, weights[-2], weights[-1])
