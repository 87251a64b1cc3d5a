"""Train MelNet and cMelGAN on the same labelled data for the same time, then score both with `melnet-fast
compare`: the one command behind the README's comparison table.

    python benchmarks/compare_models.py [--minutes 30] [--data synthetic] [--label-from-folder] [--threads 1]
                                        [--clips 64] [--val-clips 32] [--max-segments N] [--out runs/compare]
                                        [--results benchmarks/results]

Both trainings run at the same time, with the same number of threads each, so that they share whatever else the
machine is doing, and each gets the same wall-clock budget (`--max-minutes`); the CPU time each process actually
used is recorded next to the load averages seen during the runs. Models: MelNet's `demo` preset conditioned on
the labels (crops of 32 frames) and cMelGAN's `demo` preset (clips of 32 frames, the same spectrograms).
Writes RESULTS/compare_<data>.json (context, budgets, CPU times, loads, the comparison) and compare_<data>.png
(one sample per label of each model beside the held-out data), and prints the table.
--smoke: the tiny presets for a few steps (kept running by the tests).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_table import cpu_name, git_commit  # noqa: E402 (a script beside this one)


def _commands(args, out: Path):
    """(MelNet train, cMelGAN train, compare) command lines."""
    tiny = args.smoke
    data = ["--data", args.data] + (["--label-from-folder"] if args.label_from_folder else [])
    if args.data == "synthetic":
        data += ["--synthetic-clips", str(args.clips), "--synthetic-val-clips", str(args.val_clips)]
    loop = ["--steps", str(args.steps), "--max-minutes", str(args.minutes), "--seed", str(args.seed),
            "--val-every", str(args.val_every), "--checkpoint-every", str(args.val_every), "--log-every", "10",
            "--no-progress"]
    melnet = ["train", "--preset", "tiny" if tiny else "demo", "--crop-frames", "16" if tiny else "32",
              "--conditional", *data, *loop, "--out", out / "melnet"]
    gan = ["gan", "train", "--preset", "tiny" if tiny else "demo", *data, *loop, "--out", out / "cmelgan"]
    compare = ["compare", "--run", out / "melnet", "--run", out / "cmelgan", "--data", args.data, "--json",
               "--seed", str(args.seed), "--figure", Path(args.results) / f"compare_{_name(args)}.png"] \
        + (["--classifier-steps", "20"] if tiny else []) \
        + (["--max-segments", str(args.max_segments)] if args.max_segments else [])
    return melnet, gan, compare


def _name(args) -> str:
    """compare_<name>.json / .png: the data's name (and _smoke for smoke runs)."""
    return ("synthetic" if args.data == "synthetic" else Path(args.data).stem) + ("_smoke" if args.smoke else "")


def _run(cli_args, threads: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    with open(log, "w") as f:
        return subprocess.Popen([sys.executable, "-m", "melnet_fast", *map(str, cli_args)], stdout=f,
                                stderr=subprocess.STDOUT, env=env, cwd=ROOT)


def _wait(proc: subprocess.Popen) -> dict:
    """Wait for a child; its exit status and the CPU seconds it used (user + system)."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {"exit": proc.returncode, "cpu_s": usage.ru_utime + usage.ru_stime}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=30.0, help="training budget of each model (wall clock)")
    p.add_argument("--data", default="synthetic", help="'synthetic', or a folder / CSV of labelled audio")
    p.add_argument("--label-from-folder", action="store_true", help="label folder data by top-level subfolder")
    p.add_argument("--clips", type=int, default=64, help="synthetic training clips")
    p.add_argument("--val-clips", type=int, default=32, help="synthetic held-out clips (the compare's reference)")
    p.add_argument("--max-segments", type=int, help="held-out segments to score (default all; a large corpus "
                                                    "needs a cap: every model makes one sample per segment)")
    p.add_argument("--threads", type=int, default=1, help="threads of each training process")
    p.add_argument("--steps", type=int, default=10_000_000, help="step cap (the time budget normally stops first)")
    p.add_argument("--val-every", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(ROOT / "runs" / "compare"), help="run directories")
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "results"))
    p.add_argument("--smoke", action="store_true", help="tiny presets, a few steps")
    args = p.parse_args()
    if args.smoke:
        args.minutes, args.steps, args.clips, args.val_clips, args.val_every = 1.0, 3, 4, 2, 3
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    melnet, gan, compare = _commands(args, out)

    loads, stop = [], threading.Event()

    def sample_load():
        while not stop.wait(10.0):
            loads.append(os.getloadavg()[0])

    start_load = os.getloadavg()
    sampler = threading.Thread(target=sample_load, daemon=True)
    sampler.start()
    started = time.time()
    procs = {"melnet": _run(melnet, args.threads, out / "melnet.log"),
             "cmelgan": _run(gan, args.threads, out / "cmelgan.log")}
    usage = {name: _wait(proc) for name, proc in procs.items()}
    stop.set()
    wall = time.time() - started
    for name, u in usage.items():
        if u["exit"] != 0:
            print((out / f"{name}.log").read_text()[-3000:], file=sys.stderr)
            raise SystemExit(f"training {name} failed (exit {u['exit']}); log in {out / f'{name}.log'}")
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    result = subprocess.run([sys.executable, "-m", "melnet_fast", *map(str, compare)], capture_output=True,
                            text=True, env=env, cwd=ROOT)
    if result.returncode != 0:
        raise SystemExit(f"compare failed:\n{result.stderr[-3000:]}")
    comparison = json.loads(result.stdout.strip().splitlines()[-1])
    table = "\n".join(line for line in result.stdout.splitlines() if line.startswith("|"))
    doc = {
        "context": {"date": datetime.datetime.now().isoformat(timespec="seconds"), "commit": git_commit(),
                    "cpu": cpu_name(), "threads_per_model": args.threads, "smoke": args.smoke},
        "budget_minutes": args.minutes, "wall_s": wall, "cpu_s": {k: u["cpu_s"] for k, u in usage.items()},
        "load_1min": {"start": start_load[0], "during_mean": sum(loads) / len(loads) if loads else None,
                      "during_min": min(loads, default=None), "during_max": max(loads, default=None),
                      "end": os.getloadavg()[0]},
        "commands": {k: " ".join(map(str, v)) for k, v in (("melnet", melnet), ("cmelgan", gan), ("compare", compare))},
        "comparison": comparison, "table": table,
    }
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    path = results / f"compare_{_name(args)}.json"
    path.write_text(json.dumps(doc, indent=2) + "\n")
    load = doc["load_1min"]
    print(f"{args.minutes:g} min per model, {args.threads} thread(s) each, run side by side ({wall:.0f} s wall); CPU "
          f"time used: MelNet {usage['melnet']['cpu_s']:.0f} s, cMelGAN {usage['cmelgan']['cpu_s']:.0f} s; 1-min "
          f"load average {load['start']:.1f} at the start, {load['during_min'] or 0:.1f}-{load['during_max'] or 0:.1f}"
          f" during, on {doc['context']['cpu']}")
    print(table)
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
