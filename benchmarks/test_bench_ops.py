"""pytest-benchmark suite of the op layer: every backend of every case, grouped per op and mode so that the
reference and the fast paths sit side by side, and the machine's limit (a large float32 GEMM through the CPU
kernels' library path, benchmarks/machine_limit.py) timed in the same run: each case's extra_info holds its
GFLOP/s and their share of the GEMM's.

    pytest benchmarks/ --benchmark-only            (not collected by a plain `pytest`: testpaths = tests)
"""

import pytest
from bench_cases import BACKENDS, CASES
from machine_limit import library_path, share

ROUNDS = 8  # the slowest case (the reference sweep, fwd+bwd) takes ~0.3 s a round on a 2-core CPU
WARMUP_ROUNDS = 2  # oneDNN builds its LSTM primitives on the first calls


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.op}-{c.mode}")
def test_op(benchmark, case, backend, gemm_gflops):
    reason = case.skip_reason(backend)
    if reason:
        pytest.skip(reason)
    benchmark.group = case.name
    benchmark.extra_info.update(op=case.op, mode=case.mode, size=case.size, backend=backend,
                                gemm_gflops=round(gemm_gflops, 1), gemm_library=library_path())
    benchmark.pedantic(case.runner(backend), rounds=ROUNDS, warmup_rounds=WARMUP_ROUNDS, iterations=1)
    gflops, frac = share(case.flops, benchmark.stats.stats.median, gemm_gflops)
    if gflops is not None:
        benchmark.extra_info.update(gflops=round(gflops, 1), share_of_gemm=round(frac, 3))
