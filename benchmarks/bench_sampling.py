"""Sampling speed (elements per second, microseconds per element) per provider, and model.loss
forward+backward per backend, as a markdown table; rows are appended to DIR/model.csv.

    python benchmarks/bench_sampling.py [--out benchmarks/results] [--repeats 3] [--threads N]
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import platform
import subprocess

import torch
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
                machine=platform.node(), cpu=f"{cpu} x{os.cpu_count()}", threads=threads, torch=torch.__version__)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    ctx = context(torch.get_num_threads())
    rows = []
    print("| preset | batch | provider | us / element | elements / s | speedup vs reference |")
    print("|---|---:|---|---:|---:|---:|")
    for preset, batch, frames in SAMPLING:
        model = build(preset)
        per_elem = {}
        for provider in ("recompute-per-element", "reference", "cpu"):
            if provider != "recompute-per-element" and provider not in melnet_fast.available_backends():
                continue
            reps = args.repeats if provider != "reference" else 1
            seconds, elems = time_per_call(sample_runner(model, provider, batch, frames), reps, 1)
            if provider == "recompute-per-element":  # one element per call, the whole spectrogram's worth per element
                per_elem[provider] = seconds
            else:
                per_elem[provider] = seconds / elems
        for provider, sec in per_elem.items():
            speed = per_elem["reference"] / sec
            # Elements per second count every batch row: the batch is generated in parallel.
            print(f"| {preset} | {batch} | {provider} | {sec * 1e6:.1f} | {batch / sec:,.0f} | {speed:.2f}x |")
            rows.append(dict(ctx, kind="sample", preset=preset, batch=batch, frames=frames, provider=provider,
                             us_per_element=round(sec * 1e6, 2), elements_per_s=round(batch / sec, 1),
                             speedup_vs_reference=round(speed, 2)))
    print()
    print("| preset | batch x frames | backend | loss fwd+bwd ms | speedup vs reference |")
    print("|---|---|---|---:|---:|")
    for preset, batch, frames in LOSS:
        model = build(preset)
        ms = {}
        for backend in ("reference", "cpu"):
            if backend in melnet_fast.available_backends():
                run = loss_runner(model, backend, batch, frames)
                ms[backend] = time_per_call(run, max(args.repeats, 5), 1)[0] * 1e3
        for backend, v in ms.items():
            print(f"| {preset} | {batch}x{frames} | {backend} | {v:.1f} | {ms['reference'] / v:.2f}x |")
            rows.append(dict(ctx, kind="loss", preset=preset, batch=batch, frames=frames, provider=backend,
                             ms=round(v, 2), speedup_vs_reference=round(ms["reference"] / v, 2)))
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "model.csv")
    fields = sorted({k for r in rows for k in r})
    new = not os.path.exists(path)
    if not new:
        with open(path) as f:
            old_fields = next(csv.reader(f), [])
        fields = old_fields + [k for k in fields if k not in old_fields]
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        if new:
            w.writeheader()
        w.writerows(rows)
    print(f"\nappended {len(rows)} rows to {path}")


if __name__ == "__main__":
    main()
