"""The CPU samplers (sample_tier, sample_tier_centralized) at every instruction-set level this host can run
(AVX-512, AVX2 + FMA, baseline), each forced in a fresh process by MELNET_FAST_CPU_LEVEL (read once per process),
against the reference sampler: values, log densities, alignments and stop lengths, in float64 and float32."""

import pytest

from tests.ops.cpu_levels import LEVELS, run_at_level

# Hidden sizes chosen against the vector widths: D = 5 and 33 leave part-filled vectors (and 33 a whole AVX-512 one
# of float32 before it), D = 20 a whole vector and a narrower rest, D = 32 (with B = 1) runs the time-delayed
# layer's three LSTMs on two threads (F = 9: the time LSTM's rows in halves of 4 and 5); B = 5 is a group of four
# rows and one more on a thread.
CHECK = r"""
import torch
import melnet_fast
from melnet_fast import _extension
from melnet_fast.ops import sample_tier
from tests.ops.test_sample_tier import make_case
from tests.ops.test_sample_tier_centralized import assert_same, both, centralized_case

level = int(__import__("os").environ["MELNET_FAST_CPU_LEVEL"])
assert _extension.extension().cpu_levels()[1] == level, _extension.extension().cpu_levels()
torch.set_num_threads(2)


def sample(backend, case, L, K, temperature, n_prime=0):
    with melnet_fast.use_backend(backend):
        return sample_tier(*case, L, K, temperature, n_prime)


for B, T, F, D, L, K in [(5, 4, 6, 5, 2, 3), (1, 3, 7, 20, 1, 2), (2, 3, 5, 33, 2, 4), (1, 3, 9, 32, 2, 3)]:
    case = make_case(B, T, F, D, L, K, seed=D)
    for temperature, n_prime in [(1.0, 1), (0.0, 0)]:
        want = sample("reference", case, L, K, temperature, n_prime)
        got = sample("cpu", case, L, K, temperature, n_prime)
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    got32 = sample("cpu", [t.float() for t in case[:5]] + [[w.float() for w in case[5]]], L, K, 0.0)
    want = sample("reference", case, L, K, 0.0)
    torch.testing.assert_close(got32[0].double(), want[0], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got32[1].double(), want[1], rtol=1e-4, atol=1e-3)

for B, T, F, D, L, K_att, a, lengths in [(3, 9, 5, 6, 3, 2, 1, [7, 2, 4]), (2, 6, 4, 20, 2, 3, 0, [4, 5])]:
    x0, cz_t, cz_f, u, eps, w = make_case(B, T, F, D, L, 3, seed=4)
    cw, memory, text_lengths = centralized_case(B, T, F, D, L, K_att, lengths)
    for stop in (None, 0.5):
        ref, got = both(x0, cz_t, cz_f, u, eps, w, L, 3, 1.0, 0, cw, a, memory, text_lengths, stop)
        assert_same(ref, got)
print("ok")
"""


@pytest.mark.parametrize("level", LEVELS, ids=lambda v: f"x86-64-v{v}")
def test_samplers_at_cpu_level(level):
    run_at_level(level, CHECK)
