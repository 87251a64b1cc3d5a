"""The CUDA backend of lstm_sweep_2d with its step kernels run by the emulator: the host side of
csrc/cuda/lstm_sweep_2d.cu (the input-projection GEMM, the weight and input gradient GEMMs, dh0 and dc0) redone
in torch on the CPU, around the forward and backward step loops that the harness executable runs on the real
kernel source. Buffers travel through files in a scratch folder."""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

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


def previous_hidden(y_r: torch.Tensor, h0_r: torch.Tensor, along_t: bool, reverse: bool) -> torch.Tensor:
    """previous_hidden of lstm_sweep_2d.cu: y_r [B, T, F, H] -> the h before each position along the direction
    (h0 at each line's first), [N, H]."""
    dim = 1 if along_t else 2
    L = y_r.shape[dim]
    shape = list(y_r.shape)
    shape[dim] = 1
    first = h0_r.view(1, 1, 1, -1).expand(shape)
    if reverse:
        prev = torch.cat([y_r.narrow(dim, 1, L - 1), first], dim)
    else:
        prev = torch.cat([first, y_r.narrow(dim, 0, L - 1)], dim)
    return prev.reshape(-1, y_r.shape[3])


def _mm_f32(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b with float32 accumulation (cuBLAS's compute type for every dtype here), in float32."""
    return a.float() @ b.float()


@dataclass
class EmulatedSweep:
    """exe: a harness executable from build_emulator.build; order: thread order between barriers (0 in order,
    1 reversed, 2 shuffled); poison: the byte filling shared memory at the start of every block."""

    exe: Path
    workdir: Path
    order: int = 0
    poison: int = 0xFF

    def _run(self, mode, x, H, codes, save, inputs: dict, outputs: dict) -> dict:
        B, T, F, _ = x.shape
        folder = Path(tempfile.mkdtemp(prefix=f"{mode}-", dir=self.workdir))
        for name, t in inputs.items():
            write_tensor(t, folder / f"{name}.bin")
        run_harness(self.exe, [mode, DTYPE_NAMES[x.dtype], B, T, F, H, self.order, self.poison, int(save), folder,
                               *codes])
        return {name: read_tensor(folder / f"{name}.bin", dtype, shape) for name, (dtype, shape) in outputs.items()}

    def forward(self, x, w_ih, w_hh, bias, h0, c0, codes: Sequence[int], save: bool = True):
        """lstm_sweep_2d_fwd: x [B, T, F, I], w_ih [R, 4H, I], w_hh [R, 4H, H], bias [R, 4H], h0, c0 [R, H] ->
        y [B, T, F, R*H], gates [R, B, T, F, 4H] (x's dtype), cell [R, B, T, F, H] float32 (both empty when
        save is False)."""
        B, T, F, I = x.shape
        R, G, H = w_hh.shape
        N = B * T * F
        # at::addmm in x's dtype: float32 accumulation, one rounding.
        pre = torch.addmm(bias.reshape(R * G).float(), x.reshape(N, I).float(), w_ih.reshape(R * G, I).float().t())
        inputs = {"pre": pre.to(x.dtype), "w_hh": w_hh, "h0": h0, "c0": c0}
        outputs = {"y": (x.dtype, (B, T, F, R * H))}
        if save:
            outputs.update(gates=(x.dtype, (R, B, T, F, G)), cell=(torch.float32, (R, B, T, F, H)))
        out = self._run("fwd", x, H, codes, save, inputs, outputs)
        empty = torch.empty(0, dtype=x.dtype)
        return out["y"], out.get("gates", empty), out.get("cell", empty.float())

    def backward(self, grad_y, x, w_ih, w_hh, h0, c0, y, gates, cell, codes: Sequence[int]):
        """lstm_sweep_2d_bwd: the gradients of x, w_ih, w_hh, bias, h0, c0 (each in its input's dtype)."""
        B, T, F, I = x.shape
        R, G, H = w_hh.shape
        N = B * T * F
        lines_max = max(B * F if c < 2 else B * T for c in codes)
        out = self._run("bwd", x, H, codes, True,
                        {"grad_y": grad_y, "w_hh": w_hh, "gates": gates, "cell": cell, "c0": c0},
                        {"dgates": (x.dtype, (N, R * G)), "dc_run": (torch.float32, (R, lines_max, H))})
        dgates, dc_run = out["dgates"], out["dc_run"]
        dt = x.dtype
        dx = _mm_f32(dgates, w_ih.reshape(R * G, I)).to(dt).view(B, T, F, I)
        dw_ih = _mm_f32(dgates.t(), x.reshape(N, I)).to(dt).view(R, G, I)
        dbias = dgates.float().sum(0).to(dt).view(R, G)
        dw_hh = torch.empty(R, G, H, dtype=dt)
        dh0 = torch.empty(R, H, dtype=dt)
        dc0 = torch.empty(R, H, dtype=dt)
        dg5 = dgates.view(B, T, F, R, G)
        for r, code in enumerate(codes):
            along_t, reverse = code < 2, code % 2 == 1
            h_prev = previous_hidden(y[..., r * H:(r + 1) * H], h0[r], along_t, reverse)
            dw_hh[r] = _mm_f32(dgates[:, r * G:(r + 1) * G].t(), h_prev).to(dt)
            L = T if along_t else F
            first = dg5.select(3, r).select(1 if along_t else 2, L - 1 if reverse else 0)  # [B, F|T, G]
            dh0[r] = (w_hh[r].float().t() @ first.float().sum((0, 1))).to(dt)
            dc0[r] = dc_run[r, :(B * F if along_t else B * T)].sum(0).to(dt)
        return dx, dw_ih, dw_hh, dbias, dh0, dc0
