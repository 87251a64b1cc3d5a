"""The demo's training steps in its time budget, with the C++ kernels ("cpu") against the reference backend in the
same run: `melnet-fast demo`'s model, synthetic data and trainer settings (demo_options: batch, crop, validation
and checkpoint every 100 steps), trained by Trainer.fit in chunks of 100 steps, the backends taking turns chunk
by chunk so that a load that comes and goes slows both alike. Prints seconds per step (validation and
checkpoints included, as in the demo), the steps each backend would fit in the demo's budget, and their ratio;
appends the rows to DIR/demo_steps.csv. The machine's limit (a large float32 GEMM, machine_limit.py) is timed after
every round, and each backend's FLOP rate is given as a share of it: the products of a training step's forward and
backward (model.loss at the demo's batch and crop, as torch's FLOP counter sees them on the cpu backend; the same
work for both backends) over its seconds per step.

    python benchmarks/bench_demo_steps.py [--rounds 2] [--threads N] [--out benchmarks/results] [--smoke]
"""

from __future__ import annotations

import argparse
import copy
import datetime
import os
import statistics
import tempfile
import time

import torch
from bench_table import cpu_level, cpu_name, git_commit
from machine_limit import counted_flops, gemm_runner, library_path, share, timed_gflops
from results_csv import append_rows
from sampling_cases import loss_runner

import melnet_fast
from melnet_fast.cli.demo import (
    DEMO_CLIP_SECONDS,
    DEMO_CROP_FRAMES,
    DEMO_TRAIN_CLIPS,
    DEMO_TRAIN_MINUTES,
    DEMO_VAL_CLIPS,
    demo_config,
    demo_options,
)
from melnet_fast.model import MelNet
from melnet_fast.synthetic import GENRES
from melnet_fast.train import DataSpec, Trainer, build_datasets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHUNK = 100  # steps per turn: the demo's validation and checkpoint interval, so each turn ends with both
WARMUP = 3  # untimed steps of each backend first
GEMM_CALLS = 3  # per round: the median of these is the round's GEMM rate


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="turns of CHUNK steps per backend")
    parser.add_argument("--chunk", type=int, default=CHUNK, help="steps per turn")
    parser.add_argument("--warmup", type=int, default=WARMUP, help="untimed steps of each backend first")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
    parser.add_argument("--smoke", action="store_true",
                        help="one step per backend on 4 clips: checks that the script runs, times nothing")
    args = parser.parse_args(argv)
    clips, val_clips = DEMO_TRAIN_CLIPS, DEMO_VAL_CLIPS
    if args.smoke:
        args.rounds, args.chunk, args.warmup, clips, val_clips = 1, 1, 0, 4, 2
    if args.threads:
        torch.set_num_threads(args.threads)
    backends = [b for b in ("reference", "cpu") if b in melnet_fast.available_backends()]
    if "cpu" not in backends:
        print("the cpu backend is not available here (no compiled extension): the reference alone is timed")
    if min(args.rounds, args.chunk) < 1 or args.warmup < 0:
        parser.error("--rounds and --chunk must be >= 1, --warmup >= 0")
    config = demo_config()
    budget = DEMO_TRAIN_MINUTES * 60
    print(f"{cpu_name()}, {torch.get_num_threads()} threads, CPU kernels at level {cpu_level()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        spec = DataSpec("synthetic", synthetic_clips=clips, synthetic_val_clips=val_clips,
                        synthetic_seconds=DEMO_CLIP_SECONDS, synthetic_seed=0, label_names=list(GENRES))
        train, val = build_datasets(spec, config, DEMO_CROP_FRAMES, cache_dir=os.path.join(tmp, "cache"))
        torch.manual_seed(0)
        model = MelNet(config)
        step_flops = None
        if "cpu" in backends:
            step_flops = counted_flops(loss_runner(copy.deepcopy(model), "cpu", config.batch_size, DEMO_CROP_FRAMES))
        gemm, gemm_flops = gemm_runner()
        gemm()
        gemm_rates = []
        trainers = {}
        for b in backends:  # the same initial weights and data order for both
            options = demo_options(config, len(train), steps=0, max_seconds=None)
            trainers[b] = Trainer(copy.deepcopy(model), train, val, options, os.path.join(tmp, b), data_spec=spec)
        per_step = {b: [] for b in backends}
        try:
            for b, trainer in trainers.items():  # warm-up (first calls, allocations), not timed
                trainer.options.steps = args.warmup
                with melnet_fast.use_backend(b):
                    trainer.fit()
            for _ in range(args.rounds):
                for b, trainer in trainers.items():
                    trainer.options.steps += args.chunk
                    start = time.perf_counter()
                    with melnet_fast.use_backend(b):
                        trainer.fit()
                    per_step[b].append((time.perf_counter() - start) / args.chunk)
                gemm_rates.append(timed_gflops(gemm, gemm_flops, GEMM_CALLS))
        finally:
            for trainer in trainers.values():
                trainer.close()
    load = os.getloadavg()[0]
    ratios = [r / c for r, c in zip(per_step["reference"], per_step["cpu"])] if "cpu" in per_step else []
    gemm_rate = statistics.median(gemm_rates)
    print(f"\nGEMM ({library_path()}) {gemm_rate:.0f} GFLOP/s (median of the rounds); a step's products "
          f"{step_flops / 1e9:.2f} GFLOP" if step_flops else f"\nGEMM {gemm_rate:.0f} GFLOP/s")
    print(f"\n| backend | s / step (median of {args.rounds} turns of {args.chunk}) | steps in {budget:g} s | "
          f"GFLOP/s, share of GEMM | vs reference |\n|---|---:|---:|---:|---:|")
    rows = []
    context = dict(date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                   commit=git_commit(), cpu=cpu_name(), cpu_level=cpu_level(), threads=torch.get_num_threads(),
                   torch=torch.__version__, load_1min=round(load, 2), chunk=args.chunk, rounds=args.rounds,
                   gemm_gflops=round(gemm_rate, 1), gemm_library=library_path(),
                   step_gflop=None if step_flops is None else round(step_flops / 1e9, 3))
    for b, times in per_step.items():
        step = statistics.median(times)
        ratio = statistics.median(ratios) if ratios and b == "cpu" else None
        gflops, frac = share(step_flops, step, gemm_rate)
        rate = "" if gflops is None else f"{gflops:.1f}, {frac:.1%}"
        print(f"| {b} | {step:.3f} | {budget / step:,.0f} | {rate} | {'' if ratio is None else f'{ratio:.2f}x'} |")
        rows.append(dict(context, backend=b, s_per_step=round(step, 4), steps_in_budget=round(budget / step),
                         gflops=None if gflops is None else round(gflops, 2),
                         share_of_gemm=None if frac is None else round(frac, 4),
                         speedup_vs_reference=None if ratio is None else round(ratio, 3),
                         ratio_min=round(min(ratios), 3) if ratios and b == "cpu" else None,
                         ratio_max=round(max(ratios), 3) if ratios and b == "cpu" else None))
    print(f"load average at the end {load:.1f}")
    os.makedirs(args.out, exist_ok=True)
    path = append_rows(os.path.join(args.out, "demo_steps.csv"), rows)
    print(f"appended {len(rows)} rows to {path}")


if __name__ == "__main__":
    main()
