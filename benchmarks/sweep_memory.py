"""Peak memory of one lstm_sweep_2d forward + backward per mode: stored (gates and cell states kept for backward)
and the segmented recompute (recompute=True: spans of ceil(sqrt(L)) positions, or --spans k...). Every mode runs in
a fresh process, so that no allocator cache, buffer pool or earlier peak of another mode counts.

    python3 benchmarks/sweep_memory.py                                   B=8, T=F=64, I=H=128, t+ f+ f-, cpu backend
    python3 benchmarks/sweep_memory.py --device cuda --backend cuda --dtype bf16 --shape 32 215 32 512 512
    python3 benchmarks/sweep_memory.py --smoke                           a small shape, a few seconds (CI)

What is measured, per process, after the inputs, weights and upstream gradient exist and one small warm-up call
has loaded every library: on the CPU the peak resident set (VmHWM, reset to the current RSS through
/proc/self/clear_refs just before the call) minus the RSS at that moment, so the figure is the memory the call
itself touched at its peak (outputs, saved tensors, temporaries, gradients); on CUDA torch's allocator peak
(max_memory_allocated after reset_peak_memory_stats) minus what was allocated before. Beside it, the bytes
autograd holds between forward and backward (saved_tensors_hooks), which no allocator behaviour can blur.
Writes DIR/sweep_memory.json and appends DIR/sweep_memory.csv (device, versions, commit and date per row).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import torch
from gpu_bench_common import DTYPES, ROOT, Results, markdown, run_context

import melnet_fast
from melnet_fast.ops import lstm_sweep_2d

CSV_FIELDS = ["case", "backend", "dtype", "mode", "peak_extra_mib", "saved_mib", "fwd_bwd_s", "vs_stored"]


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _inputs(B, T, F, I, H, R, dtype, device, seed=0):
    g = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g) * scale).to(device=device, dtype=dtype).requires_grad_()

    return [rand(B, T, F, I), rand(R, 4 * H, I, scale=I ** -0.5), rand(R, 4 * H, H, scale=H ** -0.5),
            rand(R, 4 * H, scale=0.5), rand(R, H, scale=0.5), rand(R, H, scale=0.5)]


def child(args) -> dict:
    """One mode in this (fresh) process: the peak of one forward + backward above what existed before it."""
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    mode = True if args.mode == "recompute" else False if args.mode == "stored" else int(args.mode.split(":")[1])
    B, T, F, I, H = args.shape
    with melnet_fast.use_backend(args.backend):
        warm = _inputs(2, 3, 3, 4, 4, len(args.directions), dtype, device)  # loads BLAS, oneDNN, kernels
        y = lstm_sweep_2d(*warm, args.directions, recompute=mode)
        torch.autograd.backward(y, torch.ones_like(y))
        del warm, y
        inputs = _inputs(B, T, F, I, H, len(args.directions), dtype, device)
        grad_y = torch.randn(B, T, F, len(args.directions) * H, generator=torch.Generator().manual_seed(1)).to(
            device=device, dtype=dtype)
        saved = {}

        def pack(t):
            saved[t.data_ptr(), t.numel()] = t.numel() * t.element_size()
            return t

        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
        else:
            base = _rss_kib("VmRSS") * 1024
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # VmHWM := VmRSS
        t0 = time.perf_counter()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            y = lstm_sweep_2d(*inputs, args.directions, recompute=mode)
        torch.autograd.backward(y, grad_y)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            peak = torch.cuda.max_memory_allocated(device) - base
        else:
            peak = _rss_kib("VmHWM") * 1024 - base
        seconds = time.perf_counter() - t0
    return dict(peak_extra_mib=peak / 2**20, saved_mib=sum(saved.values()) / 2**20, fwd_bwd_s=seconds)


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--backend", default=None, help="default: cpu on the CPU, cuda on CUDA")
    p.add_argument("--dtype", default=None, choices=list(DTYPES), help="default: fp32 on the CPU, bf16 on CUDA")
    p.add_argument("--shape", type=int, nargs=5, metavar=("B", "T", "F", "I", "H"), default=[8, 64, 64, 128, 128])
    p.add_argument("--directions", nargs="+", default=["t+", "f+", "f-"])
    p.add_argument("--spans", type=int, nargs="*", default=[], help="span lengths to measure besides the default")
    p.add_argument("--threads", type=int, default=None, help="torch threads in each process (default: torch's)")
    p.add_argument("--out", default=None, help="folder of sweep_memory.json / .csv (default: print only)")
    p.add_argument("--smoke", action="store_true", help="B=4, T=F=32, I=H=64 (a few seconds)")
    p.add_argument("--mode", default=None, help=argparse.SUPPRESS)  # the child process's mode
    args = p.parse_args(argv)
    if args.smoke:
        args.shape = [4, 32, 32, 64, 64]
    args.backend = args.backend or ("cuda" if args.device.startswith("cuda") else "cpu")
    args.dtype = args.dtype or ("bf16" if args.device.startswith("cuda") else "fp32")
    return args


def main(argv=None) -> int:
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.mode is not None:
        print(json.dumps(child(args)))
        return 0
    B, T, F, I, H = args.shape
    case = f"B{B}-T{T}-F{F}-I{I}-H{H}-{'.'.join(args.directions)}"
    modes = ["stored", "recompute"] + [f"recompute:{k}" for k in args.spans]
    own = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--smoke"]
    context = run_context(torch.device(args.device))  # the commit and date the runs start from
    rows = []
    for mode in modes:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.path.join(ROOT, "benchmarks")])}
        cmd = [sys.executable, os.path.abspath(__file__), *own, "--shape", *map(str, args.shape), "--mode", mode]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            print(proc.stdout + proc.stderr, file=sys.stderr)
            return 1
        rows.append(dict(case=case, backend=args.backend, dtype=args.dtype, mode=mode,
                         **json.loads(proc.stdout.strip().splitlines()[-1])))
    for r in rows:
        r["vs_stored"] = r["peak_extra_mib"] / rows[0]["peak_extra_mib"]
    if args.out:
        res = Results(args.out, "sweep_memory", context, CSV_FIELDS)
        res["rows"] = rows
        res.save()
        res.append_csv(rows)
    print(f"lstm_sweep_2d fwd+bwd, {case}, {args.backend} {args.dtype}, one fresh process per mode")
    print(markdown(["mode", "peak above inputs MiB", "saved for backward MiB", "fwd+bwd s", "peak vs stored"],
                   [[r["mode"], r["peak_extra_mib"], r["saved_mib"], r["fwd_bwd_s"], r["vs_stored"]] for r in rows]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
