"""The step of the second GPU sweep design (backend "cuda_gemm"): per step, the recurrent product of every active
direction as one GEMM over all of that direction's lines (cuBLAS through torch, bf16/fp16 operands with float32
results), then one fused epilogue kernel for every active direction (csrc/cuda/lstm_epilogue.cuh: gates, cell and
hidden update, y and the saved states written). It is a gpu_host.StepKernels, so the one GPU host runs it: the input
projections, the step loop and the weight gradients (dx, dW_ih, dW_hh over all steps as large GEMMs) are the host's.

Why: the fused step kernel of the first design (lstm_step.cuh) reads each direction's W_hh once per 32-line tile;
a GEMM over all lines reads it a few times per step at cuBLAS's tensor-core rate (csrc/cuda/lstm_epilogue.cuh says
more, README.md's GPU section gives the prediction per phase).

The narrow phase: once only the directions of one axis are left (steps F..T-1 of a T > F sweep over t+ f+ f-), the
steps run in one persistent launch each way (csrc/cuda/lstm_narrow.cuh: W_hh slices resident in shared memory,
blocks synchronised by flags), given a Narrow (the CUDA ops, or the emulator) and when all its blocks fit the device
at once; otherwise every step is a wide one.

An Epilogue (the CUDA ops, or the CPU emulator in tests/cuda_emulation) takes the products as a list with one
float32 tensor per direction (module doc of lstm_epilogue.cuh): forward [lines_r, 4H] (at step 0 one row,
h0[r] @ w_hh[r]^T, shared by every line), backward [lines_r, H]; an empty tensor where the direction reads none.
"""

from __future__ import annotations

from typing import Protocol, Sequence

import torch

from melnet_fast.ops.lstm_sweep.gpu_host import line_counts, mm_f32, sweep_steps


class Epilogue(Protocol):
    def forward(self, rec: list, pre, c0, y, c_run, gates, cell, codes: Sequence[int], step: int,
                save: bool) -> None: ...

    def backward(self, rec: list, grad_y, c0, gates, cell, dgates, dc_run, codes: Sequence[int],
                 step: int) -> None: ...


class Narrow(Protocol):
    def capacity(self, dtype: torch.dtype, H: int) -> tuple[int, int, int]:
        """(blocks that can be resident at once, lines per block, units per block)."""

    def forward(self, pre, w_hh, y, c_run, gates, cell, arrivals, codes: Sequence[int], s_begin: int, s_end: int,
                save: bool) -> None: ...

    def backward(self, grad_y, w_hh, gates, cell, dgates, dc_run, arrivals, codes: Sequence[int], s_begin: int,
                 s_end: int) -> None: ...


def narrow_start(codes: Sequence[int], T: int, F: int) -> int:
    """The first step at which only directions of one axis are active (at least 1: step 0 reads h0 and is a wide
    step), or the sweep's step count when there is none (T = F with both axes swept)."""
    steps = sweep_steps(codes, T, F)
    lengths = [T if c < 2 else F for c in codes]
    if len({c < 2 for c, L in zip(codes, lengths) if L == steps}) > 1:
        return steps
    return max([1] + [L for L in lengths if L < steps])


def lines_at(t: torch.Tensor, code: int, step: int) -> torch.Tensor:
    """Every line's row of t [B, T, F, C] at the position direction `code` reaches at `step` -> [lines, C] (a view
    when the rows are evenly spaced, as along frequency; a copy of one row per line otherwise)."""
    dim = 1 if code < 2 else 2
    L = t.shape[dim]
    rows = t.select(dim, step if code % 2 == 0 else L - 1 - step)
    return rows.reshape(-1, t.shape[3])


class GemmSteps:
    """gpu_host.StepKernels of the cuda_gemm design over an Epilogue."""

    def __init__(self, epilogue: Epilogue, narrow: Narrow | None = None):
        self.epilogue, self.narrow = epilogue, narrow

    # ---- the narrow phase (gpu_host.NarrowPhase)
    def _narrow_grid(self, codes, B, T, F, H, dtype, start) -> tuple[int, int] | None:
        """(line blocks, blocks) of the narrow launch from `start`, or None when they cannot all be resident."""
        capacity, lines_per_block, units_per_block = self.narrow.capacity(dtype, H)
        active = [i for i, c in enumerate(codes) if (T if c < 2 else F) > start]
        line_blocks = -(-line_counts([codes[active[0]]], B, T, F)[0] // lines_per_block)
        blocks = line_blocks * -(-H // units_per_block) * len(active)
        return (line_blocks, blocks) if blocks <= capacity else None

    def wide_steps(self, codes, B, T, F, H, dtype) -> int:
        steps = sweep_steps(codes, T, F)
        if self.narrow is None:
            return steps
        start = narrow_start(codes, T, F)
        if start >= steps or self._narrow_grid(codes, B, T, F, H, dtype, start) is None:
            return steps
        return start

    def _arrivals(self, like, codes, H, s_begin) -> torch.Tensor:
        B, T, F = like.shape[:3]
        line_blocks, _ = self._narrow_grid(codes, B, T, F, H, like.dtype, s_begin)
        # The arrival counters of the narrow kernels (zeroed by the op before its launch; zero here for any Narrow).
        return torch.zeros(len(codes), line_blocks, dtype=torch.int32, device=like.device)

    def forward_narrow(self, s_begin, s_end, pre, w_hh, y, c_run, gates, cell, codes, save):
        arrivals = self._arrivals(y, codes, w_hh.shape[2], s_begin)
        self.narrow.forward(pre, w_hh, y, c_run, gates, cell, arrivals, codes, s_begin, s_end, save)

    def backward_narrow(self, s_begin, s_end, grad_y, w_hh, gates, cell, dgates, dc_run, codes):
        arrivals = self._arrivals(grad_y, codes, w_hh.shape[2], s_begin)
        self.narrow.backward(grad_y, w_hh, gates, cell, dgates, dc_run, arrivals, codes, s_begin, s_end)

    # ---- the wide phase (gpu_host.StepKernels)

    def forward_step(self, step, pre, w_hh, h0, c0, y, c_run, gates, cell, codes, save):
        _, T, F, _ = y.shape
        H = w_hh.shape[2]
        rec = []
        for r, code in enumerate(codes):
            if step >= (T if code < 2 else F):
                rec.append(_empty(y))
                continue
            h_prev = h0[r:r + 1] if step == 0 else lines_at(y, code, step - 1)[:, r * H:(r + 1) * H]
            rec.append(mm_f32(h_prev, w_hh[r].t()))
        self.epilogue.forward(rec, pre, c0, y, c_run, gates, cell, codes, step, save)

    def backward_step(self, step, grad_y, w_hh, c0, gates, cell, dgates, dc_run, codes):
        _, T, F, _ = grad_y.shape
        G = w_hh.shape[1]
        rec = []
        for r, code in enumerate(codes):
            if step >= (T if code < 2 else F) - 1:  # inactive, or its last step: no next step to read
                rec.append(_empty(grad_y))
                continue
            dg_next = lines_at(dgates, code, step + 1)[:, r * G:(r + 1) * G]
            rec.append(mm_f32(dg_next, w_hh[r]))
        self.epilogue.backward(rec, grad_y, c0, gates, cell, dgates, dc_run, codes, step)


def _empty(like: torch.Tensor) -> torch.Tensor:
    return like.new_empty(0, dtype=torch.float32)
