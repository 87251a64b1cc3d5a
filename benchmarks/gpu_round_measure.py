"""The measurements of the GPU round (scripts/gpu_round.sh), all in one process on one device, most valuable first:

  sweep    per shape: the cuDNN fp16 composition (one nn.LSTM per direction with its reshapes) fwd+bwd and peak
           memory; every sweep design (SWEEP_DESIGNS) in bf16: fwd, fwd+bwd, peak memory stored and with
           recompute, and, for designs with step kernels, the forward and backward steps split into the wide phase
           (every direction active) and the narrow phase (only the longest direction left), the rest of the op
           being its GEMMs and host work;
  floor    the GEMM floor per shape: the sweep's large products (input projections, dx, dW_ih, dW_hh and the
           per-step recurrent products batched as one GEMM per direction) alone in bf16 (cuBLAS);
  barrier  the cost of one grid-wide barrier (csrc/cuda/grid_barrier.cu: the slope over two barrier counts);
  sampler  us per element at batch 1 and 8, small and Blizzard initial tiers, every SAMPLER_VARIANTS entry (weight
           dtype, block-count cap, design);
  spectrogram  a whole 10 s Blizzard spectrogram (all 6 tiers, random weights) per sampler design, or its time
           extrapolated from one time-factor of frames when the whole does not fit the budget.

    python3 benchmarks/gpu_round_measure.py --out DIR [--sections sweep floor barrier sampler spectrogram]
        [--budget-s 110]
    python3 benchmarks/gpu_round_measure.py --smoke --out DIR      (tiny shapes on the CPU; CUDA-only parts skip)

Writes DIR/gpu_round.json (rewritten after every row) and appends DIR/gpu_round.csv (device, driver, versions,
commit, date per row); prints a one-screen summary last. A section stops starting cases when its share of the
budget is spent (and lists what it skipped). A second sweep or sampler design adds one line to SWEEP_DESIGNS or
SAMPLER_VARIANTS below.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import time
from typing import Callable

import torch
from bench_gpu_sampling import TierCase, cached_sampler, measure_cached, random_model, tier_network
from bench_gpu_training import LSTMComposition, sweep_inputs
from gpu_bench_common import (
    ROOT,
    Budget,
    Results,
    elapsed_ms,
    is_oom,
    markdown,
    peak_extra_bytes,
    pick_device,
    release,
    run_context,
    short_error,
    skip_reason,
    summarize,
    time_call,
)

import melnet_fast
from melnet_fast import MelNetConfig
from melnet_fast.ops import DIRECTION_CODES, lstm_sweep_2d
from melnet_fast.ops.dispatch import DEFAULT_VARIANT, use_variant
from melnet_fast.ops.lstm_sweep import gpu_host

CSV_FIELDS = ["section", "case", "size", "provider", "dtype", "mode", "phase", "median_ms", "q1_ms", "q3_ms", "reps",
              "peak_mib", "tflops", "vs_cudnn", "vs_floor", "us_per_element", "value", "unit"]


# ------------------------------------------------------------------------------------------- the designs (hooks)
def _cuda_steps():
    from melnet_fast.ops.lstm_sweep.cpp_backend import CudaSteps
    return CudaSteps


def _triton_steps():
    from melnet_fast.ops.lstm_sweep.triton_backend import TritonSteps
    return TritonSteps


def _gemm_steps():
    from melnet_fast.ops.lstm_sweep.gemm_backend import STEPS
    return STEPS


@dataclasses.dataclass(frozen=True)
class SweepDesign:
    """One implementation of the sweep to measure: the backend it runs under (melnet_fast.use_backend) and, when
    it is built on gpu_host's step kernels, a function returning them (for the phase split; None: whole op only)."""

    name: str
    backend: str
    steps: Callable[[], object] | None = None


SWEEP_DESIGNS = [
    SweepDesign("cuda", "cuda", _cuda_steps),
    # The second design: wide steps as cuBLAS GEMMs + fused epilogues, the narrow phase as one persistent launch
    # (ops/lstm_sweep/gemm_steps.py; its prediction per phase is in README.md's GPU section).
    SweepDesign("cuda_gemm", "cuda_gemm", _gemm_steps),
    SweepDesign("triton", "triton", _triton_steps),
]


@dataclasses.dataclass(frozen=True)
class SamplerVariant:
    """One way to run sample_tier: backend, weight dtype (None: the network's float32), the block-count cap
    as a fraction of the SMs (MELNET_FAST_SAMPLER_MAX_BLOCKS; None: the kernel's own occupancy limit) and the
    variant of the backend (dispatch.use_variant: "flags" is the second CUDA design)."""

    name: str
    backend: str
    weight_dtype: torch.dtype | None = None
    blocks_per_sm: float | None = None
    variant: str = DEFAULT_VARIANT


SAMPLER_VARIANTS = [
    SamplerVariant("cuda fp32 w", "cuda"),
    SamplerVariant("cuda bf16 w", "cuda", torch.bfloat16),
    SamplerVariant("cuda bf16 w, 1 block/SM", "cuda", torch.bfloat16, 1.0),
    SamplerVariant("cuda bf16 w, 1 block/2 SMs", "cuda", torch.bfloat16, 0.5),
    # The second design (folded projections, flag waits, resident rows), its prediction in the README's GPU
    # section: ~30-45 us per element on Blizzard tier 1 in bfloat16 at batch 1.
    SamplerVariant("cuda flags bf16 w", "cuda", torch.bfloat16, variant="flags"),
    SamplerVariant("cuda flags fp32 w", "cuda", variant="flags"),
]


# ---------------------------------------------------------------------------------------------------- shapes
@dataclasses.dataclass(frozen=True)
class Shape:
    name: str
    B: int
    T: int
    F: int
    I: int
    H: int
    directions: tuple = ("t+", "f+", "f-")

    @property
    def size(self) -> str:
        return f"B{self.B}-T{self.T}-F{self.F}-I{self.I}-H{self.H}-{'.'.join(self.directions)}"

    @property
    def lengths(self) -> list[int]:
        return [self.T if d[0] == "t" else self.F for d in self.directions]

    def flops(self) -> float:
        """FLOPs of one fwd+bwd: 2 N R 4H (3I + 3H) (projections, dx, dW_ih; recurrent fwd, bwd, dW_hh)."""
        N, R = self.B * self.T * self.F, len(self.directions)
        return 2.0 * N * R * 4 * self.H * (3 * self.I + 3 * self.H)


def shapes(smoke: bool) -> list[Shape]:
    if smoke:
        return [Shape("tiny", 2, 6, 4, 8, 8)]
    return [Shape("blizzard tier 1", 32, 215, 32, 512, 512),  # the headline: 8.3 TFLOP per fwd+bwd
            Shape("blizzard tier 1, B=8", 8, 215, 32, 512, 512),
            Shape("small preset, H=64", 8, 64, 32, 64, 64)]


# ------------------------------------------------------------------------------------------------ helpers
def inputs(s: Shape, device, dtype) -> list[torch.Tensor]:
    """x, w_ih, w_hh, bias, h0, c0 (leaves needing grad) and grad_y in dtype: bench_gpu_training's random inputs."""
    *leaves, grad_y = (t.to(dtype) for t in sweep_inputs(s, device))
    return [t.requires_grad_() for t in leaves] + [grad_y]


class Timed:
    """gpu_host.StepKernels that time every step of the kernels they wrap: a pair of CUDA events around it on a
    GPU, the host clock on the CPU (where the kernels run synchronously: Triton's interpreter in smoke runs)."""

    def __init__(self, kernels, device):
        self.kernels, self.marks, self.cuda = kernels, [], device.type == "cuda"

    def _timed(self, name, step, fn, *args):
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn(*args)
            end.record()
        else:
            start = time.perf_counter()
            fn(*args)
            end = time.perf_counter()
        self.marks.append((name, step, start, end))

    def forward_step(self, step, *args):
        self._timed("forward_step", step, self.kernels.forward_step, step, *args)

    def backward_step(self, step, *args):
        self._timed("backward_step", step, self.kernels.backward_step, step, *args)

    def __getattr__(self, name):
        """A design's narrow phase (gpu_host.NarrowPhase), passed through and timed as one mark at its first step."""
        kernels = self.__dict__.get("kernels")
        if name == "wide_steps" and hasattr(kernels, name):
            return kernels.wide_steps
        if name in ("forward_narrow", "backward_narrow") and hasattr(kernels, name):
            mark, fn = name.replace("narrow", "step"), getattr(kernels, name)
            return lambda s_begin, *args: self._timed(mark, s_begin, fn, s_begin, *args)
        raise AttributeError(name)

    def phases(self, wide: int) -> dict:
        """{(fwd|bwd, wide|narrow): ms} summed over the recorded steps (after a synchronize)."""
        if self.cuda:
            torch.cuda.synchronize()
        out = {}
        for name, step, start, end in self.marks:
            key = ("fwd" if name == "forward_step" else "bwd", "wide" if step < wide else "narrow")
            out[key] = out.get(key, 0.0) + (start.elapsed_time(end) if self.cuda else (end - start) * 1e3)
        return out


def phase_split(design: SweepDesign, s: Shape, leaves, grad_y, reps: int, device) -> dict:
    """Median ms per (fwd|bwd, wide|narrow) of the design's step kernels run by gpu_host, over reps runs."""
    codes = [DIRECTION_CODES[d] for d in s.directions]
    x, w_ih, w_hh, bias, h0, c0 = [t.detach() for t in leaves]
    runs = []
    for i in range(reps + 1):
        timed = Timed(design.steps(), device)
        y, gates, cell = gpu_host.forward(timed, x, w_ih, w_hh, bias, h0, c0, codes, True)
        gpu_host.backward(timed, grad_y, x, w_ih, w_hh, h0, c0, y, gates, cell, codes)
        if i:  # the first run warms up (Triton's JIT, cuBLAS heuristics)
            runs.append(timed.phases(min(s.lengths)))
        del y, gates, cell
    return {k: summarize([r[k] for r in runs if k in r])["median_ms"] for k in runs[0]}


# ---------------------------------------------------------------------------------------------------- sections
def run_sweep(res: Results, device, smoke: bool, budget: Budget, timing: dict) -> None:
    fp16 = torch.float16 if device.type == "cuda" else torch.float32  # no fast fp16 LSTM on the CPU
    low = torch.bfloat16 if device.type == "cuda" else torch.float32
    for s in shapes(smoke):
        print(f"sweep {s.name}: {s.size}, {s.flops() / 1e12:.2f} TFLOP per fwd+bwd")
        base_ms = None
        if budget.exhausted():
            res.skip(s.name, "sweep", "the section's time budget ran out")
            continue
        try:  # the cuDNN composition, fp16
            base_ms = measure_cudnn(res, s, device, fp16, timing)
        except Exception as exc:  # noqa: BLE001 - a failed provider is a row of the report, not the end of it
            if smoke and not is_oom(exc):
                raise
            res.error(s.name, "cuDNN composition", short_error(exc))
        release(device)
        # On the CPU (smoke runs): the cpu backend, and the Triton designs in Triton's interpreter.
        designs = SWEEP_DESIGNS if device.type == "cuda" else [SweepDesign("cpu", "cpu")] + [
            d for d in SWEEP_DESIGNS if d.backend == "triton"]
        for design in designs:
            reason = skip_reason("lstm_sweep_2d", design.backend, low, device)
            if reason or budget.exhausted():
                res.skip(s.name, design.name, reason or "the section's time budget ran out")
                continue
            try:
                measure_design(res, design, s, device, low, timing, base_ms)
            except Exception as exc:  # noqa: BLE001
                if smoke and not is_oom(exc):
                    raise
                res.error(s.name, design.name, "out of memory" if is_oom(exc) else short_error(exc))
            release(device)


def measure_cudnn(res, s: Shape, device, dtype, timing) -> float:
    """The composition of one nn.LSTM per direction (cuDNN on a GPU) in dtype: fwd+bwd row; returns its ms."""
    *leaves, grad_y = inputs(s, device, dtype)
    module = LSTMComposition(s.I, s.H, s.directions).to(device, dtype).load(*[t.detach() for t in leaves[1:]])
    params = [leaves[0]] + list(module.parameters())

    def step():
        torch.autograd.grad(module(leaves[0]), params, grad_y)

    row = time_call(step, device, **timing)
    peak = peak_extra_bytes(step, device)
    dt = str(dtype)[6:]
    add(res, "sweep", s, f"cuDNN composition {dt}", dt, "stored", "fwd+bwd", row,
        peak_mib=None if peak is None else peak / 2**20, tflops=s.flops() / row["median_ms"] / 1e9)
    return row["median_ms"]


def measure_design(res, design: SweepDesign, s: Shape, device, dtype, timing, base_ms) -> None:
    *leaves, grad_y = inputs(s, device, dtype)
    dt = str(dtype)[6:]
    for mode, recompute in (("stored", False), ("recompute", True)):
        def fwd(recompute=recompute):
            with melnet_fast.use_backend(design.backend):
                return lstm_sweep_2d(*leaves, s.directions, recompute=recompute)

        def step(fwd=fwd):
            torch.autograd.grad(fwd(), leaves, grad_y)

        both = time_call(step, device, **timing)
        peak = peak_extra_bytes(step, device)
        add(res, "sweep", s, design.name, dt, mode, "fwd+bwd", both, peak_mib=None if peak is None else peak / 2**20,
            tflops=s.flops() / both["median_ms"] / 1e9,
            vs_cudnn=None if base_ms is None else base_ms / both["median_ms"])
        if mode == "stored":
            add(res, "sweep", s, design.name, dt, mode, "fwd", time_call(fwd, device, **timing))
    if design.steps is not None:
        split = phase_split(design, s, leaves, grad_y, timing["reps"] // 3 or 1, device)
        for (direction, phase), ms in sorted(split.items()):
            add(res, "sweep", s, design.name, dt, "stored", f"{direction} steps {phase}", dict(median_ms=ms))


def run_floor(res: Results, device, smoke: bool, budget: Budget, timing: dict) -> None:
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    for s in shapes(smoke):
        if budget.exhausted():
            res.skip(s.name, "GEMM floor", "the section's time budget ran out")
            continue
        products = gemm_products(s, device, dtype)
        total = 0.0
        for name, (call, flops) in products.items():
            row = time_call(call, device, **timing)
            total += row["median_ms"]
            add(res, "floor", s, "cuBLAS" if device.type == "cuda" else "torch.mm", str(dtype)[6:], "", name, row,
                tflops=flops / row["median_ms"] / 1e9)
        add(res, "floor", s, "cuBLAS" if device.type == "cuda" else "torch.mm", str(dtype)[6:], "", "GEMM floor",
            dict(median_ms=total), tflops=s.flops() / total / 1e9)
        del products
        release(device)


def gemm_products(s: Shape, device, dtype) -> dict:
    """{name: (call, FLOPs)}: the sweep's large products at shape s as GEMMs alone (random operands), the sum of
    their FLOPs being Shape.flops()."""
    N, R, G, H, I = s.B * s.T * s.F, len(s.directions), 4 * s.H, s.H, s.I

    def m(*shape):
        return torch.randn(*shape, device=device).to(dtype)

    a_x, w, dg, y = m(N, I), m(I, R * G), m(N, R * G), m(R, N, H)
    w_hh_t, w_hh, dg_r = m(R, H, G), m(R, G, H), m(R, G, N)
    return {
        "input projections": (lambda: a_x @ w, 2 * N * I * R * G),
        "dx": (lambda: dg @ w.t(), 2 * N * R * G * I),
        "dW_ih": (lambda: dg.t() @ a_x, 2 * N * R * G * I),
        "dW_hh": (lambda: torch.bmm(dg_r, y), 2 * N * R * G * H),
        "recurrent fwd, batched": (lambda: torch.bmm(y, w_hh_t), 2 * N * R * H * G),
        "recurrent bwd, batched": (lambda: torch.bmm(dg_r.transpose(1, 2), w_hh), 2 * N * R * G * H),
    }


def run_barrier(res: Results, device, smoke: bool, budget: Budget, timing: dict) -> None:
    if device.type != "cuda" or not hasattr(torch.ops.melnet_fast, "grid_barrier_probe"):
        res.skip("grid barrier", "probe", "needs a CUDA device and the extension's CUDA kernels")
        return
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    counter = torch.zeros(1, dtype=torch.int32, device=device)
    counts = (200, 2200)
    for blocks in (sms, 2 * sms):
        ms = []
        for n in counts:
            def probe(n=n, blocks=blocks):
                torch.ops.melnet_fast.grid_barrier_probe(counter, blocks, n)

            probe()  # warm-up
            ms.append(summarize([elapsed_ms(probe, device) for _ in range(5)])["median_ms"])
        us = (ms[1] - ms[0]) * 1e3 / (counts[1] - counts[0])
        res["rows"].append(dict(section="barrier", case=f"{blocks} blocks of 256", provider="grid.sync", value=us,
                                unit="us per barrier"))
        print(f"  grid barrier, {blocks} blocks: {us:.2f} us")
    res.save()


def run_sampler(res: Results, device, smoke: bool, budget: Budget, timing: dict) -> None:
    cases = ([TierCase("tiny tier 1", "tiny", 1, 0.5)] if smoke
             else [TierCase("small tier 1", "small", 1), TierCase("blizzard tier 1", "blizzard", 1)])
    variants = [SamplerVariant("cpu", "cpu")] if device.type != "cuda" else SAMPLER_VARIANTS
    sms = torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 0
    for case in cases:
        net = tier_network(case, device)
        T, F = case.grid()
        for batch in ((1,) if smoke else (1, 8)):
            for v in variants:
                if budget.exhausted():
                    res.skip(f"{case.name} batch {batch}", v.name, "the section's time budget ran out")
                    continue
                reason = skip_reason("sample_tier", v.backend, torch.float32, device)
                if reason:
                    res.skip(case.name, v.name, reason)
                    continue
                cap = None if v.blocks_per_sm is None else str(max(1, int(sms * v.blocks_per_sm)))
                try:
                    with blocks_cap(cap), use_variant("sample_tier", v.variant):
                        run = cached_sampler(net, v.backend, batch, F, v.weight_dtype, device)
                        s_per_elem, frames = measure_cached(run, T, F, 0.05 if smoke else 0.3, 1 if smoke else 3)
                except Exception as exc:  # noqa: BLE001
                    if smoke:
                        raise
                    res.error(case.name, v.name, short_error(exc))
                    continue
                res["rows"].append(dict(section="sampler", case=f"{case.name} batch {batch}", size=f"{T}x{F}",
                                        provider=v.name, us_per_element=s_per_elem * 1e6, value=frames,
                                        unit="frames timed"))
                print(f"  sampler {case.name} batch {batch} {v.name}: {s_per_elem * 1e6:.1f} us per element")
                res.save()
        del net
        release(device)


@contextlib.contextmanager
def blocks_cap(value: str | None):
    old = os.environ.get("MELNET_FAST_SAMPLER_MAX_BLOCKS")
    if value is not None:
        os.environ["MELNET_FAST_SAMPLER_MAX_BLOCKS"] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("MELNET_FAST_SAMPLER_MAX_BLOCKS", None)
        else:
            os.environ["MELNET_FAST_SAMPLER_MAX_BLOCKS"] = old


def run_spectrogram(res: Results, device, smoke: bool, budget: Budget, timing: dict) -> None:
    """A whole 10 s Blizzard spectrogram (MelNet(blizzard).sample(1, max_frames): all 6 tiers and the feature
    networks, random weights, bfloat16 sampler weights) per sampler design, the second first. Each design is first
    timed on one time-factor's worth of frames; the whole clip runs when that predicts it fits the budget, else
    the row holds the prediction (extrapolated: the per-frame cost of every tier is the same at every frame)."""
    preset = "tiny" if smoke else "blizzard"
    cfg = MelNetConfig.preset(preset, max_seconds=0.5) if smoke else MelNetConfig.preset(preset)
    if device.type != "cuda" and not smoke:
        res.skip(f"{preset} whole", "cuda", "needs a CUDA device")
        return
    model = random_model(cfg, device)
    backend = "cuda" if device.type == "cuda" else "cpu"
    wdtype = torch.bfloat16 if device.type == "cuda" else None
    for variant in ("flags", DEFAULT_VARIANT) if device.type == "cuda" else (DEFAULT_VARIANT,):
        name = f"{backend} {variant} bf16 w" if wdtype is not None else backend
        if budget.exhausted():
            res.skip(f"{preset} whole", name, "the section's time budget ran out")
            continue
        try:
            with melnet_fast.use_backend(backend), use_variant("sample_tier", variant):
                short = cfg.time_factor
                model.sample(1, short, weight_dtype=wdtype)  # warm-up
                t = time.perf_counter()
                model.sample(1, short, weight_dtype=wdtype)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                predicted = (time.perf_counter() - t) * cfg.max_frames / short
                whole = predicted <= budget.left() - 5
                if whole:
                    t = time.perf_counter()
                    x = model.sample(1, cfg.max_frames, weight_dtype=wdtype)
                    if device.type == "cuda":
                        torch.cuda.synchronize(device)
                    seconds = time.perf_counter() - t
                    if not bool(torch.isfinite(x).all()):
                        raise RuntimeError("non-finite sample")
        except Exception as exc:  # noqa: BLE001
            if smoke:
                raise
            res.error(f"{preset} whole", name, short_error(exc))
            continue
        value = seconds if whole else predicted
        res["rows"].append(dict(section="spectrogram", case=f"{preset} {cfg.max_frames} frames x {cfg.n_mels}",
                                provider=name, value=value, unit="s" if whole else "s (extrapolated)",
                                predicted_s=predicted))
        print(f"  whole {preset} spectrogram {name}: {value:.2f} s" + ("" if whole else " (extrapolated)"))
        res.save()
    del model
    release(device)


SECTIONS = {"sweep": (run_sweep, 0.5), "floor": (run_floor, 0.1), "barrier": (run_barrier, 0.05),
            "sampler": (run_sampler, 0.35), "spectrogram": (run_spectrogram, 0.2)}


# ---------------------------------------------------------------------------------------------------- report
def add(res: Results, section: str, s: Shape, provider: str, dtype: str, mode: str, phase: str, timing: dict,
        **extra) -> None:
    row = dict(section=section, case=s.name, size=s.size, provider=provider, dtype=dtype, mode=mode, phase=phase,
               **{k: timing.get(k) for k in ("median_ms", "q1_ms", "q3_ms", "reps")}, **extra)
    res["rows"].append(row)
    res.save()
    extras = "".join(f"  {k} {v:.3g}" for k, v in extra.items() if isinstance(v, float))
    print(f"  {provider:<26} {dtype:<8} {mode:<9} {phase:<22} {row['median_ms']:9.3f} ms{extras}")


def summary(res) -> str:
    """One screen: per shape the fwd+bwd of cuDNN, the floor and every design (time, x cuDNN, x floor, memory);
    the barrier; the sampler's us per element."""
    rows = res["rows"]
    floors = {r["case"]: r["median_ms"] for r in rows if r["section"] == "floor" and r["phase"] == "GEMM floor"}
    lines = []
    table = []
    for r in rows:
        if r["section"] == "sweep" and r["phase"] == "fwd+bwd":
            floor = floors.get(r["case"])
            table.append([r["case"], r["provider"], r["mode"], r["median_ms"], r.get("vs_cudnn"),
                          None if floor is None else r["median_ms"] / floor, r.get("peak_mib")])
    for case, ms in floors.items():
        table.append([case, "GEMM floor (the GEMMs alone)", "", ms, None, 1.0, None])
    lines.append(markdown(["shape", "provider", "mode", "fwd+bwd ms", "x cuDNN (speedup)", "x floor", "peak MiB"],
                          table))
    phases = [[r["case"], r["provider"], r["phase"], r["median_ms"]] for r in rows
              if r["section"] == "sweep" and "steps" in r["phase"]]
    if phases:
        lines.append(markdown(["shape", "design", "steps", "ms"], phases))
    other = [[r["section"], r["case"], r["provider"], r.get("us_per_element") or r.get("value"),
              "us per element" if r["section"] == "sampler" else r.get("unit")]
             for r in rows if r["section"] in ("barrier", "sampler", "spectrogram")]
    if other:
        lines.append(markdown(["section", "case", "provider", "value", "unit"], other))
    if res["skipped"] or res["errors"]:
        lines.append(f"skipped {len(res['skipped'])}, errors {len(res['errors'])} (see gpu_round.json)")
    return "\n\n".join(lines)


def driver_version() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20).stdout.strip()
        return out.splitlines()[0] if out else None
    except (OSError, subprocess.SubprocessError):
        return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
    parser.add_argument("--smoke", action="store_true", help="tiny shapes, any device, seconds (CI)")
    parser.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=list(SECTIONS))
    parser.add_argument("--budget-s", type=float, default=110.0)
    parser.add_argument("--summary", metavar="JSON", help="only print the summary of a gpu_round.json")
    args = parser.parse_args(argv)
    if args.summary:
        with open(args.summary) as f:
            print(summary(json.load(f)))
        return 0
    device = pick_device()
    if args.smoke:
        torch.set_num_threads(1)
        if device.type == "cpu":  # the Triton designs in the interpreter (read when their kernels are first used)
            os.environ.setdefault("TRITON_INTERPRET", "1")
    res = Results(args.out, "gpu_round", dict(run_context(device), driver=driver_version()), CSV_FIELDS)
    res["rows"], res["smoke"] = [], args.smoke
    timing = (dict(warmup=1, reps=2, max_s=0.2, min_reps=1) if args.smoke
              else dict(warmup=2, reps=9, max_s=0.6, min_reps=3))
    ctx = res["context"]
    print(f"{ctx['device']}, driver {ctx['driver']}, torch {ctx['torch']}, triton {ctx['triton']}, "
          f"commit {ctx['commit']}")
    total = Budget(args.budget_s)
    used = sum(SECTIONS[s][1] for s in args.sections)
    for i, name in enumerate(args.sections):
        later = sum(SECTIONS[s][1] for s in args.sections[i + 1:]) / used
        fn, _ = SECTIONS[name]
        fn(res, device, args.smoke, Budget(max(0.0, total.left() - args.budget_s * later)), timing)
        release(device)
        res.save()
    csv_path = res.append_csv(res["rows"])
    print(f"\nwrote {res.json_path}; appended rows to {csv_path} ({total.elapsed():.0f} s)\n")
    print(summary(res))
    return 1 if res["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
