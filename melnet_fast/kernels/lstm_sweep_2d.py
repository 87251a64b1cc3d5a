"""Triton kernels of the fused 2D LSTM sweep (melnet_fast.ops.lstm_sweep_2d): one forward step and one backward
step of every direction per launch.

Rows. Every per-position tensor is addressed by the row of its grid position, row = (b*T + t)*F + f, i.e. the
flattened [B, T, F] index of the contiguous tensors this module allocates or receives:
    pre [rows, R*4H], y [rows, R*H], grad_y [rows, R*H], dgates [rows, R*4H], gates [R, rows, 4H], cell [R, rows, H].
Direction r has N lines of length L. Line n at position p sits at row (n // D)*T*F + (n % D)*M + p*P, with
    time (t+, t-):      N = B*F, L = T, line n = b*F + f:  D = F, M = 1, P = F
    frequency (f+, f-): N = B*T, L = F, line n = b*T + t:  D = T, M = F, P = 1
(check: time, (b*T*F + f) + t*F = (b*T + t)*F + f; frequency, b*T*F + t*F + f). At step s a '+' direction is at
position s and a '-' direction at L-1-s. N, L, D, M, P and a '-' flag are the per-direction metadata, a small
int32 tensor [R, 6] (direction_meta).

Programs. Grid (line tiles, hidden-unit tiles, directions). A program owns BLOCK_N lines x BLOCK_J units j of one
direction and computes all four gate columns (j, H+j, 2H+j, 3H+j) of them, so the LSTM pointwise update is fused
into the tile products: forward [BLOCK_N, H] x [H, 4 x BLOCK_J], backward [BLOCK_N, 4H] x [4H, BLOCK_J]. A step
reads only rows of the previous (forward) or next (backward) position, written by the previous launch, and
writes rows of the current position: programs of one launch never read what another writes.

Precision: storage float32, bfloat16 or float16; cell state, gate math and every accumulation float32. float32
tile products run in exact fp32 (input_precision="ieee", never TF32). Activations from scalar_math, the twin of
csrc/scalar_math.h. The host around these kernels (projections, step loop, gradients) is
melnet_fast.ops.lstm_sweep.gpu_host, shared with the cuda backend.
"""

from __future__ import annotations

import functools
import os

import torch
import triton
import triton.language as tl

from melnet_fast.kernels import scalar_math as sm

# Upper limits of the tile sizes (each tile is the next power of two of its extent, at least 16: tl.dot needs
# every dimension >= 16; rows / columns beyond the extent are masked); float32 halves the depth limit "k". Tiles of
# 64 lines x 32 units run 8 warps. Compiled for sm_90 (Triton 3.6, ptxas -v) that takes 76-127 registers a thread
# when H is a multiple of 16 and up to 255 otherwise, never spilling; 4 warps take 140-255 and spill. Not yet timed:
# a starting point for benchmarks to tune. The tests lower the limits to 16 to run several tiles per dimension.
BLOCK_LIMITS = {"n": 64, "j": 32, "k": 64}


def interpreting() -> bool:
    """True under Triton's CPU interpreter (TRITON_INTERPRET=1)."""
    return os.environ.get("TRITON_INTERPRET") == "1"


@functools.lru_cache(maxsize=64)
def _meta_cached(codes: tuple[int, ...], B: int, T: int, F: int, device: torch.device) -> torch.Tensor:
    rows = []
    for code in codes:
        if code < 2:  # time: one line per (b, f)
            rows.append([B * F, T, F, 1, F, code % 2])
        else:  # frequency: one line per (b, t)
            rows.append([B * T, F, T, F, 1, code % 2])
    return torch.tensor(rows, dtype=torch.int32, device=device)


def direction_meta(codes, B: int, T: int, F: int, device) -> torch.Tensor:
    """int32 [R, 6]: per direction (codes 0..3 = t+, t-, f+, f-) N lines, length L, D, M, P (see the module
    docstring) and REV (1 for '-'). Cached per shape and device: every launch of a sweep reads the same tensor."""
    return _meta_cached(tuple(int(c) for c in codes), B, T, F, torch.device(device))


def _block(extent: int, limit: int) -> int:
    return max(16, min(limit, triton.next_power_of_2(extent)))


def _fp32_dot(dtype: torch.dtype) -> bool:
    # float32 storage always multiplies in exact fp32. Triton 3.6's interpreter multiplies the raw bit patterns of
    # bfloat16 tl.dot operands (results near 1e10; triton-lang/triton#11584, unsupported upstream), so there bf16
    # tiles are widened to fp32 first: the same result, since products of bf16 values are exact in fp32 and the
    # GPU's bf16 tensor-core product accumulates in fp32 as well.
    return dtype == torch.float32 or (dtype == torch.bfloat16 and interpreting())


# ----------------------------------------------------------------------------------------------- jit helpers


@triton.jit
def _dot_acc(a, b, acc, FP32_DOT: tl.constexpr):
    """acc + a @ b, accumulated in fp32: exact fp32 products for FP32_DOT, else the native bf16/fp16 product."""
    if FP32_DOT:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision="ieee")
    else:
        return tl.dot(a, b, acc)


@triton.jit
def _direction(meta_ptr, r):
    """The metadata row of direction r: N, L, D, M, P, REV (int32 scalars)."""
    m = meta_ptr + r * 6
    return tl.load(m), tl.load(m + 1), tl.load(m + 2), tl.load(m + 3), tl.load(m + 4), tl.load(m + 5)


# ----------------------------------------------------------------------------------------------- forward step


@triton.jit(do_not_specialize=["s"])
def _fwd_step_kernel(
    pre_ptr,  # [rows, R*4H] input projections + bias (x.dtype)
    w_hh_ptr,  # [R, 4H, H] contiguous
    h0_ptr, c0_ptr,  # [R, H] contiguous
    meta_ptr,  # int32 [R, 6]
    y_ptr,  # [rows, R*H] output (x.dtype): h of the current position written, of the previous one read
    c_run_ptr,  # fp32 [R, N_MAX, H] running cell state of every line
    gates_ptr,  # [R, rows, 4H] activated gates (x.dtype), written when SAVE
    cell_ptr,  # fp32 [R, rows, H] cell states, written when SAVE
    s, TF, ROWS, N_MAX, H, R,
    FIRST: tl.constexpr,  # s == 0: h_prev = h0, c_prev = c0 for every direction
    SAVE: tl.constexpr, FP32_DOT: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_J: tl.constexpr, BLOCK_K: tl.constexpr,
):
    pid_n = tl.program_id(0)
    pid_j = tl.program_id(1)
    r = tl.program_id(2)
    N, L, D, M, P, REV = _direction(meta_ptr, r)
    if s >= L:  # this direction has finished: its lines are shorter than the longest direction's
        return
    if pid_n * BLOCK_N >= N:  # the grid covers the direction with the most lines
        return
    p = s + REV * (L - 1 - 2 * s)  # position at step s: s for '+', L-1-s for '-'
    step = 1 - 2 * REV  # +1 for '+', -1 for '-': the previous position is p - step
    r64 = r.to(tl.int64)
    H4 = 4 * H
    n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    n_ok = n < N
    line = (n // D).to(tl.int64) * TF + (n % D).to(tl.int64) * M  # row of position 0 of each line
    row = line + p.to(tl.int64) * P
    j = pid_j * BLOCK_J + tl.arange(0, BLOCK_J)
    j_ok = j < H
    ok = n_ok[:, None] & j_ok[None, :]

    # Recurrent term: [BLOCK_N, H] h_prev times w_hh[r, k*H + j, :]^T for the four gates k, over H in chunks.
    if FIRST:
        h_rows = h0_ptr + r64 * H + tl.zeros([BLOCK_N], dtype=tl.int64)  # every line starts from h0[r]
    else:
        h_rows = y_ptr + (line + (p - step).to(tl.int64) * P) * (R * H) + r64 * H
    w_base = w_hh_ptr + r64 * H4 * H
    acc_i = tl.zeros([BLOCK_N, BLOCK_J], dtype=tl.float32)
    acc_f = tl.zeros([BLOCK_N, BLOCK_J], dtype=tl.float32)
    acc_g = tl.zeros([BLOCK_N, BLOCK_J], dtype=tl.float32)
    acc_o = tl.zeros([BLOCK_N, BLOCK_J], dtype=tl.float32)
    for k0 in range(0, H, BLOCK_K):
        m = k0 + tl.arange(0, BLOCK_K)
        m_ok = m < H
        h = tl.load(h_rows[:, None] + m[None, :], mask=n_ok[:, None] & m_ok[None, :], other=0.0)
        w_at = w_base + j[None, :] * H + m[:, None]  # [BLOCK_K, BLOCK_J] = w_hh[r, j, m] transposed
        w_ok = m_ok[:, None] & j_ok[None, :]
        acc_i = _dot_acc(h, tl.load(w_at, mask=w_ok, other=0.0), acc_i, FP32_DOT)
        acc_f = _dot_acc(h, tl.load(w_at + H * H, mask=w_ok, other=0.0), acc_f, FP32_DOT)
        acc_g = _dot_acc(h, tl.load(w_at + 2 * H * H, mask=w_ok, other=0.0), acc_g, FP32_DOT)
        acc_o = _dot_acc(h, tl.load(w_at + 3 * H * H, mask=w_ok, other=0.0), acc_o, FP32_DOT)

    # Gates and the cell update, all in fp32.
    pre_at = pre_ptr + row[:, None] * (R * H4) + r64 * H4 + j[None, :]
    gi = sm.sigmoid(acc_i + tl.load(pre_at, mask=ok, other=0.0).to(tl.float32))
    gf = sm.sigmoid(acc_f + tl.load(pre_at + H, mask=ok, other=0.0).to(tl.float32))
    gg = sm.tanh(acc_g + tl.load(pre_at + 2 * H, mask=ok, other=0.0).to(tl.float32))
    go = sm.sigmoid(acc_o + tl.load(pre_at + 3 * H, mask=ok, other=0.0).to(tl.float32))
    c_at = c_run_ptr + (r64 * N_MAX + n[:, None]) * H + j[None, :]
    if FIRST:
        c_prev = tl.load(c0_ptr + r64 * H + j, mask=j_ok, other=0.0).to(tl.float32)[None, :]
    else:
        c_prev = tl.load(c_at, mask=ok, other=0.0)
    c = gf * c_prev + gi * gg
    h_new = go * sm.tanh(c)
    tl.store(c_at, c, mask=ok)
    tl.store(y_ptr + row[:, None] * (R * H) + r64 * H + j[None, :], h_new.to(y_ptr.dtype.element_ty), mask=ok)
    if SAVE:
        g_at = gates_ptr + (r64 * ROWS + row[:, None]) * H4 + j[None, :]
        gdt = gates_ptr.dtype.element_ty
        tl.store(g_at, gi.to(gdt), mask=ok)
        tl.store(g_at + H, gf.to(gdt), mask=ok)
        tl.store(g_at + 2 * H, gg.to(gdt), mask=ok)
        tl.store(g_at + 3 * H, go.to(gdt), mask=ok)
        tl.store(cell_ptr + (r64 * ROWS + row[:, None]) * H + j[None, :], c, mask=ok)


# ----------------------------------------------------------------------------------------------- backward step


@triton.jit(do_not_specialize=["s"])
def _bwd_step_kernel(
    grad_y_ptr,  # [rows, R*H] upstream gradient
    w_hh_ptr,  # [R, 4H, H] contiguous
    c0_ptr,  # [R, H]
    meta_ptr,  # int32 [R, 6]
    gates_ptr,  # [R, rows, 4H] activated gates saved by the forward
    cell_ptr,  # fp32 [R, rows, H] cell states saved by the forward
    dgates_ptr,  # [rows, R*4H] output: pre-activation gate gradients (written here, read at the next position)
    dc_ptr,  # fp32 [R, N_MAX, H] cell-gradient carry of every line (read from the step after the line's last on)
    s, TF, ROWS, N_MAX, H, R,
    FIRST: tl.constexpr,  # s == 0: c_prev = c0 for every direction
    FP32_DOT: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_J: tl.constexpr, BLOCK_K: tl.constexpr,
):
    pid_n = tl.program_id(0)
    pid_j = tl.program_id(1)
    r = tl.program_id(2)
    N, L, D, M, P, REV = _direction(meta_ptr, r)
    if s >= L:
        return
    if pid_n * BLOCK_N >= N:
        return
    p = s + REV * (L - 1 - 2 * s)
    step = 1 - 2 * REV  # the next position is p + step, the previous p - step
    r64 = r.to(tl.int64)
    H4 = 4 * H
    n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    n_ok = n < N
    line = (n // D).to(tl.int64) * TF + (n % D).to(tl.int64) * M
    row = line + p.to(tl.int64) * P
    j = pid_j * BLOCK_J + tl.arange(0, BLOCK_J)
    j_ok = j < H
    ok = n_ok[:, None] & j_ok[None, :]

    # dh = grad_y + dgates(next position) [BLOCK_N, 4H] @ w_hh[r][:, j] [4H, BLOCK_J]; no next at the last step.
    acc = tl.zeros([BLOCK_N, BLOCK_J], dtype=tl.float32)
    if s < L - 1:
        dg_rows = dgates_ptr + (line + (p + step).to(tl.int64) * P) * (R * H4) + r64 * H4
        w_base = w_hh_ptr + r64 * H4 * H
        for k0 in range(0, H4, BLOCK_K):
            k = k0 + tl.arange(0, BLOCK_K)
            k_ok = k < H4
            a = tl.load(dg_rows[:, None] + k[None, :], mask=n_ok[:, None] & k_ok[None, :], other=0.0)
            w = tl.load(w_base + k[:, None] * H + j[None, :], mask=k_ok[:, None] & j_ok[None, :], other=0.0)
            acc = _dot_acc(a, w, acc, FP32_DOT)
    dh = acc + tl.load(grad_y_ptr + row[:, None] * (R * H) + r64 * H + j[None, :], mask=ok, other=0.0).to(
        tl.float32)

    g_at = gates_ptr + (r64 * ROWS + row[:, None]) * H4 + j[None, :]
    gi = tl.load(g_at, mask=ok, other=0.0).to(tl.float32)
    gf = tl.load(g_at + H, mask=ok, other=0.0).to(tl.float32)
    gg = tl.load(g_at + 2 * H, mask=ok, other=0.0).to(tl.float32)
    go = tl.load(g_at + 3 * H, mask=ok, other=0.0).to(tl.float32)
    c = tl.load(cell_ptr + (r64 * ROWS + row[:, None]) * H + j[None, :], mask=ok, other=0.0)
    if FIRST:
        c_prev = tl.load(c0_ptr + r64 * H + j, mask=j_ok, other=0.0).to(tl.float32)[None, :]
    else:
        prev = line + (p - step).to(tl.int64) * P
        c_prev = tl.load(cell_ptr + (r64 * ROWS + prev[:, None]) * H + j[None, :], mask=ok, other=0.0)

    dc_at = dc_ptr + (r64 * N_MAX + n[:, None]) * H + j[None, :]
    tc = sm.tanh(c)
    carry = tl.load(dc_at, mask=ok & (s < L - 1), other=0.0)  # nothing flows back into a line's last step
    dc = carry + dh * go * (1.0 - tc * tc)
    d_i = dc * gg * gi * (1.0 - gi)
    d_f = dc * c_prev * gf * (1.0 - gf)
    d_g = dc * gi * (1.0 - gg * gg)
    d_o = dh * tc * go * (1.0 - go)
    tl.store(dc_at, dc * gf, mask=ok)  # after the first step (s = 0) this is d/dc0 of the line
    d_at = dgates_ptr + row[:, None] * (R * H4) + r64 * H4 + j[None, :]
    ddt = dgates_ptr.dtype.element_ty
    tl.store(d_at, d_i.to(ddt), mask=ok)
    tl.store(d_at + H, d_f.to(ddt), mask=ok)
    tl.store(d_at + 2 * H, d_g.to(ddt), mask=ok)
    tl.store(d_at + 3 * H, d_o.to(ddt), mask=ok)


# ----------------------------------------------------------------------------------------------- launchers


def _launch_config(n_max: int, H: int, k_extent: int, R: int, dtype: torch.dtype):
    """Grid (line tiles, unit tiles, directions) and the tile sizes / warps of one step launch."""
    k_limit = BLOCK_LIMITS["k"] // (2 if dtype == torch.float32 else 1)
    bn, bj, bk = _block(n_max, BLOCK_LIMITS["n"]), _block(H, BLOCK_LIMITS["j"]), _block(k_extent, k_limit)
    warps = 8 if bn * bj >= 64 * 32 else 4
    return (triton.cdiv(n_max, bn), triton.cdiv(H, bj), R), dict(BLOCK_N=bn, BLOCK_J=bj, BLOCK_K=bk, num_warps=warps)


def forward_step(step: int, pre, w_hh, h0, c0, y, c_run, gates, cell, codes, save: bool) -> None:
    """Step `step` of every direction, one launch (the StepKernels contract of melnet_fast.ops.lstm_sweep.gpu_host).

    pre [B, T, F, R*4H] input projections plus bias; w_hh [R, 4H, H]; h0, c0 [R, H]; y [B, T, F, R*H] (all of one
    dtype: float32, bfloat16 or float16, contiguous); c_run float32 [R, lines_max, H]; gates [R, B, T, F, 4H] and
    cell float32 [R, B, T, F, H], written when save (any tensor otherwise). codes: R direction codes (0..3 = t+, t-,
    f+, f-).
    """
    B, T, F, _ = pre.shape
    R, _, H = w_hh.shape
    grid, config = _launch_config(c_run.shape[1], H, H, R, pre.dtype)
    if not save:  # never written (SAVE is a compile-time False); any valid pointer will do
        gates, cell = y, c_run
    _fwd_step_kernel[grid](pre, w_hh, h0, c0, direction_meta(codes, B, T, F, pre.device), y, c_run, gates, cell,
                           step, T * F, B * T * F, c_run.shape[1], H, R,
                           FIRST=step == 0, SAVE=save, FP32_DOT=_fp32_dot(pre.dtype), **config)


def backward_step(step: int, grad_y, w_hh, c0, gates, cell, dgates, dc_run, codes) -> None:
    """Backward step `step` of every direction, one launch (gpu_host's StepKernels contract): grad_y
    [B, T, F, R*H], w_hh [R, 4H, H], c0 [R, H], gates [R, B, T, F, 4H] (one dtype), cell float32 [R, B, T, F, H]
    in; dgates [B, T, F, R*4H] (the gradient of the gate pre-activations) and dc_run float32 [R, lines_max, H] (the
    gradient reaching each line's previous cell state) written at the step's positions."""
    B, T, F, _ = grad_y.shape
    R, G, H = w_hh.shape
    grid, config = _launch_config(dc_run.shape[1], H, G, R, grad_y.dtype)
    _bwd_step_kernel[grid](grad_y, w_hh, c0, direction_meta(codes, B, T, F, grad_y.device), gates, cell, dgates,
                           dc_run, step, T * F, B * T * F, dc_run.shape[1], H, R,
                           FIRST=step == 0, FP32_DOT=_fp32_dot(grad_y.dtype), **config)
