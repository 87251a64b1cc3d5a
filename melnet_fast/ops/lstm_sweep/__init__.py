"""The factorized 2D LSTM sweep: every direction of a MelNet layer in one op."""

from __future__ import annotations

from typing import Sequence

import torch
from torch.utils.checkpoint import checkpoint

from melnet_fast import backends
from melnet_fast.ops._checks import check_same, check_tensor
from melnet_fast.ops.lstm_sweep.cpp_backend import DIRECTION_CODES, lstm_sweep_2d_cpp
from melnet_fast.ops.lstm_sweep.naive import lstm_sweep_2d_ref

# Backends that implement this op and the devices they serve, fastest first (the order "auto" tries; on CUDA
# tensors "auto" times cuda against triton once per shape). Triton serves CPU tensors only in its interpreter.
SUPPORTED = {"cuda": {"cuda"}, "triton": {"cuda", "cpu"}, "cpu": {"cpu"}, "reference": {"cpu", "cuda"}}


def _check(x, w_ih, w_hh, bias, h0, c0, directions) -> tuple[int, int]:
    if isinstance(directions, str) or not isinstance(directions, Sequence):
        raise ValueError(f"directions must be a sequence of names among {list(DIRECTION_CODES)}, "
                         f"got {directions!r}")
    directions = list(directions)
    if not 1 <= len(directions) <= 4:
        raise ValueError(f"directions must hold 1 to 4 names, got {len(directions)}")
    for d in directions:
        if d not in DIRECTION_CODES:
            raise ValueError(f"directions: unknown direction {d!r}; expected names among {list(DIRECTION_CODES)}")
    if len(set(directions)) != len(directions):
        raise ValueError(f"directions must be distinct, got {directions}")
    R = len(directions)
    check_tensor("x", x, 4, layout=" [B, T, F, I]")
    I = x.shape[3]
    check_tensor("w_hh", w_hh, 3, layout=" [R, 4H, H]")
    H = w_hh.shape[2]
    check_tensor("w_hh", w_hh, 3, (R, 4 * H, H), layout=f" [R, 4H, H] with R={R} directions")
    check_tensor("w_ih", w_ih, 3, (R, 4 * H, I), layout=f" [R, 4H, I] (R={R}, H={H}, I={I} from x)")
    check_tensor("bias", bias, 2, (R, 4 * H), layout=f" [R, 4H] (R={R}, H={H})")
    check_tensor("h0", h0, 2, (R, H), layout=f" [R, H] (R={R}, H={H})")
    check_tensor("c0", c0, 2, (R, H), layout=f" [R, H] (R={R}, H={H})")
    check_same({"x": x, "w_ih": w_ih, "w_hh": w_hh, "bias": bias, "h0": h0, "c0": c0})
    return R, H


def _run(name, x, w_ih, w_hh, bias, h0, c0, directions):
    if name == "reference":
        return lstm_sweep_2d_ref(x, w_ih, w_hh, bias, h0, c0, directions)
    if name == "triton":
        from melnet_fast.ops.lstm_sweep.triton_backend import lstm_sweep_2d_triton  # imports triton: lazily

        return lstm_sweep_2d_triton(x, w_ih, w_hh, bias, h0, c0, directions)
    return lstm_sweep_2d_cpp(x, w_ih, w_hh, bias, h0, c0, directions)  # cpu and cuda: device dispatch


def _timed_run(x, w_ih, w_hh, bias, h0, c0, directions):
    """run(name) for backends.resolve: forward and backward of the op with backend `name` on these shapes."""
    def run(name):
        with backends.use_backend(name), torch.enable_grad():
            args = [t.detach().requires_grad_(t.requires_grad) for t in (x, w_ih, w_hh, bias, h0, c0)]
            y = _run(name, *args, directions)
            if y.requires_grad:
                y.backward(torch.ones_like(y))
    return run


def lstm_sweep_2d(x: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor, bias: torch.Tensor,
                  h0: torch.Tensor, c0: torch.Tensor, directions: Sequence[str],
                  recompute: bool = False) -> torch.Tensor:
    """Run R one-dimensional LSTMs over a 2D grid, all directions advancing together (max(T, F) steps).

    Args:
        x: [B, T, F, I] input features.
        w_ih: [R, 4H, I], w_hh: [R, 4H, H] input and recurrent weights, gates ordered (i, f, g, o) as nn.LSTM.
        bias: [R, 4H], the role of nn.LSTM's bias_ih + bias_hh.
        h0, c0: [R, H] initial state of every sequence of direction r.
        directions: R distinct names among "t+", "t-", "f+", "f-": forward / backward along time (one
            sequence per (b, f)) or along frequency (one sequence per (b, t)).
    Returns:
        [B, T, F, R*H]: channels r*H:(r+1)*H hold direction r's hidden state at (b, t, f) after consuming its
        sequence up to and including (t, f) in its own order.
        recompute: keep nothing of the sweep's internals (gates, cell states) for backward and run the forward
            again inside backward instead: about the op's internal memory for one more forward's time.

    Dtypes: float32 and float64 on the CPU; float32, bfloat16 and float16 on CUDA, where the cell state and every
    accumulation are float32 whatever the storage dtype.
    """
    R, H = _check(x, w_ih, w_hh, bias, h0, c0, directions)
    if not isinstance(recompute, bool):
        raise ValueError(f"recompute must be a bool, got {recompute!r}")
    B, T, F, _ = x.shape
    if B == 0 or T == 0 or F == 0:
        return x.new_zeros(B, T, F, R * H)
    directions = list(directions)
    run = _timed_run(x, w_ih, w_hh, bias, h0, c0, directions) if x.is_cuda else None
    name = backends.resolve("lstm_sweep_2d", x, SUPPORTED, shape_key=(tuple(x.shape), R, H, tuple(directions)),
                            run=run)
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (x, w_ih, w_hh, bias, h0, c0))
    if recompute and needs_grad:
        # Non-reentrant checkpoint: backward re-runs this forward (same backend) to rebuild what it needs.
        return checkpoint(_run, name, x, w_ih, w_hh, bias, h0, c0, directions, use_reentrant=False)
    return _run(name, x, w_ih, w_hh, bias, h0, c0, directions)


__all__ = ["lstm_sweep_2d", "lstm_sweep_2d_ref", "DIRECTION_CODES"]
