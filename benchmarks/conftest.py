"""Fixtures of the pytest-benchmark suites: the machine's limit (a large float32 GEMM through the CPU kernels' library
path, benchmarks/machine_limit.py), timed once per run."""

import pytest
from machine_limit import gemm_runner, timed_gflops


@pytest.fixture(scope="session")
def gemm_gflops():
    """GFLOP/s of the machine's GEMM, median of 5 calls after one warm-up, timed once for the whole run."""
    run, flops = gemm_runner()
    run()
    return timed_gflops(run, flops)
