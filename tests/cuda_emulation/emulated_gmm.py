"""The CUDA backend of gmm_nll with its kernels run by the emulator: the host side of csrc/cuda/gmm_nll.cu (the
reshape to [N] / [N, K] views, their strides, the launch geometry; the latter two in emu_gmm.cpp) around the
forward and backward kernels of csrc/cuda/gmm_nll_kernel.cuh. Strided views are passed as the storage they span,
gaps included, so a kernel that reads a gap reads whatever the caller put there (the tests put NaN)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from tests.cuda_emulation.emulated_sweep import run_harness

DTYPE_NAMES = {torch.float32: "f32", torch.float64: "f64", torch.bfloat16: "bf16", torch.float16: "f16"}
_BITS = {torch.float32: (torch.int32, np.int32), torch.float64: (torch.int64, np.int64),
         torch.bfloat16: (torch.int16, np.int16), torch.float16: (torch.int16, np.int16)}


def _write(t: torch.Tensor, path: Path) -> None:
    t.contiguous().view(_BITS[t.dtype][0]).numpy().tofile(path)


def _read(path: Path, dtype: torch.dtype, shape) -> torch.Tensor:
    return torch.from_numpy(np.fromfile(path, dtype=_BITS[dtype][1])).view(dtype).reshape(tuple(shape))


def _span(t: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    """(the storage from t's first element to its last, row stride, component stride) of a [N] or [N, K] view."""
    strides = list(t.stride()) + [0] * (2 - t.dim())
    span = 1 + sum((n - 1) * s for n, s in zip(t.shape, strides))
    return t.detach().as_strided((span,), (1,)), strides[0], strides[1]


def _run(exe: Path, workdir: Path, mode: str, views: dict, N: int, K: int, sms: int, order: int, poison: int,
         outputs: dict) -> dict:
    folder = Path(tempfile.mkdtemp(prefix=f"gmm-{mode}-", dir=workdir))
    layout = []
    dtype = views["x"].dtype
    for name in ("x", "grad", "mu", "log_sigma", "logit"):
        if name not in views:
            layout.append("0 0 0")
            continue
        flat, sr, sk = _span(views[name])
        _write(flat, folder / f"{name}.bin")
        layout.append(f"{flat.numel()} {sr} {sk}")
    (folder / "layout.txt").write_text("\n".join(layout) + "\n")
    run_harness(exe, [mode, DTYPE_NAMES[dtype], N, K, sms, order, poison, folder])
    return {name: _read(folder / f"{name}.bin", dtype, shape) for name, shape in outputs.items()}


def emulated_gmm_nll_fwd(exe: Path, workdir: Path, x, mu, log_sigma, logit_pi, sms: int = 1, order: int = 0,
                         poison: int = 0xFF) -> torch.Tensor:
    """gmm_nll_fwd on the emulated cuda backend: x [...], mu, log_sigma, logit_pi [..., K] (any strides) -> nll
    [...]. sms: the multiprocessor count the launch assumes (blocks = min(tiles, 16 sms))."""
    N, K = x.numel(), mu.shape[-1]
    views = {"x": x.reshape(N), "mu": mu.reshape(N, K), "log_sigma": log_sigma.reshape(N, K),
             "logit": logit_pi.reshape(N, K)}
    return _run(exe, workdir, "fwd", views, N, K, sms, order, poison, {"out": x.shape})["out"]


def emulated_gmm_nll_bwd(exe: Path, workdir: Path, grad, x, mu, log_sigma, logit_pi, sms: int = 1, order: int = 0,
                         poison: int = 0xFF):
    """gmm_nll_bwd on the emulated cuda backend: the upstream gradient grad [...] (any strides, stride 0 too) ->
    d/dx [...], d/dmu, d/dlog_sigma, d/dlogit_pi [..., K]."""
    N, K = x.numel(), mu.shape[-1]
    views = {"x": x.reshape(N), "grad": grad.reshape(N), "mu": mu.reshape(N, K),
             "log_sigma": log_sigma.reshape(N, K), "logit": logit_pi.reshape(N, K)}
    out = _run(exe, workdir, "bwd", views, N, K, sms, order, poison,
               {"out": x.shape, "gmu": mu.shape, "gls": mu.shape, "glogit": mu.shape})
    return out["out"], out["gmu"], out["gls"], out["glogit"]
