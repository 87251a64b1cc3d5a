"""Segmented recomputation of lstm_sweep_2d (recompute=True), written once for every backend.

Forward: each direction runs alone, span after span of k positions along its axis, keeping nothing but y (the
output) and the cell states of its lines at the end of every span but the last (the checkpoints: about L/k x
[lines, H]). Backward, per direction, spans from last to first: run the span's forward again from its checkpoint
(h from y, c from the checkpoint) keeping its gates, run its backward with the gradients carried in from the
later span (dh, dc of the span's last position), add its share of dx and of the weight gradients, and carry
the gradients of its initial state to the earlier span. At any time only one span's gates, cell states and gate
gradients live: the peak falls with k, at the price of one more forward. k defaults to ceil(sqrt(L)), which
balances the checkpoints (L/k) against one span's buffers (a few times k).

A backend takes part through a Spans object: its own fused forward and backward from per-line initial states
(OpSpans over the ops' per-line form, registration.py; ReferenceSpans for the reference backend).
"""

from __future__ import annotations

import math
from typing import Callable, Protocol, Sequence

import torch

from melnet_fast.ops.lstm_sweep.reference import sweep_lines_ref

NAMES = ("t+", "t-", "f+", "f-")  # direction codes 0..3


class Spans(Protocol):
    """One backend's sweep of one direction (code 0..3) from per-line initial states h, c [lines, H]; x [B, T, F, I],
    w_ih [4H, I], w_hh [4H, H], bias [4H] of that direction."""

    def forward(self, x, w_ih, w_hh, bias, h, c, code: int) -> tuple[torch.Tensor, torch.Tensor]:
        """-> y [B, T, F, H] and the lines' last cell states [lines, H]."""

    def backward(self, x, w_ih, w_hh, bias, h, c, code: int, grad_y, dh_last, dc_last) -> tuple:
        """The forward again, then its gradients given grad_y [B, T, F, H] and dh_last, dc_last [lines, H] (or
        None) reaching the lines' last h and c from beyond -> dx, dw_ih, dw_hh, dbias, dh, dc (dh, dc [lines, H]:
        the gradients of the initial states)."""


def _lines(t: torch.Tensor, dim: int, index: int) -> torch.Tensor:
    """Every line's row at one position: t [B, T, F, C] at index of dim (1: time, 2: frequency) -> [lines, C]."""
    s = t.select(dim, index)
    return s.reshape(s.shape[0] * s.shape[1], s.shape[2])


def _last_index(code: int, n: int) -> int:
    """Index along its axis of a direction's last position in a span of n positions."""
    return 0 if code % 2 else n - 1


def _one(t):
    """[lines, H] -> [1, lines, H] (None stays None): the ops' per-line form of one direction."""
    return None if t is None else t[None]


class OpSpans:
    """Spans from a pair of forward / backward functions with the signatures of the sweep ops (registration.py),
    called with one direction and per-line states."""

    def __init__(self, fwd: Callable, bwd: Callable):
        self.fwd, self.bwd = fwd, bwd

    def _forward(self, x, w_ih, w_hh, bias, h, c, code):
        return self.fwd(x, w_ih[None], w_hh[None], bias[None], h[None], c[None], [code], True)

    def forward(self, x, w_ih, w_hh, bias, h, c, code):
        y, _, cell = self._forward(x, w_ih, w_hh, bias, h, c, code)
        dim = 1 if code < 2 else 2
        return y, _lines(cell[0], dim, _last_index(code, x.shape[dim]))

    def backward(self, x, w_ih, w_hh, bias, h, c, code, grad_y, dh_last, dc_last):
        y, gates, cell = self._forward(x, w_ih, w_hh, bias, h, c, code)
        dx, dw_ih, dw_hh, dbias, dh, dc = self.bwd(grad_y.contiguous(), x, w_ih[None], w_hh[None], h[None], c[None], y,
                                                   gates, cell, [code], _one(dh_last), _one(dc_last))
        return dx, dw_ih[0], dw_hh[0], dbias[0], dh[0], dc[0]


class ReferenceSpans:
    """Spans of the reference backend: torch's LSTM, its gradients by autograd."""

    @staticmethod
    def forward(x, w_ih, w_hh, bias, h, c, code):
        return sweep_lines_ref(x, w_ih, w_hh, bias, h, c, NAMES[code])

    @staticmethod
    def backward(x, w_ih, w_hh, bias, h, c, code, grad_y, dh_last, dc_last):
        leaves = [t.detach().requires_grad_() for t in (x, w_ih, w_hh, bias, h, c)]
        with torch.enable_grad():
            y, c_last = sweep_lines_ref(*leaves, NAMES[code])
            outs, grads = [y], [grad_y]
            if dh_last is not None:  # the last h is y at the last position: its carried gradient joins grad_y
                dim = 1 if code < 2 else 2
                outs.append(_lines(y, dim, _last_index(code, x.shape[dim])))
                grads.append(dh_last.to(y.dtype))
            if dc_last is not None:
                outs.append(c_last)
                grads.append(dc_last.to(c_last.dtype))
            return torch.autograd.grad(outs, leaves, grads, allow_unused=True)


REFERENCE_SPANS = ReferenceSpans()


def segment_length(steps: int, segment: int | None = None) -> int:
    """Positions per span of a direction of `steps` positions: segment when given (at most steps), else
    ceil(sqrt(steps))."""
    if segment is not None:
        return max(1, min(segment, steps))
    return max(1, math.isqrt(max(steps - 1, 0)) + 1)


def spans_of(code: int, L: int, k: int) -> list[tuple[int, int]]:
    """The spans of a direction of L positions in its own order, as (first index along the axis, length): steps
    [a, a + k) are positions a.. for '+', L - a - n.. for '-'."""
    spans = []
    for a in range(0, L, k):
        n = min(k, L - a)
        spans.append((a if code % 2 == 0 else L - a - n, n))
    return spans


class _SegmentedSweep(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w_ih, w_hh, bias, h0, c0, codes, spans, segment):
        B, T, F, _ = x.shape
        R, _, H = w_hh.shape
        y = x.new_empty(B, T, F, R * H)
        checkpoints = []
        for r, code in enumerate(codes):
            dim = 1 if code < 2 else 2
            lines = B * T * F // x.shape[dim]
            y_r = y[..., r * H:(r + 1) * H]
            h, c = h0[r].expand(lines, H), c0[r].expand(lines, H)
            kept = []
            for lo, n in spans_of(code, x.shape[dim], segment_length(x.shape[dim], segment)):
                y_s, c = spans.forward(x.narrow(dim, lo, n), w_ih[r], w_hh[r], bias[r], h, c, code)
                y_r.narrow(dim, lo, n).copy_(y_s)
                h = _lines(y_s, dim, _last_index(code, n))
                kept.append(c)
            checkpoints.append(torch.stack(kept[:-1]) if len(kept) > 1 else c.new_empty(0, lines, H))
        ctx.codes, ctx.spans, ctx.segment = list(codes), spans, segment
        ctx.save_for_backward(x, w_ih, w_hh, bias, h0, c0, y, *checkpoints)
        return y

    @staticmethod
    def backward(ctx, grad_y):
        x, w_ih, w_hh, bias, h0, c0, y, *checkpoints = ctx.saved_tensors
        spans = ctx.spans
        B, T, F, _ = x.shape
        R, _, H = w_hh.shape
        acc = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
        dx = torch.zeros(x.shape, dtype=acc, device=x.device)
        dw_ih, dw_hh, dbias = (torch.zeros(t.shape, dtype=acc, device=x.device) for t in (w_ih, w_hh, bias))
        dh0, dc0 = torch.zeros(R, H, dtype=acc, device=x.device), torch.zeros(R, H, dtype=acc, device=x.device)
        for r, code in enumerate(ctx.codes):
            dim = 1 if code < 2 else 2
            L = x.shape[dim]
            lines = B * T * F // L
            y_r, grad_r = y[..., r * H:(r + 1) * H], grad_y[..., r * H:(r + 1) * H]
            dh = dc = None
            spans_r = spans_of(code, L, segment_length(L, ctx.segment))
            for j in reversed(range(len(spans_r))):
                lo, n = spans_r[j]
                if j == 0:
                    h, c = h0[r].expand(lines, H), c0[r].expand(lines, H)
                else:  # the state after the earlier span: h in y at the position before this span's first
                    h, c = _lines(y_r, dim, lo - 1 if code % 2 == 0 else lo + n), checkpoints[r][j - 1]
                g = spans.backward(x.narrow(dim, lo, n), w_ih[r], w_hh[r], bias[r], h, c, code,
                                   grad_r.narrow(dim, lo, n), dh, dc)
                dx.narrow(dim, lo, n).add_(g[0])
                for total, part in zip((dw_ih[r], dw_hh[r], dbias[r]), g[1:4]):
                    total.add_(part)
                dh, dc = g[4], g[5]
            dh0[r], dc0[r] = dh.sum(0), dc.sum(0)
        return (dx.to(x.dtype), dw_ih.to(w_ih.dtype), dw_hh.to(w_hh.dtype), dbias.to(bias.dtype), dh0.to(h0.dtype),
                dc0.to(c0.dtype), None, None, None)


@torch.compiler.disable
def segmented_sweep(spans: Spans, x, w_ih, w_hh, bias, h0, c0, codes: Sequence[int],
                    segment: int | None = None) -> torch.Tensor:
    """lstm_sweep_2d (x [B, T, F, I], w_ih [R, 4H, I], w_hh [R, 4H, H], bias [R, 4H], h0, c0 [R, H], R direction
    codes -> y [B, T, F, R*H]) whose backward recomputes the sweep span by span (module doc); segment: positions
    per span (None: ceil(sqrt(L)) for a direction of L positions). Runs eagerly under torch.compile."""
    return _SegmentedSweep.apply(x, w_ih, w_hh, bias, h0, c0, list(codes), spans, segment)
