"""The host of the GPU backends of lstm_sweep_2d (cuda and triton), written once.

Forward: the input projections of every direction as one GEMM (pre = x @ w_ih^T + bias, [B, T, F, R*4H]), then the
step loop over the backend's fused forward step kernel. Backward: the step loop over its backward step kernel (the
gradient of pre, dgates), then dx, dw_ih, dw_hh and the sums for dbias, dh0, dc0, every one accumulated in float32.
A backend provides only its two step kernels (StepKernels: the cuda backend's ops of csrc/cuda/lstm_sweep_2d.cu,
the triton backend's kernels of melnet_fast.kernels.lstm_sweep_2d, the cuda_gemm design's GEMMs and epilogues of
gemm_steps.py, or the CUDA emulator of the tests), and optionally (NarrowPhase) a persistent kernel for the steps
where only one axis's directions are left. The CPU
backend keeps its own fused C++ host (csrc/lstm_sweep_2d_cpu.cpp) with the same step rule.

Buffers (N = B*T*F positions, row = (b*T + t)*F + f; G = 4H; gates i, f, g, o): pre, dgates [B, T, F, R*G] and
y, grad_y [B, T, F, R*H] in x's dtype; gates [R, B, T, F, G] in x's dtype and cell [R, B, T, F, H] float32 (kept
for backward); c_run, dc_run [R, lines_max, H] float32, the running cell state / cell gradient of every line.

The step rule (csrc/sweep_geometry.h, mirrored by sweep_steps below): all directions advance together, one
position per step, for as many steps as the longest direction has positions (max(T, F) when both axes are swept);
step s serves every direction whose length exceeds s, so no step is empty.

Per-line states (one direction, h0 / c0 [1, lines, H], the spans of the segmented recompute, recompute.py): the
grid is padded by one position at both ends of the direction's axis and only the steps of the real positions run.
The step before the first holds each line's h0 (in y) and c0 (in c_run and cell), so the kernels read them as any
previous position; the position after the last holds zero gate gradients and dc_run starts at dc_last, so the
backward kernels carry dh_last and dc_last in as from a later position. The step kernels need nothing new.
"""

from __future__ import annotations

import functools
from typing import Protocol, Sequence

import torch

from melnet_fast import _extension


class StepKernels(Protocol):
    """One backend's fused step kernels; each runs step s of every direction active at s, in place."""

    def forward_step(self, step: int, pre, w_hh, h0, c0, y, c_run, gates, cell, codes: Sequence[int],
                     save: bool) -> None:
        """Reads pre, w_hh, h0, c0 and (s > 0) the previous position's y and c_run; writes y, c_run and, when
        save, gates and cell at the step's positions."""

    def backward_step(self, step: int, grad_y, w_hh, c0, gates, cell, dgates, dc_run, codes: Sequence[int]) -> None:
        """Reads grad_y, gates, cell, c0 and the next position's dgates and dc_run; writes dgates and dc_run at the
        step's positions."""

    # Optionally (NarrowPhase): a persistent kernel for the steps after the first wide_steps(...) ones.


class NarrowPhase(Protocol):
    """StepKernels that run the last steps of a sweep (from wide_steps(...) on, where only one axis's directions
    are left) in one call each way: the cuda_gemm design's persistent kernels (gemm_steps.py)."""

    def wide_steps(self, codes: Sequence[int], B: int, T: int, F: int, H: int, dtype: torch.dtype) -> int:
        """The steps run one by one (forward_step / backward_step); the rest, if any, by the two methods below."""

    def forward_narrow(self, s_begin: int, s_end: int, pre, w_hh, y, c_run, gates, cell, codes: Sequence[int],
                       save: bool) -> None:
        """Steps s_begin..s_end-1 of forward_step at once."""

    def backward_narrow(self, s_begin: int, s_end: int, grad_y, w_hh, gates, cell, dgates, dc_run,
                        codes: Sequence[int]) -> None:
        """Steps s_end-1 down to s_begin of backward_step at once."""


def _wide_steps(kernels, codes: Sequence[int], B: int, T: int, F: int, H: int, dtype: torch.dtype) -> int:
    steps = sweep_steps(codes, T, F)
    wide = getattr(kernels, "wide_steps", None)
    return steps if wide is None else wide(codes, B, T, F, H, dtype)


def sweep_steps(codes: Sequence[int], T: int, F: int) -> int:
    """The steps of a sweep: the longest direction's length (codes 0, 1 run along time, 2, 3 along frequency)."""
    return max(T if c < 2 else F for c in codes)


def line_counts(codes: Sequence[int], B: int, T: int, F: int) -> list[int]:
    """Lines of each direction: B*F along time (one per (b, f)), B*T along frequency (one per (b, t))."""
    return [B * F if c < 2 else B * T for c in codes]


def _buffer(shape, dtype, device) -> torch.Tensor:
    """A buffer the step kernels fill; NaN when the extension's output poisoning is on (tests), so that an element
    no step writes shows up in the results."""
    t = torch.empty(shape, dtype=dtype, device=device)
    return t.fill_(float("nan")) if _extension.poisoning_outputs() else t


def mm_f32(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b accumulated and returned in float32 (exact fp32 for float32 inputs unless the caller enabled TF32)."""
    if a.dtype == torch.float32:
        return torch.mm(a, b)
    if a.is_cuda:  # cuBLAS with bf16/fp16 inputs and an fp32 result: no rounding of the sum to the input dtype
        return torch.mm(a, b, out_dtype=torch.float32)
    return torch.mm(a.float(), b.float())  # the CPU has no out_dtype matmul (interpreter and emulator tests)


def forward(kernels: StepKernels, x, w_ih, w_hh, bias, h0, c0, codes: Sequence[int], save: bool):
    """x [B, T, F, I], w_ih [R, 4H, I], w_hh [R, 4H, H], bias [R, 4H], h0, c0 [R, H] (or, for one direction,
    [1, lines, H]: every line's own initial state), R direction codes -> y [B, T, F, R*H] and, when save, gates
    [R, B, T, F, 4H] and cell [R, B, T, F, H] (float32), else two empty tensors."""
    if h0.dim() == 3:
        return _forward_from_lines(kernels, x, w_ih, w_hh, bias, h0, c0, codes, save)
    B, T, F, I = x.shape
    R, G, H = w_hh.shape
    device, dtype = x.device, x.dtype
    y = _buffer((B, T, F, R * H), dtype, device)
    gates = _buffer((R, B, T, F, G), dtype, device) if save else x.new_empty(0)
    cell = _buffer((R, B, T, F, H), torch.float32, device) if save else x.new_empty(0, dtype=torch.float32)
    if y.numel() == 0:
        return y, gates, cell
    pre = torch.addmm(bias.reshape(R * G), x.reshape(-1, I), w_ih.reshape(R * G, I).t()).view(B, T, F, R * G)
    c_run = _buffer((R, max(line_counts(codes, B, T, F)), H), torch.float32, device)
    w_hh, h0, c0 = w_hh.contiguous(), h0.contiguous(), c0.contiguous()
    steps, wide = sweep_steps(codes, T, F), _wide_steps(kernels, codes, B, T, F, H, dtype)
    for s in range(wide):
        kernels.forward_step(s, pre, w_hh, h0, c0, y, c_run, gates, cell, codes, save)
    if wide < steps:
        kernels.forward_narrow(wide, steps, pre, w_hh, y, c_run, gates, cell, codes, save)
    return y, gates, cell


def _first_rows(code: int, B: int, T: int, F: int) -> torch.Tensor:
    """int64 [lines]: the row of every line's first position (t = 0 for t+, T-1 for t-, f = 0 for f+, F-1 for
    f-), line n at index n."""
    if code < 2:
        t0 = 0 if code == 0 else T - 1
        b = torch.arange(B, dtype=torch.int64)[:, None]
        f = torch.arange(F, dtype=torch.int64)[None, :]
        return ((b * T + t0) * F + f).reshape(-1)
    f0 = 0 if code == 2 else F - 1
    return torch.arange(B * T, dtype=torch.int64) * F + f0


@functools.lru_cache(maxsize=64)
def _wrong_pairs(code: int, B: int, T: int, F: int, device: torch.device):
    """For the dw_hh product of one direction, cached per shape: the first-position rows q whose row P away (in the
    direction of the previous position: q - P for '+', q + P for '-'; P = F along time, 1 along frequency) lies
    inside the grid, and that row, which belongs to another line."""
    first = _first_rows(code, B, T, F)
    P = F if code < 2 else 1
    wrong = first[first >= P] if code % 2 == 0 else first[first + P < B * T * F]
    partner = wrong - P if code % 2 == 0 else wrong + P
    return wrong.to(device), partner.to(device)


def _interior_dw_hh(dg: torch.Tensor, yr: torch.Tensor, code: int, B: int, T: int, F: int) -> torch.Tensor:
    """sum over the non-first positions q of a direction of outer(dg[q], yr[prev(q)]) -> float32 [4H, H].

    dg [N, 4H] and yr [N, H] are the direction's column slices of dgates and y; prev(q) = q - P for '+', q + P for
    '-'. One GEMM over the shifted 2D views (no copy of dgates or y) pairs every row with the row P away; the only
    wrong pairs are those of first positions (the row P away ends another line), subtracted with a GEMM over at
    most one row per line."""
    if (T if code < 2 else F) == 1:  # every position is a first position: no recurrent product at all
        return dg.new_zeros(dg.shape[1], yr.shape[1], dtype=torch.float32)
    P = F if code < 2 else 1
    wrong, partner = _wrong_pairs(code, B, T, F, dg.device)
    main = mm_f32(dg[P:].t(), yr[:-P]) if code % 2 == 0 else mm_f32(dg[:-P].t(), yr[P:])
    return main - mm_f32(dg[wrong].t(), yr[partner])


def backward(kernels: StepKernels, grad_y, x, w_ih, w_hh, h0, c0, y, gates, cell, codes: Sequence[int],
             dh_last=None, dc_last=None):
    """The gradients (dx, dw_ih, dw_hh, dbias, dh0, dc0), each in its input's dtype, of the forward that returned
    y, gates and cell (saved), given grad_y [B, T, F, R*H]. With per-line states (h0, c0 [1, lines, H]) dh0 and dc0
    are per line, float32, and dh_last, dc_last [1, lines, H] (or None: zero) are the gradients reaching each
    line's last h and c from beyond the grid."""
    if h0.dim() == 3 or dh_last is not None or dc_last is not None:
        return _backward_from_lines(kernels, grad_y, x, w_ih, w_hh, h0, c0, y, gates, cell, codes, dh_last,
                                    dc_last)
    B, T, F, I = x.shape
    R, G, H = w_hh.shape
    N = B * T * F
    device, dtype = x.device, x.dtype
    if N == 0 or H == 0:
        return tuple(torch.zeros_like(t) for t in (x, w_ih, w_hh)) + (w_hh.new_zeros(R, G),) + (
            torch.zeros_like(h0), torch.zeros_like(c0))
    lines = line_counts(codes, B, T, F)
    dgates = _buffer((B, T, F, R * G), dtype, device)
    dc_run = _buffer((R, max(lines), H), torch.float32, device)
    grad_y, w_hh_c, c0_c = grad_y.contiguous(), w_hh.contiguous(), c0.contiguous()
    gates, cell = gates.contiguous(), cell.contiguous()
    steps, wide = sweep_steps(codes, T, F), _wide_steps(kernels, codes, B, T, F, H, dtype)
    if wide < steps:
        kernels.backward_narrow(wide, steps, grad_y, w_hh_c, gates, cell, dgates, dc_run, codes)
    for s in reversed(range(wide)):
        kernels.backward_step(s, grad_y, w_hh_c, c0_c, gates, cell, dgates, dc_run, codes)

    dx, dw_ih, dw_hh, dbias, dh0 = _gradients(dgates, x, w_ih, w_hh, h0, y, codes)
    dc0 = [dc_run[r, :lines[r]].sum(0) for r in range(R)]  # after step 0: the gradient reaching each line's c0
    return dx, dw_ih, dw_hh, dbias, dh0.to(h0.dtype), torch.stack(dc0).to(c0.dtype)


def _gradients(dgates, x, w_ih, w_hh, h0, y, codes: Sequence[int]):
    """dx, dw_ih, dw_hh, dbias (their inputs' dtypes) and dh0 (float32) from the gate gradients dgates
    [B, T, F, R*G] of a sweep whose outputs are y and initial hidden states h0 [R, H]."""
    B, T, F, I = x.shape
    R, G, H = w_hh.shape
    N = B * T * F
    dg2 = dgates.view(N, R * G)
    dx = mm_f32(dg2, w_ih.reshape(R * G, I)).to(x.dtype).view(B, T, F, I)
    dw_ih = mm_f32(dg2.t(), x.reshape(N, I)).view(R, G, I).to(w_ih.dtype)
    dbias = dg2.sum(0, dtype=torch.float32).view(R, G).to(w_hh.dtype)
    dg5, y2 = dgates.view(B, T, F, R, G), y.reshape(N, R * H)
    dw_hh, dh0 = [], []
    for r, code in enumerate(codes):
        along_t, reverse = code < 2, code % 2 == 1
        # Every line's first position, a [B, F|T, G] view: h0 feeds it, so dh0 = (sum of its dgates) @ w_hh[r], and
        # its share of dw_hh pairs that sum with h0.
        first = dg5[:, :, :, r].select(1 if along_t else 2, (T if along_t else F) - 1 if reverse else 0)
        first_sum = first.sum((0, 1), dtype=torch.float32)
        dh0.append(first_sum @ w_hh[r].float())
        interior = _interior_dw_hh(dg2[:, r * G:(r + 1) * G], y2[:, r * H:(r + 1) * H], code, B, T, F)
        dw_hh.append(interior + torch.outer(first_sum, h0[r].float()))
    return dx, dw_ih, torch.stack(dw_hh).to(w_hh.dtype), dbias, torch.stack(dh0)


# ------------------------------------------------------------------ per-line states: the padded grid (module doc)

def _axis(code: int) -> int:
    """The dimension of [B, T, F, ...] a direction walks along: 1 (time) or 2 (frequency)."""
    return 1 if code < 2 else 2


def _padded(t: torch.Tensor, dim: int) -> torch.Tensor:
    """t with one zero position added at both ends of dim."""
    shape = list(t.shape)
    shape[dim] = 1
    pad = t.new_zeros(shape)
    return torch.cat([pad, t, pad], dim)


def _check_lines(codes: Sequence[int], h0, B: int, T: int, F: int) -> int:
    if len(codes) != 1:
        raise ValueError(f"per-line initial states take one direction, got {len(codes)}")
    lines = line_counts(codes, B, T, F)[0]
    if h0.dim() != 3 or h0.shape[:2] != (1, lines):
        raise ValueError(f"h0: per-line initial states must be [1, {lines}, H], got {tuple(h0.shape)}")
    return lines


def _forward_from_lines(kernels: StepKernels, x, w_ih, w_hh, bias, h0, c0, codes: Sequence[int], save: bool):
    B, T, F, _ = x.shape
    lines = _check_lines(codes, h0, B, T, F)
    code, dim = codes[0], _axis(codes[0])
    L = x.shape[dim]
    x_pad = _padded(x, dim)
    # The kernels' own h0 / c0 [1, H] (read only at step 0, which never runs) in the storage dtype they check.
    unused = x.new_zeros(1, h0.shape[2])
    y_pad, gates, cell = forward(_Preset(kernels, dim, code, L, h0[0], c0[0], lines), x_pad, w_ih, w_hh, bias,
                                 unused, unused, codes, save)
    y = y_pad.narrow(dim, 1, L).contiguous()
    if save:
        gates, cell = gates.narrow(dim + 1, 1, L).contiguous(), cell.narrow(dim + 1, 1, L).contiguous()
    return y, gates, cell


class _Preset:
    """StepKernels on the padded grid of one direction: before step 1 writes the lines' h0 into y and their c0
    into c_run (and cell) at the step-0 padding; runs only steps 1..L (the real positions)."""

    def __init__(self, kernels, dim, code, L, h_lines, c_lines, lines):
        self.kernels, self.dim, self.L, self.lines = kernels, dim, L, lines
        self.before = 0 if code % 2 == 0 else L + 1  # the padding the first real step reads as its previous
        self.h, self.c = h_lines, c_lines

    def forward_step(self, step, pre, w_hh, h0, c0, y, c_run, gates, cell, codes, save):
        if step == 0 or step > self.L:
            return
        if step == 1:
            y.select(self.dim, self.before).copy_(self.h.reshape(y.select(self.dim, self.before).shape))
            c_run[0, :self.lines].copy_(self.c)
        self.kernels.forward_step(step, pre, w_hh, h0, c0, y, c_run, gates, cell, codes, save)


def _backward_from_lines(kernels: StepKernels, grad_y, x, w_ih, w_hh, h0, c0, y, gates, cell, codes: Sequence[int],
                         dh_last, dc_last):
    B, T, F, _ = x.shape
    R, G, H = w_hh.shape
    if h0.dim() == 2:  # shared initial states with a carried-in final gradient: every line starts the same
        n = line_counts(codes, B, T, F)[0]
        h0, c0 = h0[:, None].expand(1, n, H), c0[:, None].expand(1, n, H)
    lines = _check_lines(codes, h0, B, T, F)
    code, dim = codes[0], _axis(codes[0])
    L = x.shape[dim]
    before, after = (0, L + 1) if code % 2 == 0 else (L + 1, 0)
    x_pad, y_pad = _padded(x, dim), _padded(y, dim)
    y_pad.select(dim, before).copy_(h0[0].reshape(y_pad.select(dim, before).shape))
    grad_y_pad = _padded(grad_y, dim)
    if dh_last is not None:  # the gradient reaching the last h joins grad_y there, rounded once to its dtype
        last = grad_y_pad.select(dim, after - 1 if code % 2 == 0 else after + 1)
        last.copy_(last.float() + dh_last[0].reshape(last.shape).float())
    gates_pad = _padded(gates.contiguous(), dim + 1)
    cell_pad = _padded(cell.contiguous(), dim + 1)
    cell_pad[0].select(dim, before).copy_(c0[0].reshape(cell_pad[0].select(dim, before).shape))
    dgates = _buffer(x_pad.shape[:3] + (G,), x.dtype, x.device)
    dgates.select(dim, before).zero_()
    dgates.select(dim, after).zero_()  # no gate gradient flows back from beyond the last position
    dc_run = torch.zeros(1, lines, H, dtype=torch.float32, device=x.device)
    if dc_last is not None:
        dc_run.copy_(dc_last)
    w_hh_c, unused = w_hh.contiguous(), x.new_zeros(1, H)  # c0 of the kernels: read only at step 0, not run
    for s in reversed(range(1, L + 1)):
        kernels.backward_step(s, grad_y_pad, w_hh_c, unused, gates_pad, cell_pad, dgates, dc_run, codes)
    # The padding's gate gradients are zero: the GEMMs over the padded grid are those of the real positions, and
    # dw_hh pairs the first real position with the h0 rows written into the padding of y.
    dx, dw_ih, dw_hh, dbias, _ = _gradients(dgates, x_pad, w_ih, w_hh, h0[:, 0], y_pad, codes)
    first = dgates.select(dim, 1 if code % 2 == 0 else L).reshape(lines, G)
    dh0 = mm_f32(first, w_hh[0])
    return dx.narrow(dim, 1, L).contiguous(), dw_ih, dw_hh, dbias, dh0[None], dc_run
