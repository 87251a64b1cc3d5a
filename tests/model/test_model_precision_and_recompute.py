"""Mixed precision and recomputation at the model level: bf16 autocast, SweepLSTM.recompute, sample(weight_dtype)."""

import pytest
import torch

import melnet_fast
from melnet_fast import ops
from melnet_fast.modules import SweepLSTM
from tests.model.helpers import random_model, random_spectrogram, tiny_config


def _grads(module, x):
    x = x.detach().requires_grad_(True)
    y = module(x)
    weights = torch.randn(y.shape, generator=torch.Generator().manual_seed(5), dtype=y.dtype)
    (y * weights).sum().backward()
    return [y.detach(), x.grad] + [p.grad.clone() for p in module.parameters()]


@pytest.mark.parametrize("mode", [True, 2])
@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_sweep_recompute_gives_the_same_values_and_gradients(backend, mode):
    # float64: the segmented recompute sums the gradients span by span, so only the order of the sums differs.
    torch.manual_seed(0)
    sweep = SweepLSTM(3, 5, ["t+", "f-", "f+"]).double()
    with torch.no_grad():
        sweep.h0.normal_()
        sweep.c0.normal_()
    x = torch.randn(2, 4, 3, 3, dtype=torch.float64)
    with melnet_fast.use_backend(backend):
        want = _grads(sweep, x)
        sweep.zero_grad()
        sweep.recompute = mode
        got = _grads(sweep, x)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-12)


def test_sweep_recompute_must_be_a_bool_or_a_span_length():
    args = [torch.randn(1, 2, 2, 3), torch.randn(1, 8, 3), torch.randn(1, 8, 2), torch.randn(1, 8),
            torch.randn(1, 2), torch.randn(1, 2)]
    with pytest.raises(ValueError, match="recompute must be a bool or a span length >= 1"):
        ops.lstm_sweep_2d(*args, ["t+"], recompute=0)


def test_loss_under_bf16_autocast_runs_in_bf16_and_stays_close():
    """Under autocast the sweeps run in bf16 and the loss in float32: finite, near the float32 loss, and the
    gradients reach the float32 parameters."""
    config = tiny_config()
    model = random_model(config, dtype=torch.float32)
    x = random_spectrogram(2, 8, config.n_mels).float()
    want = model.loss(x)
    seen = []
    hook = model.tiers[0].network.time_layers[0].lstm.register_forward_hook(
        lambda mod, args, out: seen.append(out.dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = model.loss(x)
    hook.remove()
    assert seen == [torch.bfloat16]
    assert got.dtype == torch.float32 and torch.isfinite(got)
    # bf16 keeps 8 bits of mantissa: a relative error of a few 2^-8 on a loss of order 1 over a few layers.
    torch.testing.assert_close(got, want, rtol=0.05, atol=0.05)
    got.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)


def test_sample_weight_dtype_other_than_the_models_needs_the_cuda_sampler():
    config = tiny_config()
    model = random_model(config, dtype=torch.float32)
    with pytest.raises(ValueError, match="only the cuda backend"):
        model.sample(1, 8, weight_dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="weight_dtype must be"):
        model.sample(1, 8, weight_dtype=torch.int8)
    # The model's own dtype is accepted and changes nothing.
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(model.sample(1, 8, generator=g1, weight_dtype=torch.float32),
                       model.sample(1, 8, generator=g2))
