"""Inputs, runners and comparisons shared by the op tests."""

from __future__ import annotations

import math
from typing import Sequence

import torch

import melnet_fast
from melnet_fast.ops import gmm_nll, lstm_sweep_2d

SWEEP_ARGS = ("x", "w_ih", "w_hh", "bias", "h0", "c0")
SWEEP_RESULTS = ("y",) + tuple(f"d{name}" for name in SWEEP_ARGS)
GMM_ARGS = ("x", "mu", "log_sigma", "logit_pi")
GMM_RESULTS = ("nll",) + tuple(f"d{name}" for name in GMM_ARGS)
FLOOR_ULPS = 8  # see assert_error_within_reference


def make_sweep_inputs(B, T, F, I, H, R, dtype=torch.float64, seed=0) -> list[torch.Tensor]:
    """Random (never zero) x, w_ih, w_hh, bias, h0, c0. Weights are scaled by 1/sqrt(fan-in) so that the gates
    stay away from saturation and every gradient path carries signal."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(dtype)

    return [rand(B, T, F, I), rand(R, 4 * H, I, scale=1 / math.sqrt(I)), rand(R, 4 * H, H, scale=1 / math.sqrt(H)),
            rand(R, 4 * H, scale=0.5), rand(R, H, scale=0.5), rand(R, H, scale=0.5)]


def make_gmm_inputs(shape, K, dtype=torch.float64, seed=0) -> list[torch.Tensor]:
    """Random x [shape], mu, log_sigma, logit_pi [shape, K]; x lies among the components."""
    g = torch.Generator().manual_seed(seed)

    def rand(*s, scale=1.0):
        return (torch.randn(s, generator=g, dtype=torch.float64) * scale).to(dtype)

    return [rand(*shape, scale=1.5), rand(*shape, K), rand(*shape, K, scale=0.5), rand(*shape, K, scale=2.0)]


def random_like(t: torch.Tensor, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(t.shape, generator=g, dtype=torch.float64).to(device=t.device, dtype=t.dtype)


def _value_and_grads(op, backend: str, inputs: Sequence[torch.Tensor], extra=()) -> list[torch.Tensor]:
    leaves = [t.detach().requires_grad_() for t in inputs]  # detach keeps the strides (clone may not)
    with melnet_fast.use_backend(backend):
        out = op(*leaves, *extra)
    grads = torch.autograd.grad(out, leaves, random_like(out, seed=1234))
    return [out.detach()] + list(grads)


def sweep_value_and_grads(backend: str, inputs, directions, recompute=False) -> list[torch.Tensor]:
    """[y, dx, dw_ih, dw_hh, dbias, dh0, dc0] of lstm_sweep_2d with a fixed random upstream gradient."""
    return _value_and_grads(lstm_sweep_2d, backend, inputs, (list(directions), recompute))


def gmm_value_and_grads(backend: str, inputs) -> list[torch.Tensor]:
    """[nll, dx, dmu, dlog_sigma, dlogit_pi] of gmm_nll with a fixed random upstream gradient."""
    return _value_and_grads(gmm_nll, backend, inputs)


def _describe_worst(name: str, got: torch.Tensor, want: torch.Tensor, err: torch.Tensor, bad: torch.Tensor) -> str:
    flat = int(torch.nan_to_num(err, nan=math.inf).flatten().argmax())
    where = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), err.shape)) if err.dim() else ()
    return (f"{name}: {int(bad.sum())} of {bad.numel()} elements mismatch; worst at index {where}: "
            f"got {got.flatten()[flat].item()!r}, want {want.flatten()[flat].item()!r}, "
            f"abs error {err.flatten()[flat].item():.3e}; shape {tuple(got.shape)}")


def assert_close(name: str, got: torch.Tensor, want: torch.Tensor, rtol: float, atol: float) -> None:
    """|got - want| <= atol + rtol |want| everywhere (NaN anywhere fails); the message says where it is not."""
    assert got.shape == want.shape, f"{name}: shape {tuple(got.shape)} != {tuple(want.shape)}"
    assert got.dtype == want.dtype, f"{name}: dtype {got.dtype} != {want.dtype}"
    err = (got.double() - want.double()).abs()
    bad = ~(err <= atol + rtol * want.double().abs())  # NaN compares False, so it counts as bad
    assert not bad.any(), _describe_worst(name, got, want, err, bad)


def assert_error_within_reference(name: str, fast: torch.Tensor, ref_low: torch.Tensor, ref_high: torch.Tensor,
                                  factor: float = 2.0) -> None:
    """Low-precision test in the flash-attention style: the fast result's largest error against a float64
    reference may be at most `factor` times the largest error of the plain-PyTorch reference run in the same
    low precision, plus a floor of FLOOR_ULPS units in the last place of the tensor's largest value.

    The floor is there because the reference's error is one sample: on tensors of a few elements it can be
    0.4 ulp by luck where 3 ulps are just as correct (measured on the sweep cases over three seeds: both
    implementations land between 0.2 and 7 ulps of the largest value on every output and gradient). A wrong
    index or formula costs 1e3 ulps or more, and a kernel that drops to half precision about 3e4."""
    assert fast.shape == ref_high.shape, f"{name}: shape {tuple(fast.shape)} != {tuple(ref_high.shape)}"
    assert torch.isfinite(fast).all(), _describe_worst(
        name, fast, ref_high, (fast.double() - ref_high).abs(), ~torch.isfinite(fast))
    fast_err = (fast.double() - ref_high).abs()
    ref_err = (ref_low.double() - ref_high).abs().max().item()
    floor = FLOOR_ULPS * torch.finfo(fast.dtype).eps * ref_high.abs().max().item()
    bound = factor * ref_err + floor
    bad = fast_err > bound
    assert not bad.any(), (f"error {fast_err.max().item():.3e} above {factor} x reference error {ref_err:.3e} "
                           f"+ {floor:.1e}; " + _describe_worst(name, fast, ref_high, fast_err, bad))


def gmm_vs_float64(backend: str, inputs32):
    """(name, backend's float32 result, reference's float32 result, float64 reference on the same rounded
    inputs) for the value and every gradient of gmm_nll."""
    exact = gmm_value_and_grads("reference", [t.double() for t in inputs32])
    ref32 = gmm_value_and_grads("reference", inputs32)
    fast = gmm_value_and_grads(backend, inputs32)
    return list(zip(GMM_RESULTS, fast, ref32, exact))


def strided_sweep_inputs(inputs):
    """The same values as `inputs`, each held by a non-contiguous view of a larger tensor on the same device whose
    gaps are NaN (a kernel that reads a gap poisons its result): x strided on every axis but B and permuted,
    w_ih column-major, the others strided in their last dimension."""
    x, w_ih, w_hh, bias, h0, c0 = inputs
    B, T, F, I = x.shape
    R, G, H = w_hh.shape

    def gaps(*shape):
        return torch.full(shape, float("nan"), dtype=x.dtype, device=x.device)

    views = [gaps(B, F, 2 * T, I + 3)[:, :, ::2, 1:I + 1].transpose(1, 2),  # [B, T, F, I]
             gaps(R, I, G).transpose(1, 2),  # column-major [R, 4H, I]
             gaps(R, G, 3 * H)[:, :, H:2 * H],
             gaps(R, 2 * G)[:, ::2],
             gaps(H, R).t(),
             gaps(R + 1, H + 1)[1:, :H]]
    for name, v, t in zip(SWEEP_ARGS, views, inputs):
        v.copy_(t)
        assert not v.is_contiguous() and torch.equal(v, t), name
    return views
