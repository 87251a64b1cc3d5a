"""Time every op-layer case on every available backend and print a markdown table with the speedup over
"reference"; append the rows to DIR/ops.csv (history, one row per case and backend) and write DIR/ops_latest.json.

    python benchmarks/bench_table.py [--out benchmarks/results] [--repeats 15] [--warmup 3] [--threads N]

Each time is the median of --repeats calls after --warmup calls, with torch's default thread count unless
--threads says otherwise; the spread column is the interquartile range. On a shared machine, run it when
nothing else is busy: the OpenMP loops of both backends slow down by orders of magnitude when one of their
threads is descheduled (seen on a loaded 2-core VM), and --threads 1 gives steadier, if slower, figures.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import platform
import statistics
import subprocess
import time

import torch
from bench_cases import BACKENDS, CASES

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CSV_FIELDS = ["date", "commit", "machine", "cpu", "threads", "torch", "op", "mode", "size", "backend",
              "median_ms", "q1_ms", "q3_ms", "repeats", "speedup_vs_reference"]


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


def time_ms(run, repeats: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def measure(backends, repeats, warmup) -> list[dict]:
    rows = []
    for case in CASES:
        reference_ms = None
        for backend in backends:
            reason = case.skip_reason(backend)
            if reason:
                print(f"skip {case.name} on {backend}: {reason}")
                continue
            times = time_ms(case.runner(backend), repeats, warmup)
            q1, median, q3 = statistics.quantiles(times, n=4)
            if backend == "reference":
                reference_ms = median
            rows.append(dict(op=case.op, mode=case.mode, size=case.size, backend=backend, median_ms=median,
                             q1_ms=q1, q3_ms=q3, repeats=repeats,
                             speedup_vs_reference=reference_ms / median if reference_ms else None))
    return rows


def markdown(rows) -> str:
    lines = ["| op | mode | size | backend | median ms | IQR ms | speedup vs reference |",
             "|---|---|---|---|---:|---:|---:|"]
    for r in rows:
        speedup = "" if r["speedup_vs_reference"] is None else f"{r['speedup_vs_reference']:.2f}x"
        lines.append(f"| {r['op']} | {r['mode']} | {r['size']} | {r['backend']} | {r['median_ms']:.1f} | "
                     f"{r['q1_ms']:.1f}-{r['q3_ms']:.1f} | {speedup} |")
    return "\n".join(lines)


def save(rows, context, out_dir) -> None:
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "ops.csv")
    new = not os.path.exists(path)
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        if new:
            writer.writeheader()
        for r in rows:
            writer.writerow({**context, **r})
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
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if "reference" not in args.backends:
        args.backends.insert(0, "reference")  # the speedup column needs it

    context = dict(date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                   commit=git_commit(), machine=f"{platform.node()} ({platform.machine()})", cpu=cpu_name(),
                   threads=torch.get_num_threads(), torch=torch.__version__)
    print(f"{context['cpu']}, {context['threads']} threads, torch {context['torch']}, commit {context['commit']}")
    rows = measure(args.backends, args.repeats, args.warmup)
    print()
    print(markdown(rows))
    save(rows, context, args.out)


if __name__ == "__main__":
    main()
