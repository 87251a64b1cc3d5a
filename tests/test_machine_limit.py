"""The machine's limit of the CPU benchmarks (benchmarks/machine_limit.py): the GEMM it times computes the
product through the library path of torch's LSTM, and the FLOP counts it reports agree with torch's FLOP counter."""

import os
import sys

import pytest
import torch

import melnet_fast
from melnet_fast import _extension
from melnet_fast.ops import lstm_sweep_2d, sample_tier

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
import machine_limit  # noqa: E402  (a benchmarks script, not a package module)

needs_ext = pytest.mark.skipif(_extension.extension() is None, reason="melnet_fast._C is not built")


@needs_ext
@pytest.mark.parametrize("M, K, N", [(7, 5, 3), (130, 257, 129)], ids=["small", "oneDNN-sized"])
@pytest.mark.parametrize("transposed", [False, True], ids=["plain", "transposed-b"])
def test_gemm_into_matches_mm(M, K, N, transposed):
    g = torch.Generator().manual_seed(0)
    a = torch.randn(M, K, generator=g)
    b = torch.randn(N, K, generator=g).t() if transposed else torch.randn(K, N, generator=g)
    out = torch.full((M, N), float("nan"))
    _extension.extension().gemm_into(a, b, out)
    torch.testing.assert_close(out, a.double().mm(b.double()).float(), rtol=1e-4, atol=1e-4)


@needs_ext
def test_gemm_into_names_bad_shapes():
    with pytest.raises(RuntimeError, match=r"a \[M, K\], b \[K, N\]"):
        _extension.extension().gemm_into(torch.ones(2, 3), torch.ones(4, 2), torch.empty(2, 2))


def test_gemm_runner_counts_its_flops():
    run, flops = machine_limit.gemm_runner(64)
    run()
    assert flops == 2 * 64**3


@needs_ext
def test_sweep_flops_match_the_flop_counter():
    B, T, F, I, H, dirs = 2, 3, 5, 4, 6, ["t+", "f-"]
    g = torch.Generator().manual_seed(0)
    args = [torch.randn(B, T, F, I, generator=g), torch.randn(2, 4 * H, I, generator=g),
            torch.randn(2, 4 * H, H, generator=g), torch.randn(2, 4 * H, generator=g),
            torch.randn(2, H, generator=g), torch.randn(2, H, generator=g)]
    leaves = [t.requires_grad_() for t in args]

    def forward():
        with torch.no_grad(), melnet_fast.use_backend("cpu"):
            lstm_sweep_2d(*args, dirs)

    def forward_backward():
        with melnet_fast.use_backend("cpu"):
            lstm_sweep_2d(*leaves, dirs).sum().backward()

    assert machine_limit.counted_flops(forward) == machine_limit.sweep_flops(B, T, F, I, H, 2, backward=False)
    # sum's backward is an expand (no FLOPs): the count is the sweep's forward and backward alone.
    assert machine_limit.counted_flops(forward_backward) == machine_limit.sweep_flops(B, T, F, I, H, 2,
                                                                                      backward=True)


@needs_ext
@pytest.mark.parametrize("n_prime", [0, 2])
def test_sampler_flops_are_the_reference_samplers_products(n_prime):
    """The formula against torch's FLOP counter over the reference sampler (its products are aten matmuls), and the
    compiled sampler counted by the formula."""
    from tests.ops.test_sample_tier import make_case

    B, T, F, D, L, K = 2, 4, 5, 6, 2, 3
    case = make_case(B, T, F, D, L, K)

    def sample(backend):
        def run():
            with melnet_fast.use_backend(backend):
                sample_tier(*case, L, K, 1.0, n_prime)
        return run

    want = machine_limit.sampler_flops(B, T, F, D, L, K, n_prime)
    assert machine_limit.counted_flops(sample("reference")) == want
    assert machine_limit.counted_flops(sample("cpu")) == want


def test_share_of_the_gemm_rate():
    assert machine_limit.share(None, 1.0, 100.0) == (None, None)
    gflops, frac = machine_limit.share(50 * 10**9, 1.0, 100.0)
    assert gflops == pytest.approx(50.0) and frac == pytest.approx(0.5)
