"""Time every op-layer case on every available backend, next to the machine's limit measured in the same run, and
print a markdown table: each case's FLOP rate as a share of a large GEMM's (benchmarks/machine_limit.py) and its
speedup over "reference". Appends the rows to DIR/ops.csv (history, one row per case and backend) and writes
DIR/ops_latest.json.

    python benchmarks/bench_table.py [--out benchmarks/results] [--repeats 15] [--warmup 3] [--threads N]

Rounds are interleaved: each round times every backend of a case once and the GEMM once, so a load that comes
and goes on a shared machine slows all of them alike. Times are medians over the rounds and the spread columns
interquartile ranges; the speedup is the median of the per-round ratios. Threads: torch's default unless
--threads says otherwise (the GEMM runs with the same count). On a shared machine the load average is recorded
with the rows; the OpenMP loops of both backends slow down by orders of magnitude when one of their threads is
descheduled (seen on a loaded 2-core VM), and --threads 1 gives steadier, if slower, figures.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import time

import torch
from bench_cases import BACKENDS, CASES
from machine_limit import GEMM_SIZE, gemm_runner, library_path, share
from results_csv import append_rows

from melnet_fast import _extension

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CSV_FIELDS = ["date", "commit", "machine", "cpu", "threads", "torch", "op", "mode", "size", "backend",
              "median_ms", "q1_ms", "q3_ms", "repeats", "speedup_vs_reference", "speedup_q1", "speedup_q3",
              "gflops", "gemm_gflops", "share_of_gemm", "gemm_library", "cpu_level", "load_1min"]


def cpu_name() -> str:
    """Model name and CPU count from lscpu (platform.processor() as a fallback)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        return f"{fields['Model name'].strip()}, {fields['CPU(s)'].strip()} CPUs"
    except (OSError, subprocess.CalledProcessError, KeyError):
        return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"


def git_commit() -> str:
    def git(*args):
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def cpu_level() -> str:
    """The instruction set the CPU kernels run (x86-64-v4 = AVX-512, v3 = AVX2 + FMA, v1 = baseline)."""
    ext = _extension.extension()
    return f"x86-64-v{ext.cpu_levels()[1]}" if ext is not None else "none (no extension)"


def timed(run) -> float:
    start = time.perf_counter()
    run()
    return (time.perf_counter() - start) * 1e3


def quartiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) == 1:
        return values[0], values[0], values[0]
    q1, median, q3 = statistics.quantiles(values, n=4)
    return q1, median, q3


def measure(backends, repeats: int, warmup: int, gemm_size: int = GEMM_SIZE) -> list[dict]:
    gemm, gemm_flops = gemm_runner(gemm_size)
    rows = []
    for case in CASES:
        runners = {}
        for backend in backends:
            reason = case.skip_reason(backend)
            if reason:
                print(f"skip {case.name} on {backend}: {reason}")
            else:
                runners[backend] = case.runner(backend)
        for run in [*runners.values(), gemm] * warmup:
            run()
        times = {name: [] for name in [*runners, "gemm"]}
        for _ in range(repeats):  # interleaved rounds
            for name, run in [*runners.items(), ("gemm", gemm)]:
                times[name].append(timed(run))
        gemm_gflops = gemm_flops / (statistics.median(times["gemm"]) / 1e3) / 1e9
        for backend in runners:
            q1, median, q3 = quartiles(times[backend])
            ratio = ([r / t for r, t in zip(times["reference"], times[backend])]
                     if "reference" in times else None)
            s_q1, s_median, s_q3 = quartiles(ratio) if ratio else (None, None, None)
            gflops, frac = share(case.flops, median / 1e3, gemm_gflops)
            rows.append(dict(op=case.op, mode=case.mode, size=case.size, backend=backend, median_ms=median,
                             q1_ms=q1, q3_ms=q3, repeats=repeats, speedup_vs_reference=s_median,
                             speedup_q1=s_q1, speedup_q3=s_q3, gflops=gflops, gemm_gflops=gemm_gflops,
                             share_of_gemm=frac, load_1min=os.getloadavg()[0]))
    return rows


def markdown(rows) -> str:
    def num(v, fmt):
        return "" if v is None else format(v, fmt)

    lines = ["| op | mode | size | backend | median ms | IQR ms | GFLOP/s | share of GEMM | speedup vs reference "
             "(IQR) |", "|---|---|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        speedup = "" if r["speedup_vs_reference"] is None else (
            f"{r['speedup_vs_reference']:.2f}x ({r['speedup_q1']:.2f}-{r['speedup_q3']:.2f})")
        lines.append(f"| {r['op']} | {r['mode']} | {r['size']} | {r['backend']} | {r['median_ms']:.1f} | "
                     f"{r['q1_ms']:.1f}-{r['q3_ms']:.1f} | {num(r['gflops'], '.0f')} | "
                     f"{'' if r['share_of_gemm'] is None else format(r['share_of_gemm'], '.0%')} | "
                     f"{speedup} |")
    gemm = [r["gemm_gflops"] for r in rows]
    if gemm:
        lines.append(f"\nGEMM (float32, same run, per case): {min(gemm):.0f}-{max(gemm):.0f} GFLOP/s")
    return "\n".join(lines)


def save(rows, context, out_dir) -> None:
    os.makedirs(out_dir, exist_ok=True)
    path = append_rows(os.path.join(out_dir, "ops.csv"), [{**context, **r} for r in rows], CSV_FIELDS)
    with open(os.path.join(out_dir, "ops_latest.json"), "w") as f:
        json.dump({"context": context, "rows": rows}, f, indent=1)
    print(f"\nappended {len(rows)} rows to {path}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"),
                        help="folder of ops.csv and ops_latest.json (default: benchmarks/results)")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads before timing (default: torch's own default)")
    parser.add_argument("--smoke", action="store_true",
                        help="two rounds, one warm-up, a 256-wide GEMM: checks that the script runs, times nothing")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    gemm_size = GEMM_SIZE
    if args.smoke:
        args.repeats, args.warmup, gemm_size = 2, 1, 256
    if "reference" not in args.backends:
        args.backends.insert(0, "reference")  # the speedup column needs it

    context = dict(date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                   commit=git_commit(), machine=f"{platform.node()} ({platform.machine()})", cpu=cpu_name(),
                   threads=torch.get_num_threads(), torch=torch.__version__, gemm_library=library_path(),
                   cpu_level=cpu_level())
    print(f"{context['cpu']}, {context['threads']} threads, torch {context['torch']}, commit {context['commit']}, "
          f"GEMM through {context['gemm_library']}, CPU kernels at level {context['cpu_level']}, "
          f"load average {os.getloadavg()[0]:.1f}")
    rows = measure(args.backends, args.repeats, args.warmup, gemm_size)
    print()
    print(markdown(rows))
    save(rows, context, args.out)


if __name__ == "__main__":
    main()
