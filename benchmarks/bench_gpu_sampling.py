"""GPU benchmark of sampling: elements per second and microseconds per element of one tier at batch 1, 8 and
64 per provider, and the whole 10 s Blizzard spectrogram at batch 1 through MelNet.sample. Writes
DIR/gpu_sampling.json (rewritten after every case) and appends one row per case to DIR/gpu_sampling.csv; prints
markdown tables last.

    python3 benchmarks/bench_gpu_sampling.py [--out benchmarks/results] [--parts tier whole] [--budget-s 100]
    python3 benchmarks/bench_gpu_sampling.py --smoke --out /tmp/x     (tiny sizes on any device, a few seconds)

Providers (see benchmarks/sampling_cases.py for the CPU suite):
  recompute-per-element  what the public implementations do: the whole tier network re-run over the tier's
                         grid for every element; one forward is timed and is the cost of one element
                         (O((T F)^2) in all)
  reference              the eager cached sampler (Python per element)
  cuda / cpu             the compiled cached sampler; cuda-bf16: the cuda sampler with bfloat16 weights, float32 data
Each measurement is capped: the cached samplers draw only the first few frames of the tier (as many as fit a
fixed time, whole frames so each frame's sweeps are counted) and the time per element is extrapolated from
them; the row says how many frames were drawn. Elements per second count every batch row.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
import time

import numpy as np
import torch
from gpu_bench_common import (
    ROOT,
    Budget,
    Results,
    is_oom,
    markdown,
    pick_device,
    release,
    run_context,
    short_error,
    skip_reason,
    sync,
    time_call,
)

import melnet_fast
from melnet_fast import MelNet, MelNetConfig, ops
from melnet_fast.modules import TierNetwork
from melnet_fast.multiscale import tier_shapes
from melnet_fast.ops.gmm import draw_noise

SAMPLER_OP = "sample_tier"
RECOMPUTE = "recompute-per-element"
RECOMPUTE_MAX_POSITIONS = 2**21  # B*T*F of one recomputing forward; beyond it the forward's activations need > ~30 GB
CSV_FIELDS = ["section", "case", "preset", "tier", "layers", "hidden", "grid", "batch", "provider", "frames_timed",
              "median_ms", "us_per_element", "elements_per_s", "speedup_vs_recompute", "speedup_vs_reference"]


@dataclasses.dataclass(frozen=True)
class TierCase:
    name: str
    preset: str
    tier: int  # 1 = initial tier
    max_seconds: float | None = None  # shorter clips than the preset's (smoke mode)

    def config(self) -> MelNetConfig:
        if self.max_seconds is None:
            return MelNetConfig.preset(self.preset)
        return MelNetConfig.preset(self.preset, max_seconds=self.max_seconds)

    def grid(self) -> tuple[int, int]:
        """(T, F) of this tier for a max-length clip of the preset."""
        c = self.config()
        return tier_shapes(c.max_frames, c.n_mels, c.n_tiers)[self.tier - 1]


def tier_cases(smoke: bool) -> tuple[list[TierCase], tuple[int, ...]]:
    if smoke:
        return [TierCase("tiny tier 1", "tiny", 1, 0.5), TierCase("small tier 2", "small", 2, 1.0)], (1, 2)
    cases = [TierCase("blizzard tier 1 (12 layers)", "blizzard", 1),
             TierCase("blizzard tier 2 (5 layers)", "blizzard", 2),
             TierCase("blizzard tier 6 (2 layers)", "blizzard", 6),
             TierCase("small tier 1 (4 layers)", "small", 1)]
    return cases, (1, 8, 64)


def tier_network(case: TierCase, device: torch.device) -> TierNetwork:
    """The tier's network with random weights; the head scaled down (as sampling_cases.build) so that an
    untrained model's draws stay finite. Upsampling tiers take the feature network's D channels as z."""
    c = case.config()
    torch.manual_seed(case.tier)
    with torch.device(device):
        net = TierNetwork(c.hidden_size, c.layers[case.tier - 1], c.n_mixtures, c.hidden_size if case.tier > 1 else 0)
    with torch.no_grad():
        net.head.weight.mul_(0.1)
    return net.eval()


def providers(device: torch.device) -> list[str]:
    compiled = ["cuda", "cuda-bf16"] if device.type == "cuda" else ["cpu"]
    return ["recompute-per-element", "reference"] + compiled


# ---------------------------------------------------------------------------------------------------- one tier
def conditioning(net: TierNetwork, grid, device, seed: int):
    """(cz_t, cz_f) [B, T, F, D] on `grid`: zeros for the initial tier, W_z z of a random z for the others."""
    if net.cond_dim == 0:
        return net.conditioning_terms(None, grid)
    g = torch.Generator(device=device).manual_seed(seed)
    z = torch.randn(*grid, net.cond_dim, generator=g, device=device) * 0.5
    with torch.no_grad():
        return net.conditioning_terms(z)


def cached_sampler(net: TierNetwork, backend: str, batch: int, F: int, weight_dtype, device):
    """run(frames): draw `frames` whole frames of the tier with ops.sample_tier (inputs made before the clock)."""
    weights = net.sampler_weights()
    if weight_dtype is not None:
        weights = [w.to(weight_dtype) for w in weights]
    made = {}

    def inputs(frames):
        if frames not in made:
            grid = (batch, frames, F)
            gen = torch.Generator(device=device).manual_seed(frames)
            u, eps = draw_noise(grid, device, torch.float32, gen)
            made.clear()  # keep one set: at batch 64 and many frames they are large
            made[frames] = (torch.zeros(grid, device=device), *conditioning(net, grid, device, frames), u, eps)
        return made[frames]

    def run(frames):
        args = inputs(frames)
        sync(device)
        t = time.perf_counter()
        with melnet_fast.use_backend(backend):
            x, _ = ops.sample_tier(*args, weights, net.n_layers, net.n_mixtures, 1.0, 0)
        sync(device)
        elapsed = time.perf_counter() - t
        if not bool(torch.isfinite(x).all()):
            raise RuntimeError(f"{backend} drew non-finite values")
        return elapsed

    return run


def measure_cached(run, T: int, F: int, target_s: float, reps: int) -> tuple[float, int]:
    """(median seconds per element position, frames drawn per timed call): one warm-up call of one frame, one
    call of one frame to estimate, then `reps` calls of as many whole frames as fit target_s (at most T)."""
    run(1)
    per_frame = run(1)
    frames = int(min(T, max(1, target_s // max(per_frame, 1e-9))))
    times = sorted(run(frames) for _ in range(reps)) if frames > 1 or reps > 1 else [per_frame]
    return times[len(times) // 2] / (frames * F), frames


def recompute_forward(net: TierNetwork, batch: int, T: int, F: int, device):
    """run(): one forward of the tier network over its whole grid (the cost of one element when recomputing per
    element)."""
    g = torch.Generator(device=device).manual_seed(7)
    x = torch.randn(batch, T, F, generator=g, device=device)
    z = torch.randn(batch, T, F, net.cond_dim, generator=g, device=device) * 0.5 if net.cond_dim else None

    def run():
        with torch.no_grad(), melnet_fast.use_backend("auto"):
            net(x, z)

    return run


def run_tiers(cases, batches, device, smoke, res: Results, budget: Budget) -> None:
    target_s, reps = (0.01, 1) if smoke else (0.25, 3)
    for case in cases:
        T, F = case.grid()
        net = tier_network(case, device)
        print(f"{case.name}: grid {T}x{F}, width {net.hidden_size}, K={net.n_mixtures}")
        for batch in batches:
            per_elem, frames_of = {}, {}
            for provider in providers(device):
                label = f"{case.name} B{batch}"
                if budget.exhausted():
                    res.skip(label, provider, "the tier section's time budget ran out")
                    continue
                backend = provider.removesuffix("-bf16")
                if provider == "recompute-per-element" and batch * T * F > RECOMPUTE_MAX_POSITIONS:
                    res.skip(label, provider, f"one forward over {batch}x{T}x{F} positions needs too much memory "
                                              f"(limit {RECOMPUTE_MAX_POSITIONS:,} positions)")
                    continue
                if provider != "recompute-per-element":
                    reason = skip_reason(SAMPLER_OP, backend, torch.float32, device)
                    if reason:
                        res.skip(label, provider, reason)
                        continue
                failed = False
                try:
                    if provider == "recompute-per-element":
                        t = time_call(recompute_forward(net, batch, T, F, device), device, warmup=1,
                                      reps=1 if smoke else 3, max_s=1.0, min_reps=1)
                        per_elem[provider], frames_of[provider] = t["median_ms"] * 1e-3, None
                    else:
                        run = cached_sampler(net, backend, batch, F,
                                             torch.bfloat16 if provider.endswith("-bf16") else None, device)
                        per_elem[provider], frames_of[provider] = measure_cached(
                            run, T, F, target_s if provider != "reference" else 1.2 * target_s,
                            reps if provider != "reference" else 1)
                except Exception as exc:
                    if smoke and not is_oom(exc):
                        raise
                    res.error(label, provider, "out of memory" if is_oom(exc) else short_error(exc))
                    failed = True
                if failed:
                    release(device)  # after the except block, which held the failed run's tensors
                    continue
                sec = per_elem[provider]
                print(f"  B{batch:<3} {provider:<10} {sec * 1e6:12.1f} us/element"
                      + ("  (one forward)" if provider == RECOMPUTE else f"  ({frames_of[provider]} frames drawn)"))
            for provider, sec in per_elem.items():
                res["tiers"].append(dict(
                    section="tier", case=case.name, preset=case.preset, tier=case.tier, layers=net.n_layers,
                    hidden=net.hidden_size, grid=f"{T}x{F}", batch=batch, provider=provider,
                    frames_timed=frames_of[provider], median_ms=sec * 1e3, us_per_element=sec * 1e6,
                    elements_per_s=batch / sec,
                    speedup_vs_recompute=per_elem[RECOMPUTE] / sec if RECOMPUTE in per_elem else None,
                    speedup_vs_reference=per_elem["reference"] / sec if "reference" in per_elem else None))
            release(device)
            res.save()
        del net
        release(device)


# ---------------------------------------------------------------------------------------------------- whole
@contextlib.contextmanager
def timed_tiers(log: list, device):
    """Record (grid, seconds) of every ops.sample_tier call that MelNet.sample makes (it calls ops.sample_tier
    through the module melnet_fast.ops, so wrapping the attribute catches every tier)."""
    original = ops.sample_tier

    def wrapper(x_init, *args, **kwargs):
        sync(device)
        t = time.perf_counter()
        out = original(x_init, *args, **kwargs)
        sync(device)
        log.append((tuple(x_init.shape), time.perf_counter() - t))
        return out

    ops.sample_tier = wrapper
    try:
        yield
    finally:
        ops.sample_tier = original


def predict_whole_s(res: Results, cfg: MelNetConfig, provider: str) -> float | None:
    """Seconds MelNet.sample should take at batch 1, from this run's per-element times of `provider` at batch 1
    interpolated over the layer count (None without such rows); the feature networks are left out."""
    rows = sorted((r["layers"], r["us_per_element"]) for r in res["tiers"]
                  if r["provider"] == provider and r["batch"] == 1 and r["preset"] == "blizzard")
    if not rows or cfg.hidden_size != 512:
        return None
    layers, us = zip(*rows)
    shapes = tier_shapes(cfg.max_frames, cfg.n_mels, cfg.n_tiers)
    return sum(T * F * float(np.interp(L, layers, us)) * 1e-6 for (T, F), L in zip(shapes, cfg.layers))


def random_model(cfg: MelNetConfig, device) -> MelNet:
    """MelNet(cfg) with seeded random weights, every head scaled down (as tier_network) so that an untrained
    model's draws stay finite."""
    torch.manual_seed(0)
    with torch.device(device):
        model = MelNet(cfg).eval()
    with torch.no_grad():
        for tier in model.tiers:
            tier.network.head.weight.mul_(0.1)
    return model


def run_whole(device, smoke, res: Results, budget: Budget) -> None:
    preset = "tiny" if smoke else "blizzard"
    backend = next((b for b in (["cuda"] if device.type == "cuda" else ["cpu", "reference"])
                    if b == "reference" or skip_reason(SAMPLER_OP, b, torch.float32, device) is None), None)
    if backend is None:
        res.skip(f"{preset} whole", "cuda", skip_reason(SAMPLER_OP, "cuda", torch.float32, device))
        return
    cfg = MelNetConfig.preset(preset)
    frames = cfg.max_frames
    predicted = predict_whole_s(res, cfg, backend)
    print(f"whole spectrogram: MelNet({preset}).sample(1, {frames}) with backend {backend} "
          f"({frames} x {cfg.n_mels} = {frames * cfg.n_mels:,} elements); predicted "
          + ("n/a" if predicted is None else f"{predicted:.1f} s") + f", {budget.left():.0f} s left")
    if predicted is None and not smoke:
        res.skip(f"{preset} whole", backend, f"no per-element {backend} rows at batch 1 to predict the time from")
        res["whole"] = dict(preset=preset, backend=backend, predicted_s=None, skipped=True)
        return
    if predicted is not None and predicted > budget.left() - 10:
        res.skip(f"{preset} whole", backend, f"predicted {predicted:.0f} s does not fit the {budget.left():.0f} s left")
        res["whole"] = dict(preset=preset, backend=backend, predicted_s=predicted, skipped=True)
        return
    model = random_model(cfg, device)
    gen = torch.Generator(device=device).manual_seed(0)
    try:
        with melnet_fast.use_backend(backend):
            model.sample(1, 2 * cfg.time_factor, generator=gen)  # warm-up of every tier's code path
            log = []
            with timed_tiers(log, device):
                sync(device)
                t = time.perf_counter()
                x = model.sample(1, frames, generator=gen)
                sync(device)
                total = time.perf_counter() - t
    except Exception as exc:
        if smoke:
            raise
        res.error(f"{preset} whole", backend, short_error(exc))
        return
    tiers = []
    for g, ((_, T, F), sec) in enumerate(log, start=1):
        tiers.append(dict(tier=g, layers=cfg.layers[g - 1], grid=f"{T}x{F}", elements=T * F, seconds=sec,
                          us_per_element=sec / (T * F) * 1e6))
    res["whole"] = dict(preset=preset, backend=backend, batch=1, frames=frames, n_mels=cfg.n_mels,
                        elements=frames * cfg.n_mels, total_s=total, tiers=tiers,
                        other_s=total - sum(t["seconds"] for t in tiers), predicted_s=predicted,
                        finite=bool(torch.isfinite(x).all()), skipped=False)
    print(f"  total {total:.3g} s")
    res.save()


# ---------------------------------------------------------------------------------------------------- output
def print_tables(res: Results) -> None:
    print("\n### sampling one tier: time per element position (all batch rows in parallel)\n")
    print(markdown(["case", "batch", "provider", "frames drawn", "us / element", "elements / s", "vs recompute",
                    "vs reference"],
                   [[r["case"], r["batch"], r["provider"],
                     "1 forward" if r["frames_timed"] is None else r["frames_timed"], r["us_per_element"],
                     r["elements_per_s"], r["speedup_vs_recompute"], r["speedup_vs_reference"]]
                    for r in res["tiers"]]))
    w = res.doc.get("whole")
    if w and not w.get("skipped"):
        predicted = "n/a" if w["predicted_s"] is None else f"{w['predicted_s']:.3g} s"
        print(f"\n### whole spectrogram: MelNet({w['preset']}).sample(1, {w['frames']}), backend {w['backend']}: "
              f"{w['total_s']:.3g} s for {w['elements']:,} elements (outside sample_tier: {w['other_s']:.3g} s; "
              f"predicted from the tier rows: {predicted})\n")
        print(markdown(["tier", "layers", "grid", "elements", "s", "us / element"],
                       [[t["tier"], t["layers"], t["grid"], t["elements"], t["seconds"], t["us_per_element"]]
                        for t in w["tiers"]]))
    if res["errors"]:
        print(f"\n{len(res['errors'])} provider(s) failed: " + "; ".join(f"{e['case']} / {e['provider']}: "
                                                                         f"{e['error']}" for e in res["errors"]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, any device, a few seconds (CI)")
    parser.add_argument("--parts", nargs="+", default=["tier", "whole"], choices=["tier", "whole"])
    parser.add_argument("--budget-s", type=float, default=100.0,
                        help="wall-clock budget; cases past it are skipped (and listed)")
    args = parser.parse_args(argv)
    if args.smoke:  # tiny ops: a second OpenMP thread only adds contention (orders of magnitude on a busy CI box)
        torch.set_num_threads(1)
    device = pick_device()
    res = Results(args.out, "gpu_sampling", run_context(device), CSV_FIELDS)
    res["tiers"], res["whole"], res["smoke"] = [], None, args.smoke
    res.note("cached samplers: only the first frames of each tier are drawn (column frames drawn) and the time per "
             f"element is extrapolated; {RECOMPUTE}: one full forward of the tier network is the cost of one element")
    ctx = res["context"]
    print(f"{ctx['device']}, torch {ctx['torch']}, CUDA {ctx['cuda']}, commit {ctx['commit']}")
    total = Budget(args.budget_s)
    if "tier" in args.parts:
        share = 0.65 if "whole" in args.parts else 1.0
        cases, batches = tier_cases(args.smoke)
        run_tiers(cases, batches, device, args.smoke, res, Budget(args.budget_s * share))
    if "whole" in args.parts:
        run_whole(device, args.smoke, res, Budget(total.left()))
    release(device)
    res.save()
    csv_path = res.append_csv(res["tiers"])
    print(f"\nwrote {res.json_path}; appended rows to {csv_path} ({total.elapsed():.0f} s)")
    print_tables(res)
    return 1 if res["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
