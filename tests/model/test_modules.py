"""The modules: parameter layout (the C++ sampler depends on it), shapes, and what each computes."""

import math

import pytest
import torch

from melnet_fast import ops
from melnet_fast.modules import FeatureExtractionNetwork, GMMHead, SweepLSTM, Tier, TierNetwork
from melnet_fast.ops.tier_sampling.layout import expected_shapes


def test_sweep_lstm_parameters_and_forward():
    torch.manual_seed(0)
    m = SweepLSTM(5, 4, ("t+", "f-"))
    shapes = {n: tuple(p.shape) for n, p in m.named_parameters()}
    assert shapes == {"w_ih": (2, 16, 5), "w_hh": (2, 16, 4), "bias": (2, 16), "h0": (2, 4), "c0": (2, 4)}
    assert m.directions == ("t+", "f-")
    bound = 1 / math.sqrt(4)
    assert all(p.abs().max() <= bound for p in (m.w_ih, m.w_hh, m.bias)) and m.w_hh.std() > 0
    x = torch.randn(2, 3, 6, 5)
    y = m(x)
    assert y.shape == (2, 3, 6, 8)
    assert torch.equal(y, ops.lstm_sweep_2d(x, m.w_ih, m.w_hh, m.bias, m.h0, m.c0, ("t+", "f-")))


@pytest.mark.parametrize("D,L,K,Dz", [(8, 2, 3, 0), (6, 3, 2, 5)])
def test_tier_network_layout(D, L, K, Dz):
    net = TierNetwork(D, L, K, Dz)
    names = [n for n, _ in net.named_parameters()]
    assert names[:4] == ["x_time_proj.weight", "x_time_proj.bias", "x_freq_proj.weight", "x_freq_proj.bias"]
    assert ("cond_time_proj.weight" in names) == (Dz > 0) and "cond_time_proj.bias" not in names
    assert all(net.time_layers[l].lstm.directions == ("t+", "f+", "f-") for l in range(L))
    assert all(net.freq_layers[l].lstm.directions == ("f+",) for l in range(L))
    weights = net.sampler_weights()
    assert [tuple(w.shape) for w in weights] == expected_shapes(D, L, K)
    expected = [net.x_time_proj.weight, net.x_time_proj.bias, net.x_freq_proj.weight, net.x_freq_proj.bias]
    for l in range(L):
        for layer in (net.time_layers[l], net.freq_layers[l]):
            s = layer.lstm
            expected += [s.w_ih, s.w_hh, s.bias, s.h0, s.c0, layer.proj.weight, layer.proj.bias]
    expected += [net.head.weight, net.head.bias]
    assert all(w.data_ptr() == e.data_ptr() and not w.requires_grad for w, e in zip(weights, expected))


def test_tier_network_forward_by_hand():
    """One layer written out from the paper's equations 6-9 with the ops."""
    torch.manual_seed(0)
    D, K, Dz = 4, 2, 3
    net = TierNetwork(D, 1, K, Dz)
    x, z = torch.randn(2, 3, 5), torch.randn(2, 3, 5, Dz)
    x_prev_t = torch.cat([torch.zeros(2, 1, 5), x[:, :-1]], dim=1)
    x_prev_f = torch.cat([torch.zeros(2, 3, 1), x[:, :, :-1]], dim=2)
    ht = net.x_time_proj(x_prev_t[..., None]) + z @ net.cond_time_proj.weight.t()
    hf = net.x_freq_proj(x_prev_f[..., None]) + z @ net.cond_freq_proj.weight.t()
    tl, fl = net.time_layers[0], net.freq_layers[0]
    ht = ht + tl.proj(tl.lstm(ht))
    hf = hf + fl.proj(fl.lstm(hf + ht))
    theta = hf @ net.head.weight.t() + net.head.bias
    got = net(x, z)
    torch.testing.assert_close(got.mu, theta[..., :K])
    torch.testing.assert_close(got.log_sigma, theta[..., K:2 * K])
    torch.testing.assert_close(got.logit_pi, theta[..., 2 * K:])
    cz_t, cz_f = net.conditioning_terms(z)
    torch.testing.assert_close(cz_t, net.cond_time_proj(z))
    torch.testing.assert_close(cz_f, net.cond_freq_proj(z))


def test_conditioning_terms_without_conditioning():
    net = TierNetwork(4, 1, 2, 0)
    cz_t, cz_f = net.conditioning_terms(None, (2, 3, 5))
    assert cz_t.shape == cz_f.shape == (2, 3, 5, 4) and not cz_t.any() and not cz_f.any()
    with pytest.raises(ValueError, match="grid"):
        net.conditioning_terms(None)
    with pytest.raises(ValueError, match="takes no conditioning"):
        net(torch.zeros(1, 2, 2), torch.zeros(1, 2, 2, 3))
    with pytest.raises(ValueError, match=r"z must have shape \[B, T, F, 3\]"):
        TierNetwork(4, 1, 2, 3)(torch.zeros(1, 2, 2), None)


def test_gmm_head_split():
    head = GMMHead(4, 3)
    assert head.weight.shape == (9, 4) and head.bias.shape == (9,)
    h = torch.randn(2, 4)
    theta = h @ head.weight.t() + head.bias
    out = head(h)
    torch.testing.assert_close(torch.cat(list(out), dim=-1), theta)


def test_feature_extraction_network():
    torch.manual_seed(0)
    net = FeatureExtractionNetwork(4, 2)
    assert [layer.lstm.directions for layer in net.layers] == [("t+", "t-", "f+", "f-")] * 2
    assert net.layers[0].proj.weight.shape == (4, 16)
    x = torch.randn(2, 3, 5, requires_grad=True)
    y = net(x)
    assert y.shape == (2, 3, 5, 4)
    y[0, 0, 0].sum().backward()  # non-causal: the first output sees the last input (no shift)
    assert x.grad[0, -1, -1] != 0 and not x.grad[1].any()


def test_tier_conditioning_layout():
    torch.manual_seed(0)
    tier = Tier(4, 1, 2, upsampling=True, feature_layers=1, n_speakers=3, speaker_dim=2, features_dim=5)
    assert tier.cond_dim == tier.network.cond_dim == 4 + 2 + 5
    context, feats = torch.randn(2, 3, 6), torch.randn(2, 3, 6, 5)
    z = tier.conditioning((2, 3, 6), context, torch.tensor([1, 2]), feats)
    assert z.shape == (2, 3, 6, 11)
    assert torch.equal(z[..., :4], tier.feature_net(context))
    assert torch.equal(z[1, 2, 5, 4:6], tier.speaker_embedding.weight[2])
    assert torch.equal(z[..., 6:], feats)
    initial = Tier(4, 1, 2, upsampling=False, feature_layers=1)
    assert initial.conditioning((2, 3, 6)) is None and not hasattr(initial, "feature_net")
