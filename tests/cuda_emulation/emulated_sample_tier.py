"""The CUDA backend of sample_tier with its kernel run by the emulator: the host side of csrc/cuda/sample_tier.cu
(done by the harness emu_sample_tier.cpp) and the persistent cooperative kernel of
csrc/cuda/sample_tier_kernel.cuh on a grid of `blocks` blocks, all alive at once. Buffers travel through files in a
scratch folder, as in emulated_sweep.py."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Sequence

import torch

from melnet_fast.log_mel_scale import SAMPLE_RANGE
from tests.cuda_emulation.emulated_sweep import DTYPE_NAMES, read_tensor, run_harness, write_tensor


def emulated_sample_tier(exe: Path, workdir: Path, x_init, cz_t, cz_f, u, eps, weights: Sequence[torch.Tensor],
                         n_layers: int, n_mixtures: int, temperature: float, n_prime: int, blocks: int,
                         order: int = 0, poison: int = 0xFF, value_range=SAMPLE_RANGE, design: str = "first",
                         resident_layers: int = 0):
    """sample_tier on the emulated cuda backend: x_init, u, eps [B, T, F], cz_t, cz_f [B, T, F, D] (float32),
    weights the flat list (one dtype: float32, bfloat16 or float16) -> x [B, T, F], log_density [B] (float32).
    order: thread order between switches (0 in order, 1 reversed, 2 shuffled); poison: the byte that fills shared
    memory at the start of every block; value_range: (x_min, x_max) of the drawn values. design: "first" (the
    cooperative kernel with grid barriers) or "flags" (the folded-projection kernel with flag waits; weights then
    the folded list, fold_projections appended; resident_layers: at most that many layers' cell rows in shared
    memory), or "flags-global-sweeps" (the same with the sweeps' W_hh rows read from global memory)."""
    B, T, F, D = cz_t.shape
    folder = Path(tempfile.mkdtemp(prefix="sample_tier-", dir=workdir))
    for name, t in (("x_init", x_init), ("cz_t", cz_t), ("cz_f", cz_f), ("u", u), ("eps", eps)):
        assert t.dtype == torch.float32, name
        write_tensor(t, folder / f"{name}.bin")
    for idx, w in enumerate(weights):
        assert w.dtype == weights[0].dtype, idx
        write_tensor(w, folder / f"w{idx}.bin")
    # repr keeps every bit of a Python float; the harness rounds it to float32 as the host code does
    tau, x_min, x_max = (repr(float(v)) for v in (temperature, *value_range))
    code = {"first": 0, "flags": 1, "flags-global-sweeps": 2}[design]
    run_harness(exe, [code, resident_layers, DTYPE_NAMES[weights[0].dtype], B, T, F, D, n_layers,
                      n_mixtures, n_prime, tau, x_min, x_max, blocks, order, poison, folder])
    return (read_tensor(folder / "x.bin", torch.float32, (B, T, F)),
            read_tensor(folder / "log_density.bin", torch.float32, (B,)))
