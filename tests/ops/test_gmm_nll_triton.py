"""gmm_nll's triton backend on CPU tensors (Triton's interpreter, TRITON_INTERPRET=1; set by tests/conftest.py
without a GPU): value and all four gradients against the float64 reference, both backward strategies
(MELNET_FAST_GMM_BWD), non-contiguous inputs, extreme values, bfloat16 / float16 storage. Sizes stay small."""

import pytest
import torch

import melnet_fast
from melnet_fast.ops import gmm_nll
from melnet_fast.ops.gmm.reference import gmm_nll_ref
from tests.ops.helpers import (
    GMM_RESULTS,
    assert_error_within_reference,
    gmm_value_and_grads,
    gmm_vs_float64,
    make_gmm_inputs,
    random_like,
)

# CPU tensors reach Triton only in its interpreter (tests/conftest.py turns it on when no GPU is visible; with a
# GPU, tests/gpu/test_gmm_nll_gpu.py runs these checks on CUDA tensors). A mark, not an import-time skip: that
# file imports the input generators below.
pytestmark = pytest.mark.skipif(
    not melnet_fast.backends.interpreting_triton() or melnet_fast.backends.why_unavailable("triton") is not None,
    reason="needs triton and TRITON_INTERPRET=1 (CPU tensors)")

BWD_ENV = "MELNET_FAST_GMM_BWD"  # triton_backend.BWD_ENV, whose module imports triton

MODES = ["fused", "recompute"]

# Rows per program (kernels._blocks): 1024 at K=1, 256 at K=3, 64 at K=10, 16 at K=64. The cases cover one
# partial program, several programs with a partial last one, and a 0-d x.
CASES = [
    pytest.param((3, 7, 5), 3, id="shape3x7x5-K3"),
    pytest.param((13,), 1, id="shape13-K1"),
    pytest.param((2, 75), 10, id="shape2x75-K10"),
    pytest.param((37,), 64, id="shape37-K64"),
    pytest.param((), 3, id="scalar-K3"),
]


@pytest.fixture(autouse=True)
def nan_empty(monkeypatch):
    """torch.empty filled with NaN while these tests run: a kernel that leaves part of its output unwritten
    fails the comparisons instead of passing on leftover memory."""
    empty = torch.empty

    def poisoned(*args, **kwargs):
        t = empty(*args, **kwargs)
        return t.fill_(float("nan")) if t.is_floating_point() else t

    monkeypatch.setattr(torch, "empty", poisoned)


@pytest.fixture(params=MODES)
def mode(request, monkeypatch):
    """Each test runs with both backward strategies, chosen as users do: by MELNET_FAST_GMM_BWD."""
    monkeypatch.setenv(BWD_ENV, request.param)
    return request.param


@pytest.mark.parametrize("shape, K", CASES)
def test_float32_error_within_reference_error(mode, shape, K):
    inputs32 = make_gmm_inputs(shape, K, torch.float32)
    for name, fast, ref32, exact in gmm_vs_float64("triton", inputs32):
        assert fast.dtype == torch.float32, f"{name}: dtype {fast.dtype}"
        assert_error_within_reference(name, fast, ref32, exact)


def theta_views(inputs):
    """The same values held as the model holds them and worse: mu and logit_pi as slices of one [..., 3K] tensor
    (row stride 3K), x as a slice of a [..., 3] tensor (element stride 3), log_sigma with a component stride of 2,
    logit_pi through a transposed layout whose leading dimensions do not merge (the launcher copies that one)."""
    x, mu, log_sigma, logit_pi = inputs
    K = mu.shape[-1]
    theta = torch.randn(*mu.shape[:-1], 3 * K, dtype=mu.dtype)
    theta[..., :K] = mu
    theta[..., K:2 * K] = logit_pi
    x_view = torch.randn(*x.shape, 3, dtype=x.dtype)[..., 1]
    x_view.copy_(x)
    ls_view = torch.randn(*log_sigma.shape[:-1], 2 * K, dtype=mu.dtype)[..., ::2]
    ls_view.copy_(log_sigma)
    views = [x_view, theta[..., :K], ls_view, theta[..., K:2 * K].transpose(0, 1).contiguous().transpose(0, 1)]
    for name, v, t in zip(("x", "mu", "log_sigma", "logit_pi"), views, inputs):
        assert not v.is_contiguous() and torch.equal(v, t), name
    return views


def test_mergeable_views_are_not_copied():
    from melnet_fast.kernels import gmm_nll as kernels  # imports triton

    x, mu, log_sigma, logit_pi = theta_views(make_gmm_inputs((5, 9), 10, torch.float32))
    xv, sx = kernels._rows(x, 45)
    muv, smu_n, smu_k = kernels._table(mu, 45, 10)
    lsv, _, sls_k = kernels._table(log_sigma, 45, 10)
    assert (xv.data_ptr(), sx) == (x.data_ptr(), 3)
    assert (muv.data_ptr(), smu_n, smu_k) == (mu.data_ptr(), 30, 1)
    assert (lsv.data_ptr(), sls_k) == (log_sigma.data_ptr(), 2)


def test_noncontiguous_inputs_give_identical_results(mode):
    inputs = make_gmm_inputs((5, 9), 10, torch.float32)
    want = gmm_value_and_grads("triton", inputs)
    got = gmm_value_and_grads("triton", theta_views(inputs))
    for name, g, w in zip(GMM_RESULTS, got, want):
        # Strides change the addresses, never the arithmetic: bit-identical.
        assert torch.equal(g, w), f"{name}: max difference {(g - w).abs().max().item():.3e}"


def test_strided_upstream_gradients(mode):
    """nll.sum() hands backward a stride-0 gradient, and a gradient may be any view; the kernels read it through
    its stride. Judged against the reference given the same gradients."""
    inputs = make_gmm_inputs((4, 6), 10, torch.float32)
    g = torch.randn(4, 12, generator=torch.Generator().manual_seed(3))[:, ::2]

    def grads(backend, dtype):
        leaves = [t.detach().to(dtype).requires_grad_() for t in inputs]
        with melnet_fast.use_backend(backend):
            nll = gmm_nll(*leaves)
        return (torch.autograd.grad(nll.sum(), leaves, retain_graph=True)
                + torch.autograd.grad(nll, leaves, g.to(dtype)))

    names = [f"{n} (sum)" for n in GMM_RESULTS[1:]] + [f"{n} (strided)" for n in GMM_RESULTS[1:]]
    for name, fast, ref32, exact in zip(names, grads("triton", torch.float32), grads("reference", torch.float32),
                                        grads("reference", torch.float64)):
        assert_error_within_reference(name, fast, ref32, exact)


def extreme_inputs(dtype=torch.float32):
    """Far outliers and tiny sigmas: |x - mu| up to 1e4 with sigma down to e^-20 (z^2 up to ~1e26, finite in
    float32), log_sigma up to +6, logits 1e3 apart; rows mix ordinary and extreme components."""
    g = torch.Generator().manual_seed(7)
    N, K = 40, 10

    def rand(*s):
        return torch.randn(*s, generator=g, dtype=torch.float64)

    x = rand(N) * torch.logspace(0, 4, N, dtype=torch.float64)
    mu = rand(N, K)
    log_sigma = torch.empty(N, K, dtype=torch.float64).uniform_(-20.0, 6.0, generator=g)
    logit_pi = rand(N, K) * torch.logspace(0, 3, N, dtype=torch.float64)[:, None]
    return [t.to(dtype) for t in (x, mu, log_sigma, logit_pi)]


def test_extreme_values_stay_finite_and_accurate(mode):
    """Row by row (magnitudes span 1e20 between rows, so a tensor-wide bound would only see the largest), except
    d/dlogit_pi = g (pi_k - w_k): both terms are O(1) and cancel, so its error scale is that of the tensor."""
    inputs32 = extreme_inputs()
    for name, fast, ref32, exact in gmm_vs_float64("triton", inputs32):
        assert torch.isfinite(ref32).all() and torch.isfinite(exact).all(), f"{name}: the case must be finite"
        if name == "dlogit_pi":
            assert_error_within_reference(name, fast, ref32, exact)
            continue
        for row in range(fast.shape[0]):
            assert_error_within_reference(f"{name}[{row}]", fast[row], ref32[row], exact[row])


def small_sigma_inputs(dtype=torch.float32, device="cpu"):
    """sigma ~ e^-19 everywhere and x 10 to 30 sigmas from the nearest component: nll ~ 50-450 is z^2 / 2, so
    1 / sigma = exp(-log_sigma) must be accurate to a few ulps at |log_sigma| ~ 19 (a plain GPU exp of fp32 is
    off by |x| 2^-23 there, which this case shows as a 10x larger nll error)."""
    g = torch.Generator().manual_seed(11)
    N, K = 64, 10
    log_sigma = torch.empty(N, K, dtype=torch.float64).uniform_(-20.0, -18.0, generator=g)
    mu = torch.randn(N, K, generator=g, dtype=torch.float64)
    z0 = torch.empty(N, dtype=torch.float64).uniform_(10.0, 30.0, generator=g)
    x = mu[:, 0] + z0 * log_sigma[:, 0].exp()
    logit_pi = torch.randn(N, K, generator=g, dtype=torch.float64)
    return [t.to(device=device, dtype=dtype) for t in (x, mu, log_sigma, logit_pi)]


def test_small_sigma_accuracy(mode):
    for name, fast, ref32, exact in gmm_vs_float64("triton", small_sigma_inputs()):
        assert_error_within_reference(name, fast, ref32, exact)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # numpy, in the interpreter: z * z
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # 0 * inf, discarded by tl.where
def test_components_whose_z_squared_overflows_get_zero_weight(mode):
    """z ~ 5e21 is finite but z^2 overflows float32 (sigma = e^-50, |x - mu| = 1): that component's log density
    is -inf, its posterior 0 and its mu / log_sigma gradients exactly 0, not 0 * inf = NaN."""
    x, mu, log_sigma, logit_pi = make_gmm_inputs((9,), 4, torch.float32)
    log_sigma[:, 0] = -50.0
    mu[:, 0] = x + 1.0
    for name, fast, ref32, exact in gmm_vs_float64("triton", [x, mu, log_sigma, logit_pi]):
        if name in ("dmu", "dlog_sigma"):
            assert torch.equal(fast[:, 0], torch.zeros(9)), f"{name}: {fast[:, 0]}"
        assert_error_within_reference(name, fast, ref32, exact)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("shape, K", [pytest.param((3, 29), 10, id="shape3x29-K10"),
                                      pytest.param((17,), 3, id="shape17-K3")])
def test_low_precision_error_within_pytorch_in_that_dtype(mode, dtype, shape, K):
    """Storage in bfloat16 / float16, float32 math: no worse than PyTorch's reference run in that dtype, both
    measured against float64 on the same rounded inputs."""
    inputs = make_gmm_inputs(shape, K, dtype)
    for name, fast, ref_low, exact in gmm_vs_float64("triton", inputs):
        assert fast.dtype == dtype, f"{name}: dtype {fast.dtype}"
        assert_error_within_reference(name, fast, ref_low, exact)


def test_forward_without_grad_matches_forward_with_grad(mode):
    inputs = make_gmm_inputs((6, 11), 10, torch.float32)
    with torch.no_grad(), melnet_fast.use_backend("triton"):
        plain = gmm_nll(*inputs)
    assert not plain.requires_grad
    with melnet_fast.use_backend("triton"):
        tracked = gmm_nll(*[t.detach().requires_grad_() for t in inputs])
    assert tracked.requires_grad
    assert torch.equal(plain, tracked.detach())


def test_partial_requires_grad_and_second_backward(mode):
    """Only mu requires grad; backward twice through a retained graph gives the same gradient (the fused
    strategy's saved local gradients are read, never overwritten)."""
    x, mu, log_sigma, logit_pi = make_gmm_inputs((3, 13), 3, torch.float32)
    mu = mu.requires_grad_()
    with melnet_fast.use_backend("triton"):
        nll = gmm_nll(x, mu, log_sigma, logit_pi)
    g = random_like(nll, seed=5)
    (first,) = torch.autograd.grad(nll, mu, g, retain_graph=True)
    (second,) = torch.autograd.grad(nll, mu, g)
    assert torch.equal(first, second)
    mu64 = mu.detach().double().requires_grad_()
    (exact,) = torch.autograd.grad(gmm_nll_ref(x.double(), mu64, log_sigma.double(), logit_pi.double()), mu64,
                                   g.double())
    mu32 = mu.detach().requires_grad_()
    (ref32,) = torch.autograd.grad(gmm_nll_ref(x, mu32, log_sigma, logit_pi), mu32, g)
    assert_error_within_reference("dmu", first, ref32, exact)


def test_unknown_backward_strategy_is_rejected(monkeypatch):
    monkeypatch.setenv(BWD_ENV, "sideways")
    inputs = [t.requires_grad_() for t in make_gmm_inputs((2,), 3, torch.float32)]
    with melnet_fast.use_backend("triton"), pytest.raises(ValueError, match=f"^{BWD_ENV}"):
        gmm_nll(*inputs)


def test_local_gradients_of_float16_are_stored_in_float32():
    """d nll / dx = z / sigma overflows float16 at sigma = 1e-5 before the upstream gradient scales it."""
    from melnet_fast.kernels import gmm_nll as kernels  # imports triton

    assert kernels.local_grad_dtype(torch.float16) == torch.float32
    x = torch.tensor([1e-5], dtype=torch.float16)
    mu = torch.zeros(1, 1, dtype=torch.float16)
    log_sigma = torch.full((1, 1), -11.5, dtype=torch.float16)  # sigma ~ 1e-5: d nll / dx ~ 1e5
    logit_pi = torch.zeros(1, 1, dtype=torch.float16)
    nll, *local = kernels.gmm_nll_fwd_local(x, mu, log_sigma, logit_pi)
    assert local[0].dtype == torch.float32 and local[0].item() > 6.5e4  # float16's largest is 65504
    grads = kernels.gmm_nll_scale(torch.tensor([1e-3], dtype=torch.float16), *local, torch.float16)
    assert grads[0].dtype == torch.float16 and torch.isfinite(grads[0]).all()
    assert abs(grads[0].item() - 1e-3 * local[0].item()) <= 1e-3 * abs(grads[0].item())
