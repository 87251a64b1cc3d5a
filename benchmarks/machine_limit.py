"""The machine's limit for the CPU benchmarks: the float32 FLOP rate of a large GEMM run through the library path
of torch's own LSTM, the reference sweep (csrc/gemm.h: oneDNN where torch has it, else at::mm), with the thread
count the kernels get. Every CPU benchmark times it in the same run as its cases and reports each case's FLOP
rate as a share of it.

FLOP counts are of the multiply-adds (2 FLOPs each) of a case's products; pointwise work is not counted, so
the share says how close a kernel comes to running its arithmetic at the GEMM rate.
"""

from __future__ import annotations

import statistics
import time

import torch

from melnet_fast import _extension

GEMM_SIZE = 2048  # [n, n] x [n, n]: large enough for any BLAS to run at its peak on a few cores


def gemm_runner(n: int = GEMM_SIZE, dtype=torch.float32):
    """A function that runs one [n, n] x [n, n] product and its FLOP count."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=g, dtype=dtype), torch.randn(n, n, generator=g, dtype=dtype)
    out = torch.empty(n, n, dtype=dtype)
    ext = _extension.extension()
    if ext is not None and hasattr(ext, "gemm_into"):
        def run():
            ext.gemm_into(a, b, out)
    else:  # no compiled extension: torch's own path
        def run():
            torch.mm(a, b, out=out)
    return run, 2 * n**3


def timed_gflops(run, flops: int, calls: int = 5) -> float:
    """GFLOP/s of `run` (which does `flops`), from the median of `calls` timed calls."""
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return flops / statistics.median(times) / 1e9


def library_path() -> str:
    """Which library the GEMM runs through, for the tables."""
    ext = _extension.extension()
    return ext.gemm_library() if ext is not None and hasattr(ext, "gemm_library") else "torch.mm"


def sweep_flops(B: int, T: int, F: int, I: int, H: int, R: int, backward: bool) -> int:
    """FLOPs of the 2D LSTM sweep's products: per position and direction the input and recurrent terms of the
    four gates, 2 * 4H * (I + H); the backward does twice that (input gradients and weight gradients)."""
    forward = 2 * B * T * F * R * 4 * H * (I + H)
    return 3 * forward if backward else forward


def sampler_flops(B: int, T: int, F: int, D: int, L: int, K: int, n_prime: int = 0) -> int:
    """FLOPs of a tier sampler's products (ops.sample_tier, hidden size D, L layers, K mixtures) over a [B, T, F] grid:
    per layer and position the time-delayed stack's three LSTMs (input and recurrent terms, 2 x 4D x D each) and its
    projection (3D -> D), 27 D^2 multiply-adds; per drawn position (the frames after the n_prime primed ones) the
    frequency-delayed stack's LSTM and projection, 9 D^2 per layer, and the head (D -> 3K). These are the reference
    sampler's products as torch's FLOP counter sees them."""
    return 2 * B * (T * F * L * 27 * D * D + (T - n_prime) * F * (L * 9 * D * D + 3 * K * D))


def share(flops: int | None, seconds: float, gemm_gflops: float) -> tuple[float | None, float | None]:
    """(GFLOP/s, fraction of the GEMM rate) of a case that did `flops` in `seconds` (None, None without a count)."""
    if not flops:
        return None, None
    gflops = flops / seconds / 1e9
    return gflops, gflops / gemm_gflops


def _register_sweep_flops() -> None:
    """Teach torch's FLOP counter the compiled sweep and sampler ops (it counts aten's products by itself). A text
    model's sampler (sample_tier_centralized) counts its tier's products; those of its per-frame centralized stack and
    attention, one step per frame against the tier's one per element, are left out."""
    from torch.utils.flop_counter import register_flop_formula

    ops = getattr(torch.ops, "melnet_fast", None)
    if ops is None or not hasattr(ops, "lstm_sweep_2d_fwd") or getattr(_register_sweep_flops, "done", False):
        return

    @register_flop_formula(ops.lstm_sweep_2d_fwd)
    def _fwd(x, w_ih, w_hh, *args, out_shape=None, **kwargs):
        (B, T, F, I), (R, _, H) = x, w_hh
        return sweep_flops(B, T, F, I, H, R, backward=False)

    @register_flop_formula(ops.lstm_sweep_2d_bwd)
    def _bwd(grad_y, x, w_ih, w_hh, *args, out_shape=None, **kwargs):
        (B, T, F, I), (R, _, H) = x, w_hh
        return 2 * sweep_flops(B, T, F, I, H, R, backward=False)

    def _sample(x_init, cz_t, cz_f, u, eps, weights, n_layers, n_mixtures, temperature, n_prime, *args,
                out_shape=None, **kwargs):
        (B, T, F), D = x_init, cz_t[-1]
        return sampler_flops(B, T, F, D, n_layers, n_mixtures, n_prime)

    for name in ("sample_tier", "sample_tier_centralized"):
        if hasattr(ops, name):
            register_flop_formula(getattr(ops, name))(_sample)
    _register_sweep_flops.done = True


def counted_flops(run) -> int:
    """FLOPs of the products one call of `run` does, as torch's FLOP counter sees them with the compiled sweep and
    sampler ops counted (run it on the "cpu" backend: the reference's nn.LSTM is not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    _register_sweep_flops()
    with FlopCounterMode(display=False) as counter:
        run()
    return counter.get_total_flops()
