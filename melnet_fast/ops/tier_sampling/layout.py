"""The flat weight list of one tier network, as the tier samplers take it: the layout of csrc/sampler_layout.h.

The list is read from the compiled extension (melnet_fast._C.sampler_layout), the one definition that the C++ and
CUDA samplers use too. MIRROR repeats its table for installs without the extension (the reference sampler still
needs the order); tests/ops/test_sampler_layout.py pins the two together.

Order for D hidden, L layers, K mixtures (the shapes in units of D and K):
    inputs: x_time_proj.weight [D, 1], .bias [D], x_freq_proj.weight [D, 1], .bias [D]
    per layer l: time_layers.l.lstm w_ih [3, 4D, D], w_hh [3, 4D, D], bias [3, 4D], h0 [3, D], c0 [3, D],
        time_layers.l.proj.weight [D, 3D], .bias [D], freq_layers.l.lstm w_ih [1, 4D, D], w_hh [1, 4D, D],
        bias [1, 4D], h0 [1, D], c0 [1, D], freq_layers.l.proj.weight [D, D], .bias [D]
    head: head.weight [3K, D], head.bias [3K]
The three time-layer LSTMs run directions ("t+", "f+", "f-").

The folded list of the second CUDA sampler design (layout(L, folded=True), fold_projections) appends
    per layer l < L-1: W_ih^(l+1) W_proj^(l) [4D, D] (frequency-delayed layers),
    folded head: W_head W_proj^(L-1) [3K, D], W_head b_proj^(L-1) + b_head [3K].
"""

from __future__ import annotations

import functools
from collections import namedtuple
from typing import NamedTuple, Sequence

import torch

from melnet_fast import _extension

# section -> [(key, parameter name ("{l}": the layer), kind, shape as (coef, unit) pairs)], in list order.
MIRROR = {
    "inputs": [
        ("xt_w", "x_time_proj.weight", "vector", ((1, "D"), (1, "1"))),
        ("xt_b", "x_time_proj.bias", "vector", ((1, "D"),)),
        ("xf_w", "x_freq_proj.weight", "vector", ((1, "D"), (1, "1"))),
        ("xf_b", "x_freq_proj.bias", "vector", ((1, "D"),)),
    ],
    "layers": [
        ("t_w_ih", "time_layers.{l}.lstm.w_ih", "matrix", ((3, "1"), (4, "D"), (1, "D"))),
        ("t_w_hh", "time_layers.{l}.lstm.w_hh", "matrix", ((3, "1"), (4, "D"), (1, "D"))),
        ("t_bias", "time_layers.{l}.lstm.bias", "vector", ((3, "1"), (4, "D"))),
        ("t_h0", "time_layers.{l}.lstm.h0", "state", ((3, "1"), (1, "D"))),
        ("t_c0", "time_layers.{l}.lstm.c0", "state", ((3, "1"), (1, "D"))),
        ("t_proj_w", "time_layers.{l}.proj.weight", "matrix", ((1, "D"), (3, "D"))),
        ("t_proj_b", "time_layers.{l}.proj.bias", "vector", ((1, "D"),)),
        ("f_w_ih", "freq_layers.{l}.lstm.w_ih", "matrix", ((1, "1"), (4, "D"), (1, "D"))),
        ("f_w_hh", "freq_layers.{l}.lstm.w_hh", "matrix", ((1, "1"), (4, "D"), (1, "D"))),
        ("f_bias", "freq_layers.{l}.lstm.bias", "vector", ((1, "1"), (4, "D"))),
        ("f_h0", "freq_layers.{l}.lstm.h0", "state", ((1, "1"), (1, "D"))),
        ("f_c0", "freq_layers.{l}.lstm.c0", "state", ((1, "1"), (1, "D"))),
        ("f_proj_w", "freq_layers.{l}.proj.weight", "matrix", ((1, "D"), (1, "D"))),
        ("f_proj_b", "freq_layers.{l}.proj.bias", "vector", ((1, "D"),)),
    ],
    "head": [
        ("head_w", "head.weight", "matrix", ((3, "K"), (1, "D"))),
        ("head_b", "head.bias", "vector", ((3, "K"),)),
    ],
    "folded": [
        ("f_fold_w", "freq_layers.{l+1}.lstm.w_ih[0] @ freq_layers.{l}.proj.weight", "matrix", ((4, "D"), (1, "D"))),
    ],
    "folded_head": [
        ("head_fold_w", "head.weight @ freq_layers.{L-1}.proj.weight", "matrix", ((3, "K"), (1, "D"))),
        ("head_fold_b", "head.weight @ freq_layers.{L-1}.proj.bias + head.bias", "vector", ((3, "K"),)),
    ],
}
FOLDED_SECTIONS = ("folded", "folded_head")


class Slot(NamedTuple):
    """One tensor of the list: its index, section, key, layer (None outside "layers"), the TierNetwork parameter
    it holds, its kind ("matrix": applied as W x; "vector": a bias or a [D, 1] weight read as D values; "state": an
    initial LSTM state) and its shape as (coef, unit) pairs, unit "1", "D" or "K"."""

    index: int
    section: str
    key: str
    layer: int | None
    name: str
    kind: str
    shape: tuple

    def size(self, D: int, K: int) -> tuple[int, ...]:
        units = {"1": 1, "D": D, "K": K}
        return tuple(coef * units[unit] for coef, unit in self.shape)


def mirror_layout(n_layers: int, folded: bool = False) -> list[Slot]:
    """The list from MIRROR (what csrc/sampler_layout.h gives, without the extension)."""
    copies = {"layers": n_layers, "folded": n_layers - 1 if folded else 0, "folded_head": int(folded)}
    slots = []
    for section, entries in MIRROR.items():
        for copy in range(copies.get(section, 1)):
            for key, name, kind, shape in entries:
                layer = copy if section in ("layers", "folded") else None
                name = name.replace("{l}", str(copy)).replace("{l+1}", str(copy + 1))
                slots.append(Slot(len(slots), section, key, layer, name.replace("{L-1}", str(n_layers - 1)), kind,
                                  shape))
    return slots


@functools.lru_cache(maxsize=16)
def layout(n_layers: int, folded: bool = False) -> tuple[Slot, ...]:
    """The list for n_layers layers (folded: with the folded sections), from the extension when it is loaded."""
    ext = _extension.extension()
    if ext is None:
        return tuple(mirror_layout(n_layers, folded))
    return tuple(Slot(r["index"], r["section"], r["key"], r["layer"], r["name"], r["kind"],
                      tuple(tuple(d) for d in r["shape"])) for r in ext.sampler_layout(n_layers, folded))


def parameter_names(n_layers: int) -> list[str]:
    """The TierNetwork parameter of every tensor of the list, in order."""
    return [slot.name for slot in layout(n_layers)]


def expected_shapes(D: int, L: int, K: int) -> list[tuple[int, ...]]:
    return [slot.size(D, K) for slot in layout(L)]


Layer = namedtuple("Layer", [key for key, *_ in MIRROR["layers"]])
TierWeights = namedtuple("TierWeights", [key for key, *_ in MIRROR["inputs"]] + ["layers"]
                         + [key for key, *_ in MIRROR["head"]])


def unpack(weights: Sequence[torch.Tensor], n_layers: int, n_mixtures: int) -> TierWeights:
    """Check the flat list against the layout and group it: TierWeights(xt_w, xt_b, xf_w, xf_b, layers=[Layer(t_w_ih,
    ...) per layer], head_w, head_b)."""
    weights = list(weights)
    slots = layout(n_layers)
    if len(weights) != len(slots):
        raise ValueError(f"weights must hold {len(slots)} tensors for n_layers={n_layers}, got {len(weights)}")
    D = weights[0].shape[0] if weights[0].dim() else 0
    for w, slot in zip(weights, slots):
        shape = slot.size(D, n_mixtures)
        if tuple(w.shape) != shape:
            raise ValueError(f"weights[{slot.index}] ({slot.name}) must have shape {list(shape)} (hidden {D}, "
                             f"K={n_mixtures}), got {list(w.shape)}")
    by_key = {}
    layers = [{} for _ in range(n_layers)]
    for w, slot in zip(weights, slots):
        (layers[slot.layer] if slot.section == "layers" else by_key)[slot.key] = w
    return TierWeights(layers=[Layer(**lay) for lay in layers], **by_key)


def fold_projections(weights: Sequence[torch.Tensor], n_layers: int, n_mixtures: int) -> list[torch.Tensor]:
    """The folded sections for the flat list `weights` (layout(n_layers)), in the list order of
    layout(n_layers, folded=True): W_ih^(l+1) W_proj^(l) [4D, D] of the frequency-delayed layers l < L-1, then
    W_head W_proj^(L-1) [3K, D] and W_head b_proj^(L-1) + b_head [3K]. Products in float64, rounded once to the
    weights' dtype (for bfloat16 weights a relative error of up to 2^-9 per element of the folded matrix, which
    the samplers without folding do not have)."""
    W = unpack(weights, n_layers, n_mixtures)
    dtype = weights[0].dtype
    folded = [(nxt.f_w_ih[0].double() @ lay.f_proj_w.double()).to(dtype)
              for lay, nxt in zip(W.layers[:-1], W.layers[1:])]
    last = W.layers[-1]
    head_w = W.head_w.double()
    folded.append((head_w @ last.f_proj_w.double()).to(dtype))
    folded.append((head_w @ last.f_proj_b.double() + W.head_b.double()).to(dtype))
    return [t.contiguous() for t in folded]
