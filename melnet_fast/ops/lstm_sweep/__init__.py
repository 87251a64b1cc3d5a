"""The factorized 2D LSTM sweep: every direction of a MelNet layer in one op."""

from __future__ import annotations

from typing import Sequence

import torch

from melnet_fast.ops import dispatch
from melnet_fast.ops._checks import check_same, check_tensor
from melnet_fast.ops.lstm_sweep import recompute as segmented
from melnet_fast.ops.lstm_sweep.cpp_backend import DIRECTION_CODES
from melnet_fast.ops.lstm_sweep.reference import lstm_sweep_2d_ref

# The backends, fastest first (the order "auto" tries; melnet_fast.tune() may prefer cuda_gemm or triton to cuda per
# shape, and only from its measurements: without them "auto" runs cuda, the first design). cuda_gemm is the cuda
# backend's second design (gemm_backend.py). cpu and cuda are one function: the extension's op runs the kernel of the
# tensors' device.
OP = dispatch.register("lstm_sweep_2d", "x", [
    ("cuda", ["cuda"], "melnet_fast.ops.lstm_sweep.cpp_backend:lstm_sweep_2d_cpp"),
    ("cuda_gemm", ["cuda"], "melnet_fast.ops.lstm_sweep.gemm_backend:lstm_sweep_2d_gemm"),
    ("triton", ["cuda", "cpu"], "melnet_fast.ops.lstm_sweep.triton_backend:lstm_sweep_2d_triton"),
    ("cpu", ["cpu"], "melnet_fast.ops.lstm_sweep.cpp_backend:lstm_sweep_2d_cpp"),
    ("reference", ["cpu", "cuda"], "melnet_fast.ops.lstm_sweep.reference:lstm_sweep_2d_ref"),
])

# Each backend's sweep from per-line states, for the segmented recompute (recompute.py): the ops' per-line form.
# A new backend adds its row here and in OP.
SPANS = {
    "cuda": segmented.OpSpans(lambda *a: torch.ops.melnet_fast.lstm_sweep_2d_fwd(*a),
                              lambda *a: torch.ops.melnet_fast.lstm_sweep_2d_bwd(*a)),
    "cuda_gemm": segmented.OpSpans(lambda *a: torch.ops.melnet_fast.lstm_sweep_2d_fwd_gemm(*a),
                                   lambda *a: torch.ops.melnet_fast.lstm_sweep_2d_bwd_gemm(*a)),
    "triton": segmented.OpSpans(lambda *a: torch.ops.melnet_fast.lstm_sweep_2d_fwd_triton(*a),
                                lambda *a: torch.ops.melnet_fast.lstm_sweep_2d_bwd_triton(*a)),
    "reference": segmented.REFERENCE_SPANS,
}
SPANS["cpu"] = SPANS["cuda"]  # one op, the kernel of the tensors' device


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


def lstm_sweep_2d(x: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor, bias: torch.Tensor,
                  h0: torch.Tensor, c0: torch.Tensor, directions: Sequence[str],
                  recompute: bool | int = False) -> torch.Tensor:
    """Run R one-dimensional LSTMs over a 2D grid, all directions advancing together (as many steps as the longest
    direction has positions: max(T, F) when both axes are swept).

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
        recompute: True, or a span length k >= 1: keep no gates for backward, only every line's cell state at
            the end of every span of k positions (True: k = ceil(sqrt(L)) for a direction of L positions), and
            recompute the sweep in backward one span at a time (ops/lstm_sweep/recompute.py). The peak memory falls
            with k at the price of one more forward; each direction then runs on its own.

    Dtypes: float32 and float64 on the CPU; float32, bfloat16 and float16 on CUDA, where the cell state and every
    accumulation are float32 whatever the storage dtype.
    """
    R, H = _check(x, w_ih, w_hh, bias, h0, c0, directions)
    if not isinstance(recompute, int) or (not isinstance(recompute, bool) and recompute < 1):
        raise ValueError(f"recompute must be a bool or a span length >= 1, got {recompute!r}")
    B, T, F, _ = x.shape
    if B == 0 or T == 0 or F == 0:
        return x.new_zeros(B, T, F, R * H)
    args = (x, w_ih, w_hh, bias, h0, c0, list(directions))
    backend = OP.choose(x, args, shape_key=(tuple(x.shape), R, H, tuple(directions)))
    fn = OP.function(backend)  # imports the backend's module, which registers its ops
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in args[:6])
    if recompute is not False and needs_grad:
        codes = [DIRECTION_CODES[d] for d in directions]
        return segmented.segmented_sweep(SPANS[backend], *args[:6], codes, None if recompute is True else recompute)
    return fn(*args)


__all__ = ["lstm_sweep_2d", "lstm_sweep_2d_ref", "DIRECTION_CODES"]
