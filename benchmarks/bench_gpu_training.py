"""GPU benchmark of training: the 2D LSTM sweep (time and peak memory against the same sweep composed from
nn.LSTM / cuDNN), the mixture NLL against its memory-bound floor, and a full training step of the Blizzard
initial tier. Writes DIR/gpu_training.json (rewritten after every case) and appends one row per case to
DIR/gpu_training.csv; prints markdown tables last.

    python3 benchmarks/bench_gpu_training.py [--out benchmarks/results] [--parts sweep gmm train] [--budget-s 120]
    python3 benchmarks/bench_gpu_training.py --smoke --out /tmp/x     (tiny sizes on any device, a few seconds)

Shapes come from the "blizzard" preset and the split schedule (melnet_fast.multiscale.tier_shapes): a 10 s clip
is 860 frames x 256 mels; the initial tier is 215 x 32 and tier 3 (a feature-extraction network's grid) 215 x 64.
Targets of the GPU kernels: the bf16 sweep fwd+bwd >= 1.5x cuDNN fp16 and within 1.5x of the GEMM floor at the
Blizzard tier-1 shape, never slower than cuDNN at any shape; peak memory with recompute <= half of the cuDNN
composition's; gmm_nll fwd+bwd within 1.5x of the memory-bound floor.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys

import torch
from gpu_bench_common import (
    DTYPES,
    ROOT,
    Budget,
    Results,
    compiled_backends,
    device_kernel_ms,
    is_oom,
    markdown,
    measure_bandwidth_gbps,
    peak_extra_bytes,
    pick_device,
    release,
    run_context,
    short_error,
    skip_reason,
    time_call,
)
from torch import nn

import melnet_fast
from melnet_fast import MelNet, MelNetConfig
from melnet_fast.modules import SweepLSTM
from melnet_fast.multiscale import tier_shapes
from melnet_fast.ops import gmm_nll, lstm_sweep_2d

SWEEP_OP, GMM_OP = "lstm_sweep_2d", "gmm_nll"
CSV_FIELDS = ["section", "case", "size", "provider", "backend", "dtype", "recompute", "batch", "median_ms", "q1_ms",
              "q3_ms", "reps", "peak_extra_mib", "rel_err", "speedup", "speedup_vs", "kernel_ms", "floor_ms",
              "elements_per_s"]


# ---------------------------------------------------------------------------------------------------- shapes
@dataclasses.dataclass(frozen=True)
class SweepCase:
    name: str
    B: int
    T: int
    F: int
    I: int
    H: int
    directions: tuple

    @property
    def size(self) -> str:
        return f"B{self.B}-T{self.T}-F{self.F}-I{self.I}-H{self.H}-" + ".".join(self.directions)


def paper_shapes(smoke: bool) -> dict:
    """Tier grids of a max-length clip of the preset (blizzard; tiny with 0.5 s clips in smoke mode), printed
    for the record."""
    cfg = MelNetConfig.preset("tiny", max_seconds=0.5) if smoke else MelNetConfig.preset("blizzard")
    frames = cfg.max_frames
    shapes = tier_shapes(frames, cfg.n_mels, cfg.n_tiers)
    print(f"preset {'tiny' if smoke else 'blizzard'}: {cfg.max_seconds:g} s at {cfg.sample_rate} Hz, hop "
          f"{cfg.hop_length} -> {frames} frames (a multiple of {cfg.time_factor}) x {cfg.n_mels} mels; tier grids "
          "(T x F, tier 1 first): " + ", ".join(f"{t}x{f}" for t, f in shapes))
    return dict(preset="tiny" if smoke else "blizzard", frames=frames, n_mels=cfg.n_mels, layers=list(cfg.layers),
                hidden=cfg.hidden_size, batch=cfg.batch_size, tier_shapes=[list(s) for s in shapes])


def sweep_cases(shapes: dict, smoke: bool) -> list[SweepCase]:
    if smoke:
        return [SweepCase("tiny t+f+f-", 2, 5, 4, 8, 8, ("t+", "f+", "f-")),
                SweepCase("tiny f+", 2, 5, 4, 8, 8, ("f+",))]
    B, D = shapes["batch"], shapes["hidden"]
    (T1, F1), (T3, F3) = shapes["tier_shapes"][0], shapes["tier_shapes"][2]
    small = MelNetConfig.preset("small")
    Ts, Fs = tier_shapes(small.max_frames, small.n_mels, small.n_tiers)[0]
    return [  # the headline first, then the cheap one, so that a short budget still covers both
        SweepCase("tier1 time-delayed", B, T1, F1, D, D, ("t+", "f+", "f-")),
        SweepCase("small H=64", small.batch_size, Ts, Fs, small.hidden_size, small.hidden_size, ("t+", "f+", "f-")),
        SweepCase("tier1 freq-delayed", B, T1, F1, D, D, ("f+",)),
        SweepCase("tier3 feature-extr", B, T3, F3, D, D, ("t+", "t-", "f+", "f-")),
    ]


# ---------------------------------------------------------------------------------------------------- baseline
class LSTMComposition(nn.Module):
    """The sweep composed from one nn.LSTM (cuDNN on a GPU) per direction, with the permute / flip / reshape /
    cat copies it needs, as melnet_fast/ops/lstm_sweep/reference.py does; trainable initial states h0, c0 [R, H]."""

    def __init__(self, I: int, H: int, directions):
        super().__init__()
        self.directions = list(directions)
        R = len(self.directions)
        self.lstms = nn.ModuleList(nn.LSTM(I, H) for _ in range(R))
        self.h0 = nn.Parameter(torch.zeros(R, H))
        self.c0 = nn.Parameter(torch.zeros(R, H))

    @torch.no_grad()
    def load(self, w_ih, w_hh, bias, h0, c0) -> LSTMComposition:
        """Take the op's weights, so both compute the same function (nn.LSTM's second bias set to zero)."""
        for r, lstm in enumerate(self.lstms):
            lstm.weight_ih_l0.copy_(w_ih[r])
            lstm.weight_hh_l0.copy_(w_hh[r])
            lstm.bias_ih_l0.copy_(bias[r])
            lstm.bias_hh_l0.zero_()
        self.h0.copy_(h0)
        self.c0.copy_(c0)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, T, F, I] -> [B, T, F, R*H]."""
        B, T, F, I = x.shape
        outs = []
        for r, (d, lstm) in enumerate(zip(self.directions, self.lstms)):
            if d[0] == "t":  # one sequence per (b, f)
                seq = x.permute(1, 0, 2, 3).reshape(T, B * F, I)
            else:  # one sequence per (b, t)
                seq = x.permute(2, 0, 1, 3).reshape(F, B * T, I)
            if d[1] == "-":
                seq = seq.flip(0)
            n = seq.shape[1]
            h = lstm(seq, (self.h0[r].expand(1, n, -1).contiguous(), self.c0[r].expand(1, n, -1).contiguous()))[0]
            if d[1] == "-":
                h = h.flip(0)
            H = h.shape[-1]
            h = h.reshape(T, B, F, H).permute(1, 0, 2, 3) if d[0] == "t" else h.reshape(F, B, T, H).permute(1, 2, 0, 3)
            outs.append(h)
        return torch.cat(outs, dim=-1)


# ---------------------------------------------------------------------------------------------------- sweep
@dataclasses.dataclass(frozen=True)
class SweepProvider:
    backend: str  # "nn.LSTM" for the baseline, else a melnet_fast backend
    dtype: str
    recompute: bool = False

    @property
    def label(self) -> str:
        return f"{self.backend} {self.dtype}" + (" recompute" if self.recompute else "")


def sweep_providers(device: torch.device, smoke: bool) -> tuple[list[SweepProvider], SweepProvider]:
    """(providers in running order, the baseline the speedups are measured against)."""
    if device.type == "cuda":
        baselines = [SweepProvider("nn.LSTM", "fp32"), SweepProvider("nn.LSTM", "fp16")]
        combos = [("bf16", False), ("bf16", True), ("fp16", False), ("fp32", False)]
    else:  # nn.LSTM has no fast fp16 on the CPU, and the cpu backend takes fp32 / fp64
        baselines = [SweepProvider("nn.LSTM", "fp32")]
        combos = [("fp32", False), ("fp32", True)]
    ours = [SweepProvider(b, dt, rc) for b in compiled_backends(device, smoke) for dt, rc in combos]
    return baselines + ours, baselines[-1]


def sweep_inputs(case: SweepCase, device: torch.device, seed: int = 0) -> list[torch.Tensor]:
    """fp32 x, w_ih, w_hh, bias, h0, c0 and grad_out, random (never zeros), weights scaled by 1/sqrt(fan-in)."""
    g = torch.Generator(device=device).manual_seed(seed)
    R, H, I = len(case.directions), case.H, case.I

    def rand(*shape, scale=1.0):
        return torch.randn(*shape, generator=g, device=device) * scale

    return [rand(case.B, case.T, case.F, I), rand(R, 4 * H, I, scale=I ** -0.5), rand(R, 4 * H, H, scale=H ** -0.5),
            rand(R, 4 * H, scale=0.5), rand(R, H, scale=0.5), rand(R, H, scale=0.5),
            rand(case.B, case.T, case.F, R * H)]


def rel_err(y: torch.Tensor, ref: torch.Tensor | None) -> float | None:
    if ref is None:
        return None
    y = y.float()
    return float((y - ref).norm() / ref.norm())


def sweep_one(case: SweepCase, p: SweepProvider, master: list[torch.Tensor], y_ref, device, timing):
    """Time fwd+bwd of one provider at one case; its peak memory; its forward's error against nn.LSTM fp32.

    Returns (row, the forward output in fp32 when p is the nn.LSTM fp32 baseline, else None)."""
    dtype = DTYPES[p.dtype]
    x, *weights, grad_out = [t.detach().to(dtype) for t in master]  # detach: fp32 .to() would alias master
    if p.backend == "nn.LSTM":
        module = LSTMComposition(case.I, case.H, case.directions).to(device, dtype).load(*weights)
        leaves = [x.requires_grad_()] + list(module.parameters())

        def forward():
            return module(x)
    else:
        leaves = [t.requires_grad_() for t in (x, *weights)]

        def forward():
            with melnet_fast.use_backend(p.backend):
                return lstm_sweep_2d(*leaves, case.directions, recompute=p.recompute)

    def step():
        torch.autograd.grad(forward(), leaves, grad_out)

    with torch.no_grad():
        y = forward()
    err = rel_err(y, y_ref)
    y = y.float() if p.backend == "nn.LSTM" and p.dtype == "fp32" else None  # the error reference of the others
    row = dict(time_call(step, device, **timing), rel_err=err)
    peak = peak_extra_bytes(step, device)
    row["peak_extra_mib"] = None if peak is None else peak / 2**20
    return row, y


def run_sweeps(cases, device, smoke, res: Results, budget: Budget, timing: dict) -> None:
    providers, baseline = sweep_providers(device, smoke)
    res["sweep_baseline"] = baseline.label
    rows = res["sweep"]
    for case in cases:
        print(f"sweep {case.name}: {case.size}")
        master = sweep_inputs(case, device)
        res["sweep_cases"].append(dict(case=case.name, **dataclasses.asdict(case), size=case.size,
                                       input_mib=master[0].numel() * 4 / 2**20))
        y_ref, base_ms = None, None
        for p in providers:
            if budget.exhausted():
                res.skip(case.name, p.label, "the sweep section's time budget ran out")
                continue
            if p.backend != "nn.LSTM":
                reason = skip_reason(SWEEP_OP, p.backend, DTYPES[p.dtype], device)
                if reason:
                    res.skip(case.name, p.label, reason)
                    continue
            row = None
            try:
                row, ref = sweep_one(case, p, master, y_ref, device, timing)
            except Exception as exc:
                if smoke and not is_oom(exc):
                    raise
                res.error(case.name, p.label, "out of memory" if is_oom(exc) else short_error(exc))
            if row is None:
                release(device)  # after the except block, which held the failed run's tensors
                continue
            y_ref = ref if ref is not None else y_ref
            if p == baseline:
                base_ms = row["median_ms"]
            row.update(section="sweep", case=case.name, size=case.size, provider=p.label, backend=p.backend,
                       dtype=p.dtype, recompute=p.recompute, speedup_vs=baseline.label,
                       speedup=None if base_ms is None else base_ms / row["median_ms"])
            rows.append(row)
            err = "" if row["rel_err"] is None else f"  err {row['rel_err']:.2e}"
            print(f"  {p.label:<22} {row['median_ms']:9.3f} ms  peak+ {row['peak_extra_mib'] or 0:9.1f} MiB{err}")
            res.save()
        del master, y_ref
        release(device)


# ---------------------------------------------------------------------------------------------------- gmm
def run_gmm(shapes: dict, device, smoke, res: Results, budget: Budget, timing: dict) -> None:
    """gmm_nll fwd+bwd at the head's shape of the initial tier (B*T*F rows, K components), fp32.

    Floor = (bytes of x, mu, log_sigma, logit_pi read once + bytes of the gradients of mu, log_sigma, logit_pi
    written once) / measured copy bandwidth; the head's output needs no gradient of x. The nll written and the
    grad_out read (1/(3K+1) of the inputs each) are left out of the floor. Several input sets are rotated so that
    repeated calls do not run from L2. The device time (profiler, kernels only) is compared with the floor; the
    eager time also holds the host's launch overhead and the op's finiteness check (a synchronisation).
    """
    B = 2 if smoke else shapes["batch"]
    T, F = shapes["tier_shapes"][0]
    K = 3 if smoke else 10
    n_sets = 1 if smoke else 3
    bw = measure_bandwidth_gbps(device, 16 if device.type == "cpu" else 1024)
    res["bandwidth_gbps"] = bw
    N = B * T * F
    floor_bytes = (N + 3 * N * K) * 4 + 3 * N * K * 4
    floor_ms = floor_bytes / (bw * 1e9) * 1e3
    res["gmm_floor"] = dict(shape=[B, T, F, K], rows=N, bytes=floor_bytes, floor_ms=floor_ms)
    print(f"gmm_nll: x [{B}, {T}, {F}], K={K} ({N} rows), fp32; copy bandwidth {bw:,.0f} GB/s; floor "
          f"{floor_bytes / 2**20:.1f} MiB -> {floor_ms * 1e3:.1f} us")
    g = torch.Generator(device=device).manual_seed(1)
    sets = []
    for _ in range(n_sets):
        x = torch.randn(B, T, F, generator=g, device=device) * 1.5
        params = [(torch.randn(B, T, F, K, generator=g, device=device) * s).requires_grad_() for s in (1.0, 0.5, 2.0)]
        sets.append((x, params, torch.randn(B, T, F, generator=g, device=device)))
    for backend in compiled_backends(device, smoke) + ["reference"]:
        if budget.exhausted():
            res.skip("gmm_nll", backend, "the gmm section's time budget ran out")
            continue
        if backend != "reference":
            reason = skip_reason(GMM_OP, backend, torch.float32, device)
            if reason:
                res.skip("gmm_nll", backend, reason)
                continue
        turn = [0]

        def step(backend=backend, turn=turn):
            x, params, grad_out = sets[turn[0] % n_sets]
            turn[0] += 1
            with melnet_fast.use_backend(backend):
                nll = gmm_nll(x, *params)
            torch.autograd.grad(nll, params, grad_out)

        try:
            row = time_call(step, device, **timing)
            kern = device_kernel_ms(step, device, reps=3 * n_sets)
        except Exception as exc:
            if smoke:
                raise
            res.error("gmm_nll", backend, short_error(exc))
            release(device)
            continue
        kernel_ms, top = kern if kern else (None, None)
        row.update(section="gmm", case="gmm_nll fwd+bwd", size=f"{B}x{T}x{F}-K{K}", provider=backend, backend=backend,
                   dtype="fp32", kernel_ms=kernel_ms, floor_ms=floor_ms, top_kernels=top,
                   kernel_over_floor=None if kernel_ms is None else kernel_ms / floor_ms,
                   eager_over_floor=row["median_ms"] / floor_ms)
        res["gmm"].append(row)
        print(f"  {backend:<10} eager {row['median_ms']:.3f} ms, kernels "
              f"{'n/a' if kernel_ms is None else f'{kernel_ms:.3f} ms'}, floor {floor_ms:.3f} ms")
        res.save()


# ---------------------------------------------------------------------------------------------------- training
def set_recompute(model: nn.Module, flag: bool) -> bool:
    """Set SweepLSTM.recompute on every sweep of the model; False if this version of SweepLSTM has no such flag."""
    sweeps = [m for m in model.modules() if isinstance(m, SweepLSTM)]
    if not sweeps or not all(hasattr(m, "recompute") for m in sweeps):
        return False
    for m in sweeps:
        m.recompute = flag
    return True


def run_train_step(shapes: dict, device, smoke, res: Results, budget: Budget, timing: dict, batch: int) -> None:
    """forward, loss, backward of the initial tier through MelNet.loss(x, tiers=[1]) (all its layers), with
    backend auto against reference, under bf16 autocast (GPU) and in fp32. On out-of-memory the batch halves."""
    cfg = MelNetConfig.preset(shapes["preset"])
    frames, T1, F1 = shapes["frames"], *shapes["tier_shapes"][0]
    torch.manual_seed(0)
    with torch.device(device):
        model = MelNet(cfg)
    amp_modes = ["bf16-autocast", "fp32"] if device.type == "cuda" else ["fp32"]
    providers = [(b, amp, False) for amp in amp_modes for b in ("auto", "reference")]
    providers.insert(1, ("auto", amp_modes[0], True))
    print(f"training step: MelNet({shapes['preset']}).loss(x [B, {frames}, {cfg.n_mels}], tiers=[1]): tier 1 is "
          f"{T1}x{F1}, {cfg.layers[0]} layers of width {cfg.hidden_size}; batch {batch} (halved on OOM)")
    inputs: dict[int, torch.Tensor] = {}
    for backend, amp, recompute in providers:
        label = f"{backend} {amp}" + (" recompute" if recompute else "")
        if budget.exhausted():
            res.skip("train step tier 1", label, "the training section's time budget ran out")
            continue
        if recompute and not set_recompute(model, True):
            res.skip("train step tier 1", label, "SweepLSTM has no recompute flag in this version")
            continue
        B, row = batch, None
        while B >= 1:
            if B not in inputs:
                inputs[B] = torch.randn(B, frames, cfg.n_mels, device=device,
                                        generator=torch.Generator(device=device).manual_seed(B))
            x = inputs[B]

            def step(x=x, backend=backend, amp=amp):
                model.zero_grad(set_to_none=True)
                autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if amp == "bf16-autocast"
                            else contextlib.nullcontext())
                with melnet_fast.use_backend(backend), autocast:
                    loss = model.loss(x, tiers=[1])
                loss.backward()

            try:
                row = time_call(step, device, **{**timing, "warmup": 1, "max_s": 3 * timing["max_s"]})
                model.zero_grad(set_to_none=True)  # the gradients are part of the step's peak, not of its base
                peak = peak_extra_bytes(step, device)
                row["peak_extra_mib"] = None if peak is None else peak / 2**20
                break
            except Exception as exc:
                if smoke and not is_oom(exc):
                    raise
                error = "out of memory" if is_oom(exc) else short_error(exc)
            # Past the except block the exception, and the frames holding the failed step's tensors, are gone.
            model.zero_grad(set_to_none=True)
            release(device)
            if error != "out of memory":
                res.error("train step tier 1", label, error)
                break
            print(f"  {label}: out of memory at batch {B}")
            inputs.pop(B, None)
            B //= 2
        set_recompute(model, False)
        model.zero_grad(set_to_none=True)
        release(device)
        if row is None:
            if B < 1:
                res.error("train step tier 1", label, "out of memory at batch 1")
            continue
        elements = B * T1 * F1
        row.update(section="train", case="train step tier 1", size=f"B{B}-T{T1}-F{F1}-L{cfg.layers[0]}",
                   provider=label, backend=backend, dtype=amp, recompute=recompute, batch=B,
                   elements_per_s=elements / (row["median_ms"] * 1e-3))
        res["train_step"].append(row)
        print(f"  {label:<28} batch {B}: {row['median_ms']:.1f} ms, {row['elements_per_s']:,.0f} elements/s, "
              f"peak+ {row['peak_extra_mib'] or 0:.0f} MiB")
        res.save()
    by = {r["provider"]: r for r in res["train_step"]}
    for r in res["train_step"]:
        ref = by.get(f"reference {r['dtype']}")
        if ref:
            r.update(speedup=r["elements_per_s"] / ref["elements_per_s"], speedup_vs=ref["provider"])


# ---------------------------------------------------------------------------------------------------- goals
def goals(res: Results, device) -> list[dict]:
    """The kernels' targets, judged on this run's rows (one line per compiled backend that ran). They are GPU
    targets: on the CPU (smoke mode) the values are listed and left unjudged."""
    out = []
    sweep = res["sweep"]
    first_case = res["sweep_cases"][0]["case"] if res["sweep_cases"] else None
    low = "bf16" if device.type == "cuda" else "fp32"
    base = res["sweep_baseline"]
    for backend in sorted({r["backend"] for r in sweep if r["backend"] != "nn.LSTM"}):
        plain = [r for r in sweep if r["backend"] == backend and r["dtype"] == low and not r["recompute"]]
        at_first = [r for r in plain if r["case"] == first_case and r["speedup"] is not None]
        if at_first:
            v = at_first[0]["speedup"]
            out.append(dict(goal=f"sweep {backend} {low} fwd+bwd vs {base}, {first_case}", value=v, target=">= 2",
                            met=v >= 2))
        speedups = [r["speedup"] for r in plain if r["speedup"] is not None]
        if speedups:
            out.append(dict(goal=f"sweep {backend} {low} never slower than {base} (min over shapes)",
                            value=min(speedups), target=">= 1", met=min(speedups) >= 1))
        rec = [r for r in sweep if r["backend"] == backend and r["recompute"] and r["case"] == first_case]
        base_row = [r for r in sweep if r["provider"] == base and r["case"] == first_case]
        if rec and base_row and rec[0]["peak_extra_mib"] and base_row[0]["peak_extra_mib"]:
            v = rec[0]["peak_extra_mib"] / base_row[0]["peak_extra_mib"]
            out.append(dict(goal=f"peak memory {rec[0]['provider']} / {base}, {first_case}", value=v,
                            target="<= 0.5", met=v <= 0.5))
    for r in res["gmm"]:
        if r["backend"] != "reference":
            v = r["kernel_over_floor"] if r["kernel_over_floor"] is not None else r["eager_over_floor"]
            kind = "kernels" if r["kernel_over_floor"] is not None else "eager"
            out.append(dict(goal=f"gmm_nll {r['backend']} fwd+bwd ({kind}) / memory floor", value=v,
                            target="<= 1.5", met=v <= 1.5))
    for r in res["train_step"]:
        if r["backend"] == "auto" and r.get("speedup") is not None:
            out.append(dict(goal=f"train step {r['provider']} vs {r['speedup_vs']} (elements/s)", value=r["speedup"],
                            target="(report)", met=None))
    if device.type != "cuda":
        for g in out:
            g["met"] = None
    return out


def print_tables(res: Results) -> None:
    print("\n### lstm_sweep_2d fwd+bwd (speedup vs " + str(res["sweep_baseline"]) + ")\n")
    print(markdown(["case", "provider", "ms", "IQR ms", "speedup", "peak+ MiB", "rel err"],
                   [[r["case"], r["provider"], r["median_ms"], f"{r['q1_ms']:.3g}-{r['q3_ms']:.3g}", r["speedup"],
                     r["peak_extra_mib"], None if r["rel_err"] is None else f"{r['rel_err']:.1e}"]
                    for r in res["sweep"]]))
    if res.doc.get("gmm_floor"):
        fl = res["gmm_floor"]
        print(f"\n### gmm_nll fwd+bwd {fl['shape']} fp32: floor {fl['floor_ms'] * 1e3:.1f} us at "
              f"{res['bandwidth_gbps']:,.0f} GB/s copy bandwidth\n")
        print(markdown(["provider", "eager ms", "kernels ms", "kernels / floor", "eager / floor"],
                       [[r["provider"], r["median_ms"], r["kernel_ms"], r["kernel_over_floor"], r["eager_over_floor"]]
                        for r in res["gmm"]]))
    if res["train_step"]:
        print("\n### training step, initial tier (MelNet.loss(tiers=[1]) + backward)\n")
        print(markdown(["provider", "batch", "ms", "elements/s", "vs reference", "peak+ MiB"],
                       [[r["provider"], r["batch"], r["median_ms"], r["elements_per_s"], r.get("speedup"),
                         r["peak_extra_mib"]] for r in res["train_step"]]))
    print("\n### goals\n")
    print(markdown(["goal", "value", "target", "met"],
                   [[g["goal"], g["value"], g["target"], {True: "yes", False: "NO", None: ""}[g["met"]]]
                    for g in res["goals"]]))
    if res["errors"]:
        print(f"\n{len(res['errors'])} provider(s) failed: " + "; ".join(f"{e['case']} / {e['provider']}: "
                                                                         f"{e['error']}" for e in res["errors"]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, any device, a few seconds (CI)")
    parser.add_argument("--parts", nargs="+", default=["sweep", "gmm", "train"], choices=["sweep", "gmm", "train"])
    parser.add_argument("--budget-s", type=float, default=120.0,
                        help="wall-clock budget; cases past a section's share are skipped (and listed)")
    parser.add_argument("--train-batch", type=int, default=8,
                        help="batch of the training step (halved on out-of-memory; the paper's 32 needs ~4x "
                             "the memory of 8 and more than an H100's 80 GB for the fp32 reference)")
    args = parser.parse_args(argv)
    if args.smoke:  # tiny ops: a second OpenMP thread only adds contention (orders of magnitude on a busy CI box)
        torch.set_num_threads(1)
    device = pick_device()
    res = Results(args.out, "gpu_training", run_context(device), CSV_FIELDS)
    for key in ("sweep", "sweep_cases", "gmm", "train_step", "goals"):
        res[key] = []
    res["sweep_baseline"], res["bandwidth_gbps"] = None, None
    res["smoke"] = args.smoke
    ctx = res["context"]
    print(f"{ctx['device']}, torch {ctx['torch']}, CUDA {ctx['cuda']}, triton {ctx['triton']}, commit {ctx['commit']}")
    shapes = paper_shapes(args.smoke)
    res["shapes"] = shapes
    timing = (dict(warmup=1, reps=2, max_s=0.2, min_reps=1) if args.smoke
              else dict(warmup=2, reps=10, max_s=0.8, min_reps=3))
    total = Budget(args.budget_s)
    shares = {"sweep": 0.55, "gmm": 0.1, "train": 0.35}
    used = sum(shares[p] for p in args.parts)
    for i, part in enumerate(args.parts):
        # What is left, less the shares of the sections still to come: time a section leaves flows on.
        later = sum(shares[p] for p in args.parts[i + 1:]) / used
        section = Budget(max(0.0, total.left() - args.budget_s * later))
        if part == "sweep":
            run_sweeps(sweep_cases(shapes, args.smoke), device, args.smoke, res, section, timing)
        elif part == "gmm":
            run_gmm(shapes, device, args.smoke, res, section, timing)
        else:
            run_train_step(shapes, device, args.smoke, res, section, timing, 2 if args.smoke else args.train_batch)
        release(device)  # the section's tensors died with its frame: hand their cached blocks back
        res.save()
    res["goals"] = goals(res, device)
    res.save()
    csv_path = res.append_csv(res["sweep"] + res["gmm"] + res["train_step"])
    print(f"\nwrote {res.json_path}; appended rows to {csv_path} ({total.elapsed():.0f} s)")
    print_tables(res)
    return 1 if res["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
