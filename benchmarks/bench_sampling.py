"""Sampling speed (elements per second, microseconds per element) per provider, and model.loss
forward+backward per backend, as a markdown table; rows are appended to DIR/model.csv.

    python benchmarks/bench_sampling.py [--out benchmarks/results] [--repeats 3] [--threads N]

The machine's limit (a large float32 GEMM, benchmarks/machine_limit.py) is timed in the same run: interleaved
with every round of model.loss, whose FLOP rate is reported as a share of it (its products as torch's FLOP
counter sees them on the cpu backend), and once before the sampling rows. Those are judged by their speedup
(latency-bound: batch 1-8, one element after another); the cpu sampler's FLOP rate is shown beside it (its
products, machine_limit.sampler_flops, and those of the feature networks' sweeps and linear layers).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import time

import torch
from machine_limit import counted_flops, gemm_runner, library_path, share
from results_csv import append_rows
from sampling_cases import LOSS, SAMPLING, build, loss_runner, sample_runner, time_per_call

import melnet_fast

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def context(threads: int) -> dict:
    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        except OSError:
            return ""
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return dict(date=datetime.datetime.now().isoformat(timespec="seconds"), commit=git("rev-parse", "--short", "HEAD"),
                machine=platform.node(), cpu=f"{cpu} x{os.cpu_count()}", threads=threads, torch=torch.__version__,
                gemm_library=library_path(), load_1min=round(os.getloadavg()[0], 2))


def interleaved_ms(runs: dict, repeats: int) -> dict:
    """Milliseconds of every call of each function, the functions taking turns round after round."""
    for run in runs.values():
        run()
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append((time.perf_counter() - start) * 1e3)
    return times


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    ctx = context(torch.get_num_threads())
    gemm, gemm_flops = gemm_runner()
    gemm_ms = statistics.median(interleaved_ms({"gemm": gemm}, args.repeats)["gemm"])
    sampling_gemm_gflops = gemm_flops / gemm_ms / 1e6
    print(f"{ctx['cpu']}, {ctx['threads']} threads; GEMM ({ctx['gemm_library']}): "
          f"{sampling_gemm_gflops:.0f} GFLOP/s; load average {ctx['load_1min']}\n")
    rows = []
    print("| preset | batch | provider | us / element | elements / s | GFLOP/s, share of GEMM | speedup vs reference |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for preset, batch, frames in SAMPLING:
        model = build(preset)
        per_elem, rate = {}, {}
        for provider in ("recompute-per-element", "reference", "cpu"):
            if provider != "recompute-per-element" and provider not in melnet_fast.available_backends():
                continue
            reps = args.repeats if provider != "reference" else 1
            runner = sample_runner(model, provider, batch, frames)
            seconds, elems = time_per_call(runner, reps, 1)
            if provider == "recompute-per-element":  # one element per call, the whole spectrogram's worth per element
                per_elem[provider] = seconds
            else:
                per_elem[provider] = seconds / elems
            if provider == "cpu":
                rate[provider] = share(counted_flops(runner), seconds, sampling_gemm_gflops)
        for provider, sec in per_elem.items():
            speed = per_elem["reference"] / sec
            # Elements per second count every batch row: the batch is generated in parallel.
            gflops, frac = rate.get(provider, (None, None))
            shown = f"{gflops:.1f}, {frac:.1%}" if gflops else ""
            print(f"| {preset} | {batch} | {provider} | {sec * 1e6:.1f} | {batch / sec:,.0f} | {shown} | "
                  f"{speed:.2f}x |")
            row = dict(ctx, kind="sample", preset=preset, batch=batch, frames=frames, provider=provider,
                       us_per_element=round(sec * 1e6, 2), elements_per_s=round(batch / sec, 1),
                       speedup_vs_reference=round(speed, 2))
            if gflops:
                row.update(gflops=round(gflops, 2), gemm_gflops=round(sampling_gemm_gflops, 1),
                           share_of_gemm=round(frac, 4))
            rows.append(row)
    print()
    print("| preset | batch x frames | backend | loss fwd+bwd ms (IQR) | GFLOP/s | share of GEMM | "
          "speedup vs reference (IQR) |")
    print("|---|---|---|---:|---:|---:|---:|")
    for preset, batch, frames in LOSS:
        model = build(preset)
        runs = {b: loss_runner(model, b, batch, frames) for b in ("reference", "cpu")
                if b in melnet_fast.available_backends()}
        flops = counted_flops(runs["cpu"]) if "cpu" in runs else None
        times = interleaved_ms({**runs, "gemm": gemm}, max(args.repeats, 5))
        gemm_gflops = gemm_flops / (statistics.median(times["gemm"]) / 1e3) / 1e9
        for backend in runs:
            q1, v, q3 = statistics.quantiles(times[backend], n=4)
            ratios = [r / t for r, t in zip(times["reference"], times[backend])]
            s_q1, speed, s_q3 = statistics.quantiles(ratios, n=4)
            gflops, frac = share(flops, v / 1e3, gemm_gflops)
            print(f"| {preset} | {batch}x{frames} | {backend} | {v:.1f} ({q1:.1f}-{q3:.1f}) | {gflops:.1f} | "
                  f"{frac:.1%} | {speed:.2f}x ({s_q1:.2f}-{s_q3:.2f}) |")
            rows.append(dict(ctx, kind="loss", preset=preset, batch=batch, frames=frames, provider=backend,
                             ms=round(v, 2), speedup_vs_reference=round(speed, 2), gflops=round(gflops, 2),
                             gemm_gflops=round(gemm_gflops, 1), share_of_gemm=round(frac, 4)))
    os.makedirs(args.out, exist_ok=True)
    path = append_rows(os.path.join(args.out, "model.csv"), rows)
    print(f"\nappended {len(rows)} rows to {path}")


if __name__ == "__main__":
    main()
