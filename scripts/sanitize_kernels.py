"""Run every GPU kernel of melnet_fast once at small sizes (forward and backward), for compute-sanitizer:

    PYTORCH_NO_CUDA_MEMORY_CACHING=1 compute-sanitizer --tool memcheck --error-exitcode 1 \\
        python3 scripts/sanitize_kernels.py [--backends cuda triton]

Without PyTorch's caching allocator every tensor is its own cudaMalloc, so memcheck sees an access past a tensor's
end (with the cache it would land inside a larger pooled block and pass unseen). Sizes are odd (not multiples of
any block) plus one case at the paper's width 512. Each result is also checked for NaN and, for the sweep and the
mixture NLL, against the reference backend in float32 with a loose tolerance that only catches garbage (the GPU
tests check accuracy). Prints one line per case; exits 1 if a case raised (other than a ValueError rejecting a
size, reported as REJECTED), returned non-finite values or garbage.

The sampler runs in every variant of its cuda backend (the first design and "flags", the second: flag waits
between blocks). For the flags design's synchronisation, run racecheck (shared memory hazards between the warps
of a block: the resident weight rows, theta, the drawn values) and synccheck (barriers in divergent code) on the
small cases only, as scripts/gpu_round.sh does:

    compute-sanitizer --tool racecheck --error-exitcode 1 python3 scripts/sanitize_kernels.py --backends cuda \
        --ops sampler --variants flags --small
The flags' ordering in global memory (release / acquire between blocks) is outside what compute-sanitizer checks:
the CPU grid emulator's flag checker covers it (tests/cuda_emulation/test_sample_tier_flags_emulated.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # the GPU benchmarks' shared helpers
from gpu_bench_common import DTYPES, short_error, skip_reason  # noqa: E402

import melnet_fast
from melnet_fast.modules import TierNetwork
from melnet_fast.ops import gmm_nll, lstm_sweep_2d, sample_tier
from melnet_fast.ops.dispatch import DEFAULT_VARIANT, use_variant
from melnet_fast.ops.gmm import draw_noise

GARBAGE = {"fp32": 2e-2, "bf16": 1e-1, "fp16": 5e-2}  # relative L2 error that no working kernel comes near
SWEEPS = [  # B, T, F, I, H, directions
    (3, 7, 9, 64, 64, ("t+", "t-", "f+", "f-")),
    (2, 5, 3, 48, 32, ("f+",)),
    (1, 3, 4, 512, 512, ("t+", "f+", "f-")),
]
GMMS = [((3, 7, 9), 10), ((5, 3), 3)]
SAMPLERS = [  # D, layers, K, cond_dim, (B, T, F), n_prime, temperature
    (64, 2, 5, 0, (2, 3, 7), 1, 1.0),
    (64, 1, 3, 64, (3, 2, 5), 0, 0.0),
    (512, 1, 10, 512, (1, 2, 4), 0, 1.0),
]


class Failures:
    def __init__(self):
        self.count = 0

    def report(self, status: str, what: str, detail: str = "") -> None:
        if status not in ("ok", "REJECTED", "skip"):
            self.count += 1
        print(f"{status:<9} {what}" + (f": {detail}" if detail else ""), flush=True)


def rel_err(got, want) -> float:
    got, want = got.float(), want.float()
    return float((got - want).norm() / want.norm().clamp_min(1e-30))


def grads_of(backend, fn, leaves, grad_out):
    with melnet_fast.use_backend(backend):
        y = fn(*leaves)
    grads = torch.autograd.grad(y, leaves, grad_out)
    torch.cuda.synchronize()
    return [y.detach(), *grads]


def check(fails: Failures, what: str, backend: str, dtype: str, fn, fp32_inputs, grad_shape_of) -> None:
    """Run fn fwd+bwd with `backend` in `dtype` and with the reference in fp32; compare outputs and gradients."""
    dt = DTYPES[dtype]
    leaves = [t.detach().to(dt).requires_grad_() for t in fp32_inputs]  # detach: fp32 .to() aliases the input
    try:
        with torch.no_grad(), melnet_fast.use_backend(backend):
            grad_out = torch.randn(grad_shape_of(fn(*leaves)), device="cuda")
        got = grads_of(backend, fn, leaves, grad_out.to(dt))
        ref_leaves = [t.detach().clone().requires_grad_() for t in fp32_inputs]
        want = grads_of("reference", fn, ref_leaves, grad_out)
    except ValueError as exc:
        fails.report("REJECTED", what, short_error(exc))
        return
    except Exception as exc:
        fails.report("FAIL", what, short_error(exc))
        return
    bad = [i for i, g in enumerate(got) if not bool(torch.isfinite(g).all())]
    if bad:
        fails.report("NONFINITE", what, f"outputs {bad} (0 = forward, then the gradients in argument order)")
        return
    errs = [rel_err(g, w) for g, w in zip(got, want)]
    status = "ok" if max(errs) < GARBAGE[dtype] else "GARBAGE"
    fails.report(status, what, "rel err vs reference fp32 " + " ".join(f"{e:.1e}" for e in errs))


def sweeps(fails: Failures, backend: str) -> None:
    g = torch.Generator(device="cuda").manual_seed(0)
    for B, T, F, I, H, dirs in SWEEPS:
        R = len(dirs)
        inputs = [torch.randn(B, T, F, I, generator=g, device="cuda"),
                  torch.randn(R, 4 * H, I, generator=g, device="cuda") * I ** -0.5,
                  torch.randn(R, 4 * H, H, generator=g, device="cuda") * H ** -0.5,
                  *(torch.randn(*shape, generator=g, device="cuda") * 0.5 for shape in ((R, 4 * H), (R, H), (R, H)))]
        runs = [("fp32", False), ("bf16", False), ("fp16", False), ("bf16", True)]
        for dtype, recompute in runs:
            what = (f"lstm_sweep_2d {backend} {dtype}{' recompute' if recompute else ''} "
                    f"B{B}-T{T}-F{F}-I{I}-H{H}-{'.'.join(dirs)}")
            reason = skip_reason("lstm_sweep_2d", backend, DTYPES[dtype], torch.device("cuda"))
            if reason:
                fails.report("skip", what, reason)
                continue
            check(fails, what, backend, dtype,
                  lambda *a, d=dirs, rc=recompute: lstm_sweep_2d(*a, d, recompute=rc), inputs, lambda y: y.shape)


def gmms(fails: Failures, backend: str) -> None:
    g = torch.Generator(device="cuda").manual_seed(1)
    for shape, K in GMMS:
        inputs = [torch.randn(*shape, generator=g, device="cuda") * 1.5]
        inputs += [torch.randn(*shape, K, generator=g, device="cuda") * s for s in (1.0, 0.5, 2.0)]
        for dtype in ("fp32", "bf16"):
            what = f"gmm_nll {backend} {dtype} {'x'.join(map(str, shape))}-K{K}"
            reason = skip_reason("gmm_nll", backend, DTYPES[dtype], torch.device("cuda"))
            if reason:
                fails.report("skip", what, reason)
                continue
            check(fails, what, backend, dtype, gmm_nll, inputs, lambda y: y.shape)


def samplers(fails: Failures, backend: str, variants=(DEFAULT_VARIANT,), small: bool = False) -> None:
    """sample_tier with float32 weights and with bfloat16 weights (float32 data), in each of `variants` of the
    backend that has them: finite draws, no memory error. small: the first case only."""
    for variant in variants if backend == "cuda" else (DEFAULT_VARIANT,):
        with use_variant("sample_tier", variant):
            sampler_cases(fails, backend, variant, SAMPLERS[:1] if small else SAMPLERS)


def sampler_cases(fails: Failures, backend: str, variant: str, cases) -> None:
    for D, L, K, cond_dim, grid, n_prime, tau in cases:
        torch.manual_seed(D + L)
        with torch.device("cuda"):
            net = TierNetwork(D, L, K, cond_dim)
        gen = torch.Generator(device="cuda").manual_seed(2)
        x_init = torch.randn(grid, generator=gen, device="cuda")  # frames < n_prime are the prime
        if cond_dim:
            with torch.no_grad():
                cz_t, cz_f = net.conditioning_terms(torch.randn(*grid, cond_dim, generator=gen, device="cuda"))
        else:
            cz_t, cz_f = net.conditioning_terms(None, grid)
        u, eps = draw_noise(grid, "cuda", torch.float32, gen)
        for weight_dtype in ("fp32", "bf16"):
            what = (f"sample_tier {backend} {variant} weights {weight_dtype} D{D}-L{L}-K{K}-cond{cond_dim} "
                    f"grid {'x'.join(map(str, grid))} prime {n_prime} tau {tau}")
            reason = skip_reason("sample_tier", backend, torch.float32, torch.device("cuda"))
            if reason:
                fails.report("skip", what, reason)
                continue
            weights = [w.to(DTYPES[weight_dtype]) for w in net.sampler_weights()]
            try:
                with melnet_fast.use_backend(backend):
                    x, log_density = sample_tier(x_init, cz_t, cz_f, u, eps, weights, L, K, tau, n_prime)
                torch.cuda.synchronize()
            except ValueError as exc:
                fails.report("REJECTED", what, short_error(exc))
                continue
            except Exception as exc:
                fails.report("FAIL", what, short_error(exc))
                continue
            finite = bool(torch.isfinite(x).all()) and bool(torch.isfinite(log_density).all())
            kept = bool(torch.equal(x[:, :n_prime], x_init[:, :n_prime]))
            fails.report("ok" if finite and kept else "FAIL", what,
                         "" if finite and kept else f"finite={finite}, prime kept={kept}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["cuda", "cuda_gemm", "triton"],
                        choices=["cuda", "cuda_gemm", "triton"])
    parser.add_argument("--ops", nargs="+", default=["sweep", "gmm", "sampler"], choices=["sweep", "gmm", "sampler"])
    parser.add_argument("--variants", nargs="+", default=[DEFAULT_VARIANT, "flags"],
                        help="variants of the cuda sampler to run (default: both designs)")
    parser.add_argument("--small", action="store_true", help="the smallest sampler case only (racecheck is slow)")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to sanitize")
        return 0
    fails = Failures()
    for backend in args.backends:
        for op in args.ops:
            if backend == "cuda_gemm" and op != "sweep":  # the sweep's second design; the other ops have one
                continue
            if op == "sampler":
                samplers(fails, backend, args.variants, args.small)
            else:
                {"sweep": sweeps, "gmm": gmms}[op](fails, backend)
    print(f"{fails.count} failure(s)")
    return 1 if fails.count else 0


if __name__ == "__main__":
    sys.exit(main())
