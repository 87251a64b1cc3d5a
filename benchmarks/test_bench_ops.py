"""pytest-benchmark suite of the op layer: every backend of every case, grouped per op and mode so that the
reference and the fast paths sit side by side.

    pytest benchmarks/ --benchmark-only            (not collected by a plain `pytest`: testpaths = tests)
"""

import pytest
from bench_cases import BACKENDS, CASES

ROUNDS = 8  # the slowest case (the reference sweep, fwd+bwd) takes ~0.3 s a round on a 2-core CPU
WARMUP_ROUNDS = 2  # oneDNN builds its LSTM primitives on the first calls


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.op}-{c.mode}")
def test_op(benchmark, case, backend):
    reason = case.skip_reason(backend)
    if reason:
        pytest.skip(reason)
    benchmark.group = case.name
    benchmark.extra_info.update(op=case.op, mode=case.mode, size=case.size, backend=backend)
    benchmark.pedantic(case.runner(backend), rounds=ROUNDS, warmup_rounds=WARMUP_ROUNDS, iterations=1)
