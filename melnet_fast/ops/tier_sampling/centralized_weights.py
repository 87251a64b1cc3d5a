"""The flat weight list of the centralized stack (and text attention) of the initial tier, as the samplers take
it: the per-frame part of a text model, next to the tier's own list (weights.py).

Order (D hidden, F channels of the tier, L layers, K' attention mixtures):
  in_proj.weight [D, F], in_proj.bias [D],
  per layer: lstm w_ih [1, 4D, D], w_hh [1, 4D, D], bias [1, 4D], h0 [1, D], c0 [1, D], proj.weight [D, D],
             proj.bias [D],
  with text: attention w_ih [4D, 2D] (input [h^c[a] ; last context]), w_hh [4D, D], bias [4D], h0 [D], c0 [D],
             window.weight [3K', D], window.bias [3K'] (position steps, log widths, weight logits),
             context_proj.weight [D, D], context_proj.bias [D].
The attention's level a (0 <= a < L) is an integer argument of the samplers, not a tensor.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch

from melnet_fast.ops.gmm_attention import AttentionWeights

# Entry counts of the list: csrc/sampler_layout.h (section centralized) is their one definition, read by the C++
# sampler; tests/ops/test_sampler_layout.py pins these to it.
HEAD = 2
PER_LAYER = 7
ATTENTION = 9


class CentralizedLayer(NamedTuple):
    w_ih: torch.Tensor
    w_hh: torch.Tensor
    bias: torch.Tensor
    h0: torch.Tensor
    c0: torch.Tensor
    proj_w: torch.Tensor
    proj_b: torch.Tensor


class CentralizedWeights(NamedTuple):
    in_w: torch.Tensor
    in_b: torch.Tensor
    layers: list
    attention: AttentionWeights | None
    context_w: torch.Tensor | None
    context_b: torch.Tensor | None


def expected_shapes(D: int, F: int, L: int, K: int) -> list[tuple[int, ...]]:
    """Shapes of the list above; K = 0 for a centralized stack without text."""
    shapes = [(D, F), (D,)]
    for _ in range(L):
        shapes += [(1, 4 * D, D), (1, 4 * D, D), (1, 4 * D), (1, D), (1, D), (D, D), (D,)]
    if K:
        shapes += [(4 * D, 2 * D), (4 * D, D), (4 * D,), (D,), (D,), (3 * K, D), (3 * K,), (D, D), (D,)]
    return shapes


def unpack(weights: Sequence[torch.Tensor], n_layers: int) -> CentralizedWeights:
    """Check the flat list against the layout above (with or without the attention part) and group it."""
    weights = list(weights)
    base = HEAD + PER_LAYER * n_layers
    if len(weights) not in (base, base + ATTENTION):
        raise ValueError(f"centralized weights must hold {base} tensors (no text) or {base + ATTENTION} (text) for "
                         f"n_layers={n_layers}, got {len(weights)}")
    if weights[0].dim() != 2:
        raise ValueError(f"centralized weights[0] (in_proj.weight) must be [D, F], got {list(weights[0].shape)}")
    D, F = weights[0].shape
    K = weights[base + 5].shape[0] // 3 if len(weights) > base else 0
    for idx, (w, shape) in enumerate(zip(weights, expected_shapes(D, F, n_layers, K))):
        if tuple(w.shape) != shape:
            raise ValueError(f"centralized weights[{idx}] must have shape {list(shape)} (hidden {D}, {F} channels, "
                             f"K'={K}), got {list(w.shape)}")
    layers = [CentralizedLayer(*weights[HEAD + PER_LAYER * l: HEAD + PER_LAYER * (l + 1)]) for l in range(n_layers)]
    if len(weights) == base:
        return CentralizedWeights(weights[0], weights[1], layers, None, None, None)
    return CentralizedWeights(weights[0], weights[1], layers, AttentionWeights(*weights[base:base + 7]),
                              weights[base + 7], weights[base + 8])
