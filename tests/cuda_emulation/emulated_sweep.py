"""The cuda backend of lstm_sweep_2d with its step kernels run by the emulator: the package's own GPU host
(melnet_fast/ops/lstm_sweep/gpu_host.py, the code that runs on a GPU: projections, step loop, gradient GEMMs, dh0,
dc0) over step kernels that the harness executable runs on the real kernel source, one process per step. Buffers
travel through files in a scratch folder; the harness guards them and checks that a step writes no input."""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from melnet_fast.ops.lstm_sweep import gpu_host
from melnet_fast.ops.lstm_sweep.gemm_steps import GemmSteps

DTYPE_NAMES = {torch.float32: "f32", torch.bfloat16: "bf16", torch.float16: "f16"}
_BITS = {torch.float32: (torch.int32, np.int32), torch.bfloat16: (torch.int16, np.int16),
         torch.float16: (torch.int16, np.int16)}


class EmulatorError(AssertionError):
    """The emulated kernels broke a CUDA rule or a harness check (the message is the harness's)."""


def run_harness(exe: Path, args: Sequence, timeout: float = 120) -> None:
    """Runs the harness executable; EmulatorError with its message when it reports a failed check or crashes."""
    proc = subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        rc = proc.returncode
        what = (f"killed by signal {-rc} (a crash is most likely a memory access far out of bounds)" if rc < 0
                else f"exit status {rc}")
        raise EmulatorError(f"{exe.name} {' '.join(map(str, args))}: {what}\n{proc.stderr.strip()}")


def write_tensor(t: torch.Tensor, path: Path) -> None:
    t.detach().contiguous().view(_BITS[t.dtype][0]).numpy().tofile(path)


def read_tensor(path: Path, dtype: torch.dtype, shape: Sequence[int]) -> torch.Tensor:
    bits = torch.from_numpy(np.fromfile(path, dtype=_BITS[dtype][1]))
    return bits.view(dtype).reshape(tuple(shape))


def run_step(exe: Path, workdir: Path, mode: str, args: list, inputs: dict, in_out: dict) -> None:
    """Runs `exe mode *args` with "DIR" in args replaced by a new scratch folder holding the tensors as NAME.bin:
    inputs are checked unchanged by the harness, in_out are written back in place."""
    folder = Path(tempfile.mkdtemp(prefix=f"{mode}-", dir=workdir))
    for name, t in {**inputs, **in_out}.items():
        write_tensor(t, folder / f"{name}.bin")
    run_harness(exe, [mode, *(folder if a == "DIR" else a for a in args)])
    for name, t in in_out.items():
        t.copy_(read_tensor(folder / f"{name}.bin", t.dtype, t.shape))


@dataclass
class EmulatedSweep:
    """gpu_host.StepKernels run by the emulator. exe: a harness executable from build_emulator.build; order: thread
    order between barriers (0 in order, 1 reversed, 2 shuffled); poison: the byte filling shared memory at the start
    of every block."""

    exe: Path
    workdir: Path
    order: int = 0
    poison: int = 0xFF

    def _step(self, mode: str, args: list, codes: Sequence[int], inputs: dict, in_out: dict) -> None:
        run_step(self.exe, self.workdir, mode, [*args, "DIR", *codes], inputs, in_out)

    def forward_step(self, step, pre, w_hh, h0, c0, y, c_run, gates, cell, codes, save):
        B, T, F, _ = y.shape
        H = w_hh.shape[2]
        in_out = {"y": y, "c_run": c_run, **({"gates": gates, "cell": cell} if save else {})}
        self._step("fwd_step", [DTYPE_NAMES[y.dtype], B, T, F, H, self.order, self.poison, int(save), step], codes,
                   {"pre": pre, "w_hh": w_hh, "h0": h0, "c0": c0}, in_out)

    def backward_step(self, step, grad_y, w_hh, c0, gates, cell, dgates, dc_run, codes):
        B, T, F, _ = grad_y.shape
        H = w_hh.shape[2]
        self._step("bwd_step", [DTYPE_NAMES[grad_y.dtype], B, T, F, H, self.order, self.poison, step], codes,
                   {"grad_y": grad_y, "w_hh": w_hh, "gates": gates, "cell": cell, "c0": c0},
                   {"dgates": dgates, "dc_run": dc_run})

    def forward(self, x, w_ih, w_hh, bias, h0, c0, codes: Sequence[int], save: bool = True):
        """lstm_sweep_2d_fwd as the cuda backend runs it: y [B, T, F, R*H], gates [R, B, T, F, 4H] (x's dtype) and
        cell [R, B, T, F, H] float32 (both empty when save is False)."""
        return gpu_host.forward(self, x, w_ih, w_hh, bias, h0, c0, list(codes), save)

    def backward(self, grad_y, x, w_ih, w_hh, h0, c0, y, gates, cell, codes: Sequence[int], dh_last=None,
                 dc_last=None):
        """lstm_sweep_2d_bwd as the cuda backend runs it: the gradients of x, w_ih, w_hh, bias, h0, c0."""
        return gpu_host.backward(self, grad_y, x, w_ih, w_hh, h0, c0, y, gates, cell, list(codes), dh_last, dc_last)


@dataclass
class EmulatedEpilogue:
    """gemm_steps.Epilogue run by the emulator: the second design's epilogue kernels (csrc/cuda/lstm_epilogue.cuh)
    on the products the package's GemmSteps computed with torch (the GEMMs that cuBLAS runs on a GPU)."""

    exe: Path
    workdir: Path
    order: int = 0
    poison: int = 0xFF

    def _run(self, mode, args, rec, codes, inputs, in_out):
        products = {f"rec{r}": t for r, t in enumerate(rec) if t.numel() > 0}
        rows = [t.shape[0] if t.numel() > 0 else 0 for t in rec]
        run_step(self.exe, self.workdir, mode, [*args, "DIR", len(codes), *codes, *rows], {**products, **inputs},
                 in_out)

    def forward(self, rec, pre, c0, y, c_run, gates, cell, codes, step, save):
        B, T, F, _ = y.shape
        H = c0.shape[1]
        in_out = {"y": y, "c_run": c_run, **({"gates": gates, "cell": cell} if save else {})}
        self._run("fwd_epilogue", [DTYPE_NAMES[y.dtype], B, T, F, H, self.order, self.poison, int(save), step], rec,
                  codes, {"pre": pre, "c0": c0}, in_out)

    def backward(self, rec, grad_y, c0, gates, cell, dgates, dc_run, codes, step):
        B, T, F, _ = grad_y.shape
        H = c0.shape[1]
        self._run("bwd_epilogue", [DTYPE_NAMES[grad_y.dtype], B, T, F, H, self.order, self.poison, step], rec, codes,
                  {"grad_y": grad_y, "gates": gates, "cell": cell, "c0": c0}, {"dgates": dgates, "dc_run": dc_run})


@dataclass
class EmulatedNarrow:
    """gemm_steps.Narrow run by the grid emulator (emu_sweep_narrow.cpp: every block a set of fibers, the flag
    checker on): the narrow phase's persistent kernels at the emulator's tile of 32 lines x 16 units, with at most
    `capacity` blocks (the emulator runs 16384 threads: 64 blocks of 256)."""

    exe: Path
    workdir: Path
    order: int = 0
    poison: int = 0xFF
    capacity_blocks: int = 64
    runs: list = None  # (direction, s_begin, s_end) of every launch, for the tests

    def capacity(self, dtype, H):
        return self.capacity_blocks, 32, 16

    def _record(self, *what):
        if self.runs is not None:
            self.runs.append(what)

    def forward(self, pre, w_hh, y, c_run, gates, cell, arrivals, codes, s_begin, s_end, save):
        B, T, F, _ = y.shape
        self._record("fwd", s_begin, s_end)
        run_step(self.exe, self.workdir, "fwd",
                 [DTYPE_NAMES[y.dtype], B, T, F, w_hh.shape[2], self.order, self.poison, int(save), s_begin, s_end,
                  "DIR", len(codes), *codes],
                 {"w_hh": w_hh, "pre": pre},
                 {"y": y, "c_run": c_run, **({"gates": gates, "cell": cell} if save else {})})

    def backward(self, grad_y, w_hh, gates, cell, dgates, dc_run, arrivals, codes, s_begin, s_end):
        B, T, F, _ = grad_y.shape
        self._record("bwd", s_begin, s_end)
        run_step(self.exe, self.workdir, "bwd",
                 [DTYPE_NAMES[grad_y.dtype], B, T, F, w_hh.shape[2], self.order, self.poison, s_begin, s_end, "DIR",
                  len(codes), *codes],
                 {"w_hh": w_hh, "grad_y": grad_y, "gates": gates, "cell": cell}, {"dgates": dgates, "c_run": dc_run})


class EmulatedGemmSweep(GemmSteps):
    """The cuda_gemm backend with its epilogues (and, given narrow, its narrow phase) run by the emulator: the
    package's GemmSteps (the step's GEMMs in torch) and GPU host, as on a GPU."""

    def __init__(self, exe: Path, workdir: Path, order: int = 0, poison: int = 0xFF,
                 narrow: EmulatedNarrow | None = None):
        super().__init__(EmulatedEpilogue(exe, workdir, order, poison), narrow)

    def forward(self, x, w_ih, w_hh, bias, h0, c0, codes: Sequence[int], save: bool = True):
        return gpu_host.forward(self, x, w_ih, w_hh, bias, h0, c0, list(codes), save)

    def backward(self, grad_y, x, w_ih, w_hh, h0, c0, y, gates, cell, codes: Sequence[int], dh_last=None,
                 dc_last=None):
        return gpu_host.backward(self, grad_y, x, w_ih, w_hh, h0, c0, y, gates, cell, list(codes), dh_last, dc_last)
