"""The step of the second GPU sweep design (backend "cuda_gemm"): per step, the recurrent product of every active
direction as one GEMM over all of that direction's lines (cuBLAS through torch, bf16/fp16 operands with float32
results), then one fused epilogue kernel for every active direction (csrc/cuda/lstm_epilogue.cuh: gates, cell and
hidden update, y and the saved states written). It is a gpu_host.StepKernels, so the one GPU host runs it: the input
projections, the step loop and the weight gradients (dx, dW_ih, dW_hh over all steps as large GEMMs) are the host's.

Why: the fused step kernel of the first design (lstm_step.cuh) reads each direction's W_hh once per 32-line tile;
a GEMM over all lines reads it a few times per step at cuBLAS's tensor-core rate (csrc/cuda/lstm_epilogue.cuh says
more, README.md's GPU section gives the prediction per phase).

An Epilogue (the CUDA ops, or the CPU emulator in tests/cuda_emulation) takes the products as a list with one
float32 tensor per direction (module doc of lstm_epilogue.cuh): forward [lines_r, 4H] (at step 0 one row,
h0[r] @ w_hh[r]^T, shared by every line), backward [lines_r, H]; an empty tensor where the direction reads none.
"""

from __future__ import annotations

from typing import Protocol, Sequence

import torch

from melnet_fast.ops.lstm_sweep.gpu_host import mm_f32


class Epilogue(Protocol):
    def forward(self, rec: list, pre, c0, y, c_run, gates, cell, codes: Sequence[int], step: int,
                save: bool) -> None: ...

    def backward(self, rec: list, grad_y, c0, gates, cell, dgates, dc_run, codes: Sequence[int],
                 step: int) -> None: ...


def lines_at(t: torch.Tensor, code: int, step: int) -> torch.Tensor:
    """Every line's row of t [B, T, F, C] at the position direction `code` reaches at `step` -> [lines, C] (a view
    when the rows are evenly spaced, as along frequency; a copy of one row per line otherwise)."""
    dim = 1 if code < 2 else 2
    L = t.shape[dim]
    rows = t.select(dim, step if code % 2 == 0 else L - 1 - step)
    return rows.reshape(-1, t.shape[3])


class GemmSteps:
    """gpu_host.StepKernels of the cuda_gemm design over an Epilogue."""

    def __init__(self, epilogue: Epilogue):
        self.epilogue = epilogue

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
