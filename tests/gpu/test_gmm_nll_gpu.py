"""gmm_nll's cuda and triton backends on CUDA tensors: float32, bfloat16 and float16 storage at odd sizes (rows
spread over many tiles and a grid-stride loop, K from 1 to 100), non-contiguous inputs and upstream gradients,
extreme values, forward and all four gradients against the float64 reference, both triton backward strategies,
the registered CUDA ops (gradcheck in float64, opcheck), and backend="auto". Skipped without a GPU."""

import importlib

import pytest
import torch

import melnet_fast
from melnet_fast import backends
from melnet_fast.ops import autotune, gmm_nll
from tests.ops.helpers import GMM_RESULTS, assert_error_within_reference, make_gmm_inputs
from tests.ops.test_gmm_nll_triton import BWD_ENV, extreme_inputs, small_sigma_inputs

gmm_module = importlib.import_module("melnet_fast.ops.gmm")

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

DTYPES = [torch.float32, torch.bfloat16, torch.float16]
# (backend, triton backward strategy)
PROVIDERS = [pytest.param(("cuda", None), id="cuda"),
             pytest.param(("triton", "fused"), id="triton-fused"),
             pytest.param(("triton", "recompute"), id="triton-recompute")]

CASES = [
    pytest.param((3, 77, 129), 10, id="shape3x77x129-K10"),  # 29799 rows: 233 cuda tiles of 128, 466 triton
    pytest.param((1000,), 1, id="shape1000-K1"),
    pytest.param((5, 33), 64, id="shape5x33-K64"),
    pytest.param((6, 37), 100, id="shape6x37-K100"),  # K not a power of two above 64: cuda tiles of 30 rows
    pytest.param((7, 11), 3, id="shape7x11-K3"),
    pytest.param((), 3, id="scalar-K3"),
]


@pytest.fixture(autouse=True)
def nan_empty(monkeypatch):
    """torch.empty filled with NaN (the triton launchers allocate with it; the cuda kernels' outputs are poisoned
    by tests/conftest.py): an output element that no kernel writes fails the comparisons."""
    empty = torch.empty

    def poisoned(*args, **kwargs):
        t = empty(*args, **kwargs)
        return t.fill_(float("nan")) if t.is_floating_point() else t

    monkeypatch.setattr(torch, "empty", poisoned)


@pytest.fixture(params=PROVIDERS)
def backend(request, monkeypatch):
    name, mode = request.param
    missing = backends.why_unavailable(name)
    if missing:  # on a GPU machine a missing backend is a build problem, not a reason to skip
        pytest.fail(f"backend {name!r} unavailable on a CUDA machine: {missing}")
    if mode is not None:
        monkeypatch.setenv(BWD_ENV, mode)
    return name


def cuda(inputs):
    return [t.cuda() for t in inputs]


def value_and_grads(name, inputs, grad):
    leaves = [t.detach().requires_grad_() for t in inputs]
    with melnet_fast.use_backend(name):
        out = gmm_nll(*leaves)
    grads = torch.autograd.grad(out, leaves, grad.to(out.dtype))
    return [out.detach()] + list(grads)


def vs_float64(name, inputs):
    """(result name, backend's result, reference's result in the inputs' dtype, float64 reference), all on the
    same rounded inputs and the same rounded upstream gradient."""
    g = torch.Generator().manual_seed(1234)
    grad = torch.randn(inputs[0].shape, generator=g, dtype=torch.float64).to(inputs[0].dtype).to(inputs[0].device)
    exact = value_and_grads("reference", [t.double() for t in inputs], grad.double())
    ref_low = value_and_grads("reference", inputs, grad)
    fast = value_and_grads(name, inputs, grad)
    return list(zip(GMM_RESULTS, fast, ref_low, exact))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape, K", CASES)
def test_error_within_reference_error(backend, dtype, shape, K):
    """float32: error against float64 at most twice the float32 reference's (plus a few ulps); bfloat16 /
    float16 storage: no worse than PyTorch's reference run in that dtype."""
    for name, fast, ref_low, exact in vs_float64(backend, cuda(make_gmm_inputs(shape, K, dtype))):
        assert fast.dtype == dtype and fast.is_cuda, f"{name}: {fast.dtype} on {fast.device}"
        assert_error_within_reference(name, fast, ref_low, exact)


def test_grid_stride_over_more_tiles_than_blocks(backend):
    """More rows than the cuda launch's blocks (16 per SM) times 128-row tiles: every block loops."""
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    N = sms * 16 * 128 + 1001
    for name, fast, ref32, exact in vs_float64(backend, cuda(make_gmm_inputs((N,), 10, torch.float32))):
        assert_error_within_reference(name, fast, ref32, exact)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_noncontiguous_inputs_give_identical_results(backend, dtype):
    inputs = cuda(make_gmm_inputs((5, 9), 10, dtype))
    grad = torch.randn(5, 9, device="cuda").to(dtype)
    want = value_and_grads(backend, inputs, grad)
    got = value_and_grads(backend, views_on_cuda(inputs), grad)
    for name, g, w in zip(GMM_RESULTS, got, want):
        # Strides change the addresses, never the arithmetic: bit-identical.
        assert torch.equal(g, w), f"{name}: max difference {(g.double() - w.double()).abs().max().item():.3e}"


def views_on_cuda(inputs):
    """The layouts of theta_views in the interpreter tests, built on the GPU: mu and logit_pi slices of one
    [..., 3K] tensor, x with element stride 3, log_sigma with component stride 2, logit_pi transposed."""
    x, mu, log_sigma, logit_pi = inputs
    K = mu.shape[-1]
    theta = torch.randn(*mu.shape[:-1], 3 * K, dtype=mu.dtype, device="cuda")
    theta[..., :K] = mu
    theta[..., K:2 * K] = logit_pi
    x_view = torch.randn(*x.shape, 3, dtype=x.dtype, device="cuda")[..., 1]
    x_view.copy_(x)
    ls_view = torch.randn(*log_sigma.shape[:-1], 2 * K, dtype=mu.dtype, device="cuda")[..., ::2]
    ls_view.copy_(log_sigma)
    views = [x_view, theta[..., :K], ls_view, theta[..., K:2 * K].transpose(0, 1).contiguous().transpose(0, 1)]
    for name, v, t in zip(("x", "mu", "log_sigma", "logit_pi"), views, inputs):
        assert not v.is_contiguous() and torch.equal(v, t), name
    return views


def test_strided_upstream_gradients(backend):
    """nll.sum() hands backward a stride-0 gradient, and a gradient may be any view."""
    inputs = cuda(make_gmm_inputs((4, 6), 10, torch.float32))
    g = torch.randn(4, 12, device="cuda")[:, ::2]

    def grads(name, dtype):
        leaves = [t.detach().to(dtype).requires_grad_() for t in inputs]
        with melnet_fast.use_backend(name):
            nll = gmm_nll(*leaves)
        return (torch.autograd.grad(nll.sum(), leaves, retain_graph=True)
                + torch.autograd.grad(nll, leaves, g.to(dtype)))

    names = [f"{n} (sum)" for n in GMM_RESULTS[1:]] + [f"{n} (strided)" for n in GMM_RESULTS[1:]]
    for name, fast, ref32, exact in zip(names, grads(backend, torch.float32), grads("reference", torch.float32),
                                        grads("reference", torch.float64)):
        assert_error_within_reference(name, fast, ref32, exact)


def test_extreme_values_stay_finite_and_accurate(backend):
    """|x - mu| up to 1e4, sigma down to e^-20, logits 1e3 apart (tensor-wide bounds: the interpreter tests also
    check row by row)."""
    for name, fast, ref32, exact in vs_float64(backend, cuda(extreme_inputs())):
        assert torch.isfinite(ref32).all() and torch.isfinite(exact).all(), f"{name}: the case must be finite"
        assert_error_within_reference(name, fast, ref32, exact)


def test_small_sigma_accuracy(backend):
    """1 / sigma = exp(-log_sigma) at log_sigma ~ -19 must be accurate to an ulp or so: the GPU's fast fp32 exp
    (ex2.approx of a rounded product, also what --use_fast_math makes of expf) fails this case."""
    for name, fast, ref32, exact in vs_float64(backend, small_sigma_inputs(device="cuda")):
        assert_error_within_reference(name, fast, ref32, exact)


def test_components_whose_z_squared_overflows_get_zero_weight(backend):
    x, mu, log_sigma, logit_pi = make_gmm_inputs((9,), 4, torch.float32)
    log_sigma[:, 0] = -50.0
    mu[:, 0] = x + 1.0
    for name, fast, ref32, exact in vs_float64(backend, cuda([x, mu, log_sigma, logit_pi])):
        if name in ("dmu", "dlog_sigma"):
            assert torch.equal(fast[:, 0].cpu(), torch.zeros(9)), f"{name}: {fast[:, 0]}"
        assert_error_within_reference(name, fast, ref32, exact)


def test_forward_without_grad(backend):
    inputs = cuda(make_gmm_inputs((6, 11), 10, torch.float32))
    with torch.no_grad(), melnet_fast.use_backend(backend):
        plain = gmm_nll(*inputs)
    with melnet_fast.use_backend(backend):
        tracked = gmm_nll(*[t.detach().requires_grad_() for t in inputs])
    assert not plain.requires_grad and tracked.requires_grad
    assert torch.equal(plain, tracked.detach())


def test_empty_input(backend):
    x, mu, log_sigma, logit_pi = cuda(make_gmm_inputs((0, 4), 3, torch.float32))
    with melnet_fast.use_backend(backend):
        assert gmm_nll(x, mu, log_sigma, logit_pi).shape == (0, 4)


# ---------------------------------------------------------------------------------------------- registered ops


def test_cuda_ops_gradcheck_in_float64():
    """The CUDA op computes in float64 for float64 storage: gradcheck the registered autograd formula."""
    if backends.why_unavailable("cuda"):
        pytest.fail(backends.why_unavailable("cuda"))
    inputs = [t.cuda().requires_grad_() for t in make_gmm_inputs((3, 5), 4)]
    assert torch.autograd.gradcheck(torch.ops.melnet_fast.gmm_nll_fwd, inputs)


def test_cuda_ops_opcheck():
    if backends.why_unavailable("cuda"):
        pytest.fail(backends.why_unavailable("cuda"))
    ops = torch.ops.melnet_fast
    x, mu, log_sigma, logit_pi = cuda(make_gmm_inputs((3, 5), 4, torch.float32))
    torch.library.opcheck(ops.gmm_nll_fwd.default, (x, mu.requires_grad_(), log_sigma, logit_pi))
    torch.library.opcheck(ops.gmm_nll_bwd.default, (torch.randn_like(x), x, mu.detach(), log_sigma, logit_pi))
    empty = cuda(make_gmm_inputs((0,), 4, torch.float32))
    assert ops.gmm_nll_fwd(*empty).shape == (0,)


def test_too_many_components_for_the_cuda_kernel():
    """K above the cuda kernel's limit: "auto" goes to triton, an explicit cuda is a ValueError naming mu."""
    from melnet_fast.ops.gmm import CUDA_MAX_K

    inputs = cuda(make_gmm_inputs((2,), CUDA_MAX_K + 1, torch.float32))
    with melnet_fast.use_backend("cuda"), pytest.raises(ValueError, match="^mu: the cuda backend"):
        gmm_nll(*inputs)
    with melnet_fast.use_backend("triton"):
        want = gmm_nll(*inputs)
    assert torch.equal(gmm_nll(*inputs), want)


# ---------------------------------------------------------------------------------------------- backend="auto"


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_tune_records_a_choice_that_auto_then_takes(monkeypatch, tmp_path, dtype):
    """melnet_fast.tune times cuda against triton at the shapes the function meets, the choice goes to the cache
    file, a fresh process state reads it back, and "auto" runs it (and matches the reference)."""
    autotune.clear()
    inputs = cuda(make_gmm_inputs((4, 33, 17), 10, dtype))
    cache = tmp_path / "tune.json"
    melnet_fast.tune(lambda: gmm_nll(*[t.detach().requires_grad_() for t in inputs]).sum().backward(),
                     cache_file=cache)
    chosen = {key: value for key, value in autotune.choices().items() if key[0] == "gmm_nll"}
    assert len(chosen) == 1 and set(chosen.values()) <= {"cuda", "triton"}, chosen
    autotune.clear()
    monkeypatch.setenv(autotune.CACHE_ENV, str(cache))
    shape_key = (tuple(inputs[0].shape), 10, True)
    assert gmm_module.OP.resolve(inputs[0], shape_key) == next(iter(chosen.values()))
    for name, fast, ref_low, exact in vs_float64("auto", inputs):
        assert_error_within_reference(name, fast, ref_low, exact)
    autotune.clear()


def test_auto_without_a_tuned_choice_takes_cuda_and_times_nothing(monkeypatch):
    autotune.clear()
    monkeypatch.delenv(autotune.CACHE_ENV, raising=False)
    monkeypatch.setattr(autotune, "time_backends", lambda *a, **k: pytest.fail("auto timed backends"))
    calls = []
    original = gmm_module.OP.function("cuda")
    monkeypatch.setitem(gmm_module.OP._functions, "cuda", lambda *a: calls.append("cuda") or original(*a))
    gmm_nll(*cuda(make_gmm_inputs((3, 5), 4, torch.float32)))
    assert calls == ["cuda"]


def test_finiteness_check_is_deferred_on_the_gpu(monkeypatch):
    """No host sync per call: a non-finite log_sigma on CUDA is reported when raise_deferred_errors() reads the
    verdicts (the trainer does after every step), or at once with MELNET_FAST_SYNC_CHECKS=1."""
    from melnet_fast.ops import raise_deferred_errors

    monkeypatch.delenv("MELNET_FAST_SYNC_CHECKS", raising=False)
    x, mu, log_sigma, logit_pi = cuda(make_gmm_inputs((3, 4), 2, torch.float32))
    log_sigma[1, 2, 0] = float("nan")
    gmm_nll(x, mu, log_sigma, logit_pi)
    with pytest.raises(ValueError, match="log_sigma must be finite"):
        raise_deferred_errors()
    monkeypatch.setenv("MELNET_FAST_SYNC_CHECKS", "1")
    with pytest.raises(ValueError, match="log_sigma must be finite"):
        gmm_nll(x, mu, log_sigma, logit_pi)
