"""Cases of the model-level benchmarks, shared by test_bench_model.py (pytest-benchmark) and
bench_sampling.py (the table): sampling speed per provider and model.loss forward+backward per backend.

Providers of sampling:
  recompute-per-element  what the public implementations do: the whole network re-run for every element (timed on a few
             elements and extrapolated per element; it is O((T F)^2) in all)
  reference  the eager cached sampler (O(T F) cell steps per layer, Python per element)
  cpu        the C++ cached sampler (no Python per element)
A text model (tts_small) samples every frame (no stop), next to the same model without its text path
(tts_small:no-text), so the two rows show what the per-frame centralized stack and attention cost.
"""

from __future__ import annotations

import time

import torch

import melnet_fast
from melnet_fast import MelNet, MelNetConfig
from melnet_fast.cli.demo import DEMO_CROP_FRAMES, demo_config

SAMPLING = [  # (preset, batch, frames)
    ("tiny", 1, 32), ("tiny", 8, 32), ("small", 1, 32), ("small", 8, 32),
    ("tts_small", 1, 32), ("tts_small:no-text", 1, 32),
]
NO_TEXT = ":no-text"  # a tts preset without its centralized stack and text attention
TEXT = "Speech from text, at batch one."
# (preset, batch, frames); "demo" is the model `melnet-fast demo` trains, at its batch and training crop.
LOSS = [("tiny", 4, 32), ("small", 4, 32), ("demo", demo_config().batch_size, DEMO_CROP_FRAMES)]


def config_of(preset: str) -> MelNetConfig:
    """A named preset, "demo", or a tts preset with ":no-text" (the same model without its text path)."""
    if preset == "demo":
        return demo_config()
    if preset.endswith(NO_TEXT):
        return MelNetConfig.preset(preset[:-len(NO_TEXT)], centralized_stack=False, text_symbols="")
    return MelNetConfig.preset(preset)


def build(preset: str, seed: int = 0) -> MelNet:
    torch.manual_seed(seed)
    model = MelNet(config_of(preset)).eval()
    with torch.no_grad():  # an untrained model with moderate heads, so samples stay finite
        for tier in model.tiers:
            tier.network.head.weight.mul_(0.1)
    return model


def sample_runner(model: MelNet, provider: str, batch: int, frames: int):
    """A function that samples once and returns the number of elements it generated (per batch row)."""
    n_mels = model.config.n_mels
    cond = {"text": [TEXT] * batch} if model.config.has_text else None
    text = {"stop_threshold": None} if cond else {}
    if provider == "recompute-per-element":
        x = torch.zeros(batch, frames, n_mels)

        def run():
            # One element recomputed = one full forward over the whole spectrogram.
            with torch.no_grad(), melnet_fast.use_backend("auto"):
                model(x, cond)
            return 1
        return run

    def run():
        with melnet_fast.use_backend(provider):
            model.sample(batch, frames, cond, generator=torch.Generator().manual_seed(0), **text)
        return frames * n_mels
    return run


def loss_runner(model: MelNet, backend: str, batch: int, frames: int):
    x = torch.randn(batch, frames, model.config.n_mels, generator=torch.Generator().manual_seed(1))

    def run():
        with melnet_fast.use_backend(backend):
            model.zero_grad(set_to_none=True)
            model.loss(x).backward()
    return run


def time_per_call(run, repeats: int, warmup: int) -> tuple[float, int]:
    """Median seconds of one call, and what the call returned (elements generated)."""
    out = None
    for _ in range(warmup):
        out = run()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = run()
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2], out
