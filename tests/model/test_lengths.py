"""Variable-length batches: with `lengths`, padded positions contribute nothing.

The oracle is the model run on each example alone, unpadded: the batched loss must equal the element-weighted
mean of the examples' own NLLs (forward and every gradient), whatever the padding holds and however long it is.
"""

import pytest
import torch

import melnet_fast
from melnet_fast.lengths import length_mask, reverse_within
from melnet_fast.modules import FeatureExtractionNetwork, SweepLSTM
from melnet_fast.multiscale import crop_lengths, tier_lengths, tier_shapes
from tests.model.helpers import BACKENDS, random_cond, random_model, random_spectrogram, tiny_config

F = 16


def padded(x: torch.Tensor, lengths, T: int, seed: int = 1, fill: float | None = None) -> torch.Tensor:
    """x [B, >=T, F] cut to T frames, with every frame at or after lengths[b] replaced by random values (or
    `fill`)."""
    x = x[:, :T].clone()
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(x.shape, generator=g, dtype=x.dtype) * 5 if fill is None else torch.full_like(x, fill)
    mask = length_mask(torch.as_tensor(lengths), T)[:, :, None]
    return torch.where(mask, x, noise)


def per_example_nll(model, x, lengths, tiers, cond=None):
    """Sum of the NLLs of each example alone (cropped to a multiple of time_factor) and their element count."""
    c = model.config
    total, count = 0.0, 0
    for b, L in enumerate(lengths):
        L = L - L % c.time_factor
        shapes = tier_shapes(L, F, c.n_tiers)
        cond_b = None
        if cond is not None:
            cond_b = {k: (v[b:b + 1] if k == "speaker" else v[b:b + 1, :L]) for k, v in cond.items()}
        for g in tiers:
            n = shapes[g - 1][0] * shapes[g - 1][1]
            total = total + model.loss(x[b:b + 1, :L], cond_b, tiers=[g]) * n
            count += n
    return total, count


def grads(loss, tensors):
    return torch.autograd.grad(loss, tensors, allow_unused=True)


CASES = [
    pytest.param(3, [8, 4, 6], 10, id="3tiers-L8,4,6-T10"),
    pytest.param(5, [12, 7, 5], 12, id="5tiers-cropped-L12,7,5-T12"),  # time_factor 4: 7 -> 4, 5 -> 4
    pytest.param(4, [4, 10, 2], 14, id="4tiers-L4,10,2-T14"),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("G,lengths,T", CASES)
def test_loss_is_the_mean_over_real_elements(backend, G, lengths, T):
    config = tiny_config(n_tiers=G, layers=(2,) + (1,) * (G - 1))
    model = random_model(config)
    x = random_spectrogram(len(lengths), 16, F)
    L = torch.tensor(lengths)
    params = list(model.parameters())
    with melnet_fast.use_backend(backend):
        for tiers in [list(range(1, G + 1)), [1], [G]]:
            xp = padded(x, lengths, T).requires_grad_(True)
            loss = model.loss(xp, tiers=tiers, lengths=L)
            xs = x.detach().clone().requires_grad_(True)
            total, count = per_example_nll(model, xs, lengths, tiers)
            expected = total / count
            torch.testing.assert_close(loss, expected, rtol=1e-10, atol=1e-12)
            got_grads = grads(loss, params + [xp])
            want_grads = grads(expected, params + [xs])
            for a, b in zip(got_grads[:-1], want_grads[:-1]):
                if b is None:
                    assert a is None or not a.any()
                else:
                    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
            gx = got_grads[-1]
            real = length_mask(crop_lengths(L, G), T)[:, :, None].expand_as(gx)
            torch.testing.assert_close(gx[real], want_grads[-1][:, :T][real], rtol=1e-9, atol=1e-12)
            assert not gx[~real].any(), "the padding received a gradient"


@pytest.mark.parametrize("backend", BACKENDS)
def test_padding_content_and_amount_do_not_matter(backend):
    config = tiny_config()
    model = random_model(config)
    lengths = torch.tensor([6, 2, 4])
    x = random_spectrogram(3, 16, F)
    params = list(model.parameters())
    with melnet_fast.use_backend(backend):
        ref = None
        for T, fill, seed in [(6, None, 1), (8, None, 2), (16, None, 3), (8, float("nan"), 0), (8, float("inf"), 0),
                              (10, 0.0, 0)]:
            xp = padded(x, lengths, T, seed=seed, fill=fill)
            loss = model.loss(xp, lengths=lengths)
            g = grads(loss, params)
            if ref is None:
                ref = (loss, g)
                continue
            assert torch.isfinite(loss)
            torch.testing.assert_close(loss, ref[0], rtol=1e-12, atol=0)
            for a, b in zip(g, ref[1]):
                torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-14)


def test_full_lengths_equal_no_lengths():
    model = random_model(tiny_config())
    x = random_spectrogram(2, 8, F)
    full = torch.tensor([8, 8])
    assert torch.equal(model.loss(x, lengths=full), model.loss(x))
    assert torch.equal(model.log_prob(x, lengths=full), model.log_prob(x))


@pytest.mark.parametrize("backend", BACKENDS)
def test_log_prob_and_forward_with_lengths(backend):
    config = tiny_config(n_tiers=5, layers=(1,) * 5)  # time_factor 4: lengths 9 -> 8, 5 -> 4
    model = random_model(config)
    lengths = [12, 9, 5]
    x = padded(random_spectrogram(3, 16, F), lengths, 16)
    L = torch.tensor(lengths)
    with melnet_fast.use_backend(backend):
        logp = model.log_prob(x, lengths=L)
        params = model(x, lengths=L)
        assert logp.shape == x.shape and all(p.shape == (3, 16, F, config.n_mixtures) for p in params)
        for b, n in enumerate(lengths):
            n -= n % 4
            torch.testing.assert_close(logp[b, :n], model.log_prob(x[b:b + 1, :n])[0], rtol=1e-10, atol=1e-12)
            assert not logp[b, n:].any()
            alone = model(x[b:b + 1, :n])
            for p, q in zip(params, alone):
                torch.testing.assert_close(p[b, :n], q[0], rtol=1e-10, atol=1e-12)
        # the loss is minus the mean of log_prob over the real elements
        torch.testing.assert_close(model.loss(x, lengths=L), -logp.sum() / (crop_lengths(L, 5).sum() * F))


@pytest.mark.parametrize("backend", BACKENDS)
def test_conditioned_model_with_lengths(backend):
    config = tiny_config(n_speakers=3, speaker_dim=2, cond_dim=2)
    model = random_model(config)
    lengths = [4, 8, 2]
    x = padded(random_spectrogram(3, 8, F), lengths, 8)
    cond = random_cond(config, 3, 8)
    cond["features"] = torch.where(length_mask(torch.tensor(lengths), 8)[:, :, None, None], cond["features"],
                                   torch.tensor(float("nan"), dtype=torch.float64))
    with melnet_fast.use_backend(backend):
        loss = model.loss(x, cond, lengths=torch.tensor(lengths))
        total, count = per_example_nll(model, x, lengths, [1, 2, 3], cond)
    torch.testing.assert_close(loss, total / count, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("directions", [("t+", "t-", "f+", "f-"), ("t-",), ("f-", "t-")])
def test_sweep_lstm_lengths_start_backward_directions_at_the_last_real_frame(backend, directions):
    """SweepLSTM with lengths == each example alone, on a non-contiguous input with random padding; forward
    and gradients. Directions without t- ignore lengths."""
    torch.manual_seed(0)
    m = SweepLSTM(3, 4, directions).double()
    with torch.no_grad():
        m.h0.normal_()
        m.c0.normal_()
    lengths = [5, 2, 7]
    base = torch.randn(3, 7, 5, 6, dtype=torch.float64, requires_grad=True)
    xp = base[..., ::2]  # non-contiguous [3, 7, 5, 3]
    xs = xp.detach().clone().requires_grad_(True)
    mask = length_mask(torch.tensor(lengths), 7)[:, :, None, None]
    with melnet_fast.use_backend(backend):
        y = m(xp, torch.tensor(lengths))
        w = torch.randn_like(y)
        loss = (torch.where(mask, y, 0) * w).sum()
        alone = sum((m(xs[b:b + 1, :n]) * w[b:b + 1, :n]).sum() for b, n in enumerate(lengths))
        params = list(m.parameters())
        got, want = grads(loss, params + [base]), grads(alone, params + [xs])
        torch.testing.assert_close(loss, alone, rtol=1e-10, atol=1e-12)
        for a, b in zip(got[:-1], want[:-1]):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
        gx = got[-1][..., ::2]
        torch.testing.assert_close(gx, want[-1], rtol=1e-9, atol=1e-12)
        assert not gx[~mask.expand_as(gx)].any()
    x = xp.detach()
    plain = SweepLSTM(3, 4, ("t+", "f+", "f-")).double()
    assert torch.equal(plain(x, torch.tensor(lengths)), plain(x))


@pytest.mark.parametrize("backend", BACKENDS)
def test_feature_network_of_upsampling_tiers_ignores_padding(backend):
    """The non-causal feature-extraction network: features of real frames are those of the example alone, for
    any padding content (no zeroing in between: the module itself must not read it)."""
    torch.manual_seed(0)
    net = FeatureExtractionNetwork(4, 2).double()
    for layer in net.layers:
        with torch.no_grad():
            layer.lstm.h0.normal_()
            layer.lstm.c0.normal_()
    lengths = [3, 6, 1]
    ctx = torch.randn(3, 6, 5, dtype=torch.float64)
    with melnet_fast.use_backend(backend):
        out_a = net(padded(ctx, lengths, 6, seed=1), torch.tensor(lengths))
        out_b = net(padded(ctx, lengths, 6, seed=2), torch.tensor(lengths))
        for b, n in enumerate(lengths):
            alone = net(ctx[b:b + 1, :n])[0]
            torch.testing.assert_close(out_a[b, :n], alone, rtol=1e-10, atol=1e-12)
            torch.testing.assert_close(out_b[b, :n], alone, rtol=1e-10, atol=1e-12)


def test_reverse_within_is_an_involution_keeping_padding_in_place():
    x = torch.arange(2 * 5 * 3).reshape(2, 5, 3).float()
    lengths = torch.tensor([3, 5])
    r = reverse_within(x, lengths)
    assert torch.equal(r[0, :3], x[0, :3].flip(0)) and torch.equal(r[0, 3:], x[0, 3:])
    assert torch.equal(r[1], x[1].flip(0))
    assert torch.equal(reverse_within(r, lengths), x)
    assert torch.equal(reverse_within(x.transpose(1, 2), lengths, dim=2), r.transpose(1, 2))


def test_tier_lengths_follow_the_tier_grids():
    for G in (2, 3, 4, 5, 6):
        for L in range(1, 20):
            cropped = int(crop_lengths(torch.tensor([L]), G))
            factor = 2 ** ((G - 1) // 2)
            assert cropped == L - L % factor
            if cropped:
                shapes = tier_shapes(cropped, 32, G)
                assert [int(t) for t in tier_lengths(torch.tensor([L]), G)] == [s[0] for s in shapes]


@pytest.mark.parametrize("lengths,msg", [
    pytest.param([4.0, 2.0], r"lengths must be an integer tensor of shape \[2\]", id="float"),
    pytest.param([4], r"lengths must be an integer tensor of shape \[2\]", id="shape"),
    pytest.param([4, 6], r"lengths must lie in \[2, 4\]", id="too-long"),
    pytest.param([4, 1], r"lengths must lie in \[2, 4\].*time_factor=2", id="too-short"),
])
def test_bad_lengths(lengths, msg):
    model = random_model(tiny_config())
    x = random_spectrogram(2, 4, F)
    for call in (model, model.log_prob, model.loss):
        with pytest.raises(ValueError, match=msg):
            call(x, lengths=torch.tensor(lengths))
    with pytest.raises(ValueError, match="lengths must be an integer tensor"):
        model.loss(x, lengths=[4, 4])


def test_nan_at_a_real_position_is_still_an_error():
    model = random_model(tiny_config())
    x = random_spectrogram(2, 4, F)
    x[1, 1, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf.*real positions"):
        model.loss(x, lengths=torch.tensor([4, 2]))
    x[1, 1, 3] = 0.0
    x[1, 2, 3] = float("nan")
    assert torch.isfinite(model.loss(x, lengths=torch.tensor([4, 2])))
