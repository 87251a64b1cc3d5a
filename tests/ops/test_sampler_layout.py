"""The samplers' weight list has one definition, csrc/sampler_layout.h: Python reads it from the extension, its
mirror for installs without the extension is the same, and the model builds its list from it."""

import pytest
import torch

from melnet_fast import _extension
from melnet_fast.modules.tier_network import TierNetwork
from melnet_fast.ops.tier_sampling import layout as lay


@pytest.mark.parametrize("n_layers", [1, 2, 5])
def test_mirror_is_the_extension_layout(n_layers):
    ext = _extension.extension()
    assert ext is not None, "the compiled extension must be built for this test"
    assert lay.mirror_layout(n_layers) == list(lay.layout(n_layers))
    assert [slot.index for slot in lay.layout(n_layers)] == list(range(len(lay.layout(n_layers))))


def test_layout_order_and_counts():
    slots = lay.layout(3)
    assert [s.section for s in slots] == ["inputs"] * 4 + ["layers"] * 14 * 3 + ["head"] * 2
    assert [s.layer for s in slots if s.section == "layers"] == [l for l in range(3) for _ in range(14)]
    assert slots[4].name == "time_layers.0.lstm.w_ih" and slots[-1].name == "head.bias"
    assert {s.kind for s in slots} == {"matrix", "vector", "state"}


@pytest.mark.parametrize("D, L, K", [(5, 1, 3), (8, 3, 10)])
def test_tier_network_builds_its_list_from_the_layout(D, L, K):
    net = TierNetwork(D, L, K)
    weights = net.sampler_weights()
    slots = lay.layout(L)
    assert len(weights) == len(slots)
    params = dict(net.named_parameters())
    for w, slot in zip(weights, slots):
        assert tuple(w.shape) == slot.size(D, K), slot
        assert w.data_ptr() == params[slot.name].data_ptr() and not w.requires_grad, slot
    W = lay.unpack(weights, L, K)
    assert W.head_w is weights[-2] and W.layers[L - 1].f_proj_b is weights[-3]
    assert W.layers[0].t_h0.shape == (3, D)


def test_unpack_names_the_tensor_with_a_wrong_shape():
    weights = TierNetwork(4, 2, 3).sampler_weights()
    bad = list(weights)
    bad[4 + 14 + 5] = torch.zeros(4, 11)
    with pytest.raises(ValueError, match=r"weights\[23\] \(time_layers\.1\.proj\.weight\) must have shape \[4, 12\]"):
        lay.unpack(bad, 2, 3)
    with pytest.raises(ValueError, match="weights must hold 34 tensors for n_layers=2"):
        lay.unpack(weights[:-1], 2, 3)


@pytest.mark.parametrize("n_layers", [1, 2, 5])
def test_folded_mirror_is_the_extension_layout(n_layers):
    """The folded list of the second CUDA sampler design: the base list as its prefix, then the folded sections."""
    assert _extension.extension() is not None, "the compiled extension must be built for this test"
    folded = lay.layout(n_layers, folded=True)
    assert lay.mirror_layout(n_layers, folded=True) == list(folded)
    assert list(folded[:len(lay.layout(n_layers))]) == list(lay.layout(n_layers))
    tail = folded[len(lay.layout(n_layers)):]
    assert [s.section for s in tail] == ["folded"] * (n_layers - 1) + ["folded_head"] * 2
    assert [s.layer for s in tail[:n_layers - 1]] == list(range(n_layers - 1))
    if n_layers > 1:
        assert tail[0].name == "freq_layers.1.lstm.w_ih[0] @ freq_layers.0.proj.weight"
    assert tail[-2].name == f"head.weight @ freq_layers.{n_layers - 1}.proj.weight"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fold_projections(dtype):
    D, L, K = 6, 3, 2
    net = TierNetwork(D, L, K)
    weights = [w.to(dtype) for w in net.sampler_weights()]
    folded = lay.fold_projections(weights, L, K)
    assert [tuple(t.shape) for t in folded] == [s.size(D, K) for s in lay.layout(L, folded=True)[len(weights):]]
    assert all(t.dtype == dtype and t.is_contiguous() for t in folded)
    W = lay.unpack(weights, L, K)
    for l in range(L - 1):
        want = W.layers[l + 1].f_w_ih[0].double() @ W.layers[l].f_proj_w.double()
        torch.testing.assert_close(folded[l], want.to(dtype), rtol=0, atol=0)
    head = W.head_w.double()
    torch.testing.assert_close(folded[-2], (head @ W.layers[-1].f_proj_w.double()).to(dtype), rtol=0, atol=0)
    want_b = head @ W.layers[-1].f_proj_b.double() + W.head_b.double()
    torch.testing.assert_close(folded[-1], want_b.to(dtype), rtol=0, atol=0)


def test_centralized_counts_are_the_extension_layout():
    from melnet_fast.ops.tier_sampling import centralized_weights as cw

    ext = _extension.extension()
    assert ext is not None, "the compiled extension must be built for this test"
    assert ext.centralized_layout() == {"inputs": cw.HEAD, "per_layer": cw.PER_LAYER, "attention": cw.ATTENTION}
    assert len(cw.expected_shapes(6, 5, 3, 2)) == cw.HEAD + 3 * cw.PER_LAYER + cw.ATTENTION
