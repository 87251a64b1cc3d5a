"""pytest-benchmark suite of the model: sampling per provider and model.loss forward+backward per backend. The cpu
backend's cases hold in extra_info their GFLOP/s and its share of the same run's GEMM (benchmarks/conftest.py), with
the products counted as torch's FLOP counter sees them (machine_limit.counted_flops).

    pytest benchmarks/test_bench_model.py --benchmark-only
"""

import pytest
from machine_limit import counted_flops, library_path, share
from sampling_cases import LOSS, SAMPLING, build, loss_runner, sample_runner

import melnet_fast


def _available(provider):
    return provider == "recompute-per-element" or provider in melnet_fast.available_backends()


def _record_share(benchmark, run, gemm_gflops):
    """GFLOP/s of the benchmarked cpu case and their share of the GEMM's, into extra_info."""
    gflops, frac = share(counted_flops(run), benchmark.stats.stats.median, gemm_gflops)
    benchmark.extra_info.update(gflops=round(gflops, 1), share_of_gemm=round(frac, 3),
                                gemm_gflops=round(gemm_gflops, 1), gemm_library=library_path())


@pytest.mark.parametrize("provider", ["recompute-per-element", "reference", "cpu"])
@pytest.mark.parametrize("preset,batch,frames", SAMPLING, ids=[f"{p}-B{b}-T{t}" for p, b, t in SAMPLING])
def test_sample(benchmark, preset, batch, frames, provider, gemm_gflops):
    if not _available(provider):
        pytest.skip(f"backend {provider} is not available here")
    benchmark.group = f"sample-{preset}-B{batch}"
    benchmark.extra_info.update(preset=preset, batch=batch, frames=frames, provider=provider,
                                unit="one element for recompute-per-element, the whole spectrogram otherwise")
    run = sample_runner(build(preset), provider, batch, frames)
    benchmark.pedantic(run, rounds=3 if provider != "reference" else 1, warmup_rounds=1, iterations=1)
    if provider == "cpu":
        _record_share(benchmark, run, gemm_gflops)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
@pytest.mark.parametrize("preset,batch,frames", LOSS, ids=[f"{p}-B{b}-T{t}" for p, b, t in LOSS])
def test_loss_forward_backward(benchmark, preset, batch, frames, backend, gemm_gflops):
    if not _available(backend):
        pytest.skip(f"backend {backend} is not available here")
    benchmark.group = f"loss-{preset}"
    run = loss_runner(build(preset), backend, batch, frames)
    benchmark.pedantic(run, rounds=5, warmup_rounds=1, iterations=1)
    if backend == "cpu":  # the reference's nn.LSTM is not counted
        _record_share(benchmark, run, gemm_gflops)
