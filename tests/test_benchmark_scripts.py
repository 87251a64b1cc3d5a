"""The benchmark scripts in smoke mode (tiny sizes, whatever device exists), so that they keep running as the
package changes: a GPU machine runs the GPU ones unchanged through scripts/gpu_round.sh."""

import csv
import json
import math
import os
import subprocess
import sys

import melnet_fast

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_smoke(script: str, out_dir) -> str:
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", script), "--smoke", "--out", str(out_dir)],
                          capture_output=True, text=True, timeout=180, cwd=ROOT, env=env)
    assert proc.returncode == 0, f"{script} --smoke failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout


def load(out_dir, name: str) -> dict:
    with open(out_dir / f"{name}.json") as f:
        doc = json.load(f)
    assert doc["errors"] == [], doc["errors"]
    for key in ("date", "commit", "device", "torch", "cuda", "triton"):
        assert key in doc["context"], key
    return doc


def csv_rows(out_dir, name: str) -> list[dict]:
    with open(out_dir / f"{name}.csv", newline="") as f:
        return list(csv.DictReader(f))


def positive(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v) and v > 0


def test_training_benchmark_smoke(tmp_path):
    stdout = run_smoke("bench_gpu_training.py", tmp_path)
    doc = load(tmp_path, "gpu_training")
    for key in ("shapes", "sweep", "sweep_cases", "sweep_baseline", "gmm", "gmm_floor", "bandwidth_gbps",
                "train_step", "goals", "skipped", "notes"):
        assert key in doc, key
    assert doc["smoke"] is True
    assert len(doc["shapes"]["tier_shapes"]) == 3  # the tiny preset's three tiers
    # The baseline (the sweep composed from nn.LSTM) runs everywhere; so do the reference gmm and training step.
    assert {r["case"] for r in doc["sweep"] if r["provider"] == doc["sweep_baseline"]} == \
        {c["case"] for c in doc["sweep_cases"]}
    assert "reference" in {r["provider"] for r in doc["gmm"]}
    assert any(r["backend"] == "reference" for r in doc["train_step"])
    assert any(r["backend"] == "auto" for r in doc["train_step"])
    for r in doc["sweep"] + doc["gmm"] + doc["train_step"]:
        assert positive(r["median_ms"]), r
    for r in doc["train_step"]:
        assert positive(r["elements_per_s"]), r
    assert positive(doc["bandwidth_gbps"]) and positive(doc["gmm_floor"]["floor_ms"])
    assert all({"goal", "value", "target", "met"} <= set(g) for g in doc["goals"])
    assert len(csv_rows(tmp_path, "gpu_training")) == len(doc["sweep"]) + len(doc["gmm"]) + len(doc["train_step"])
    assert "### goals" in stdout


def test_sampling_benchmark_smoke(tmp_path):
    stdout = run_smoke("bench_gpu_sampling.py", tmp_path)
    doc = load(tmp_path, "gpu_sampling")
    for key in ("tiers", "whole", "skipped", "notes"):
        assert key in doc, key
    cases = {(r["case"], r["batch"]) for r in doc["tiers"]}
    assert len(cases) == 4  # two tiers at batches 1 and 2
    for case, batch in cases:
        got = {r["provider"] for r in doc["tiers"] if (r["case"], r["batch"]) == (case, batch)}
        assert {"recompute-per-element", "reference"} <= got, (case, batch, got)
    for r in doc["tiers"]:
        assert positive(r["us_per_element"]) and positive(r["elements_per_s"]), r
    whole = doc["whole"]
    assert whole["skipped"] is False and whole["finite"] is True and positive(whole["total_s"])
    assert [t["tier"] for t in whole["tiers"]] == [1, 2, 3]
    assert sum(t["elements"] for t in whole["tiers"]) == whole["elements"]
    assert len(csv_rows(tmp_path, "gpu_sampling")) == len(doc["tiers"])
    assert "### whole spectrogram" in stdout


def test_sanitize_script_imports_and_documents_its_options():
    """sanitize_kernels.py runs only under compute-sanitizer on a GPU; here at least its imports must hold."""
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "sanitize_kernels.py"), "--help"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0 and "usage" in proc.stdout, proc.stderr


def test_sweep_memory_smoke(tmp_path):
    """Each mode in a fresh process at a small shape: the segmented recompute's peak below the stored mode's, and
    autograd holding a fraction of its bytes (the checkpoints instead of every gate)."""
    stdout = run_smoke("sweep_memory.py", tmp_path)
    doc = load(tmp_path, "sweep_memory")
    rows = {r["mode"]: r for r in doc["rows"]}
    assert set(rows) == {"stored", "recompute"}
    for r in rows.values():
        assert positive(r["peak_extra_mib"]) and positive(r["saved_mib"]) and positive(r["fwd_bwd_s"]), r
    assert rows["recompute"]["peak_extra_mib"] < rows["stored"]["peak_extra_mib"]
    assert rows["recompute"]["saved_mib"] < 0.5 * rows["stored"]["saved_mib"]
    assert len(csv_rows(tmp_path, "sweep_memory")) == 2
    assert "peak vs stored" in stdout


def test_gpu_round_smoke(tmp_path):
    """scripts/gpu_round.sh --smoke: every step's command runs (GPU tests collected, benchmarks at tiny sizes), at
    most 8 files come back, and the summary lists every step as ok or skipped."""
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable}
    proc = subprocess.run(["bash", os.path.join(ROOT, "scripts", "gpu_round.sh"), "--smoke"], capture_output=True,
                          text=True, timeout=1200, cwd=ROOT, env=env)
    assert proc.returncode == 0, f"{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}"
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) <= 8 and {"logs.tgz", "summary.txt", "gpu_round.json", "sweep_memory.json"} <= set(files), files
    summary = (tmp_path / "summary.txt").read_text()
    for name in ("info", "build", "tests-cuda", "measure", "tests-triton", "sanitize", "memory"):
        assert any(line.startswith(name) for line in summary.splitlines()), (name, summary)
    assert load(tmp_path, "gpu_round")["smoke"] is True


def test_demo_steps_benchmark_smoke(tmp_path):
    """bench_demo_steps.py (the demo's training steps per backend) in smoke mode: it runs the demo's trainer on
    both backends and writes a row per backend, with the same-run GEMM rate and, with the compiled kernels, each
    backend's FLOP rate as a share of it."""
    run_smoke("bench_demo_steps.py", tmp_path)
    rows = csv_rows(tmp_path, "demo_steps")
    backends = [b for b in ("reference", "cpu") if b in melnet_fast.available_backends()]
    assert [r["backend"] for r in rows] == backends
    for r in rows:
        assert float(r["s_per_step"]) > 0 and int(r["steps_in_budget"]) > 0, r
        assert positive(float(r["gemm_gflops"])), r
        if "cpu" in backends:
            assert positive(float(r["step_gflop"])) and 0 < float(r["share_of_gemm"]) < 1, r

