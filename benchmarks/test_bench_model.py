"""pytest-benchmark suite of the model: sampling per provider and model.loss forward+backward per backend.

    pytest benchmarks/test_bench_model.py --benchmark-only
"""

import pytest
from sampling_cases import LOSS, SAMPLING, build, loss_runner, sample_runner

import melnet_fast


def _available(provider):
    return provider == "recompute-per-element" or provider in melnet_fast.available_backends()


@pytest.mark.parametrize("provider", ["recompute-per-element", "reference", "cpu"])
@pytest.mark.parametrize("preset,batch,frames", SAMPLING, ids=[f"{p}-B{b}-T{t}" for p, b, t in SAMPLING])
def test_sample(benchmark, preset, batch, frames, provider):
    if not _available(provider):
        pytest.skip(f"backend {provider} is not available here")
    benchmark.group = f"sample-{preset}-B{batch}"
    benchmark.extra_info.update(preset=preset, batch=batch, frames=frames, provider=provider,
                                unit="one element for recompute-per-element, the whole spectrogram otherwise")
    run = sample_runner(build(preset), provider, batch, frames)
    benchmark.pedantic(run, rounds=3 if provider != "reference" else 1, warmup_rounds=1, iterations=1)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
@pytest.mark.parametrize("preset,batch,frames", LOSS, ids=[f"{p}-B{b}-T{t}" for p, b, t in LOSS])
def test_loss_forward_backward(benchmark, preset, batch, frames, backend):
    if not _available(backend):
        pytest.skip(f"backend {backend} is not available here")
    benchmark.group = f"loss-{preset}"
    benchmark.pedantic(loss_runner(build(preset), backend, batch, frames), rounds=5, warmup_rounds=1, iterations=1)
