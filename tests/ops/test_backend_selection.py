"""set_backend / use_backend: names, unavailable backends, restoring the previous one, and what "auto" picks."""

import importlib
import importlib.util

import pytest
import torch

import melnet_fast
from melnet_fast import backends
from melnet_fast.ops import autotune, dispatch, gmm_nll, lstm_sweep_2d
from tests.ops.helpers import gmm_value_and_grads, make_gmm_inputs, make_sweep_inputs, sweep_value_and_grads

sweep_module = importlib.import_module("melnet_fast.ops.lstm_sweep")
gmm_module = importlib.import_module("melnet_fast.ops.gmm")


@pytest.mark.parametrize("name", ["gpu", "Reference", "", None])
def test_unknown_name_is_a_value_error(name):
    with pytest.raises(ValueError, match="backend must be one of"):
        melnet_fast.set_backend(name)
    with pytest.raises(ValueError, match="backend must be one of"), melnet_fast.use_backend(name):
        pass
    assert melnet_fast.get_backend() == "auto"


def test_cuda_without_a_gpu_says_what_is_missing():
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    with pytest.raises(RuntimeError, match=r"backend 'cuda' is not available: .*CUDA"):
        melnet_fast.set_backend("cuda")
    assert melnet_fast.get_backend() == "auto"


def test_triton_without_a_gpu_says_what_is_missing(monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(RuntimeError, match=r"backend 'triton' is not available: .*(CUDA|triton)"):
        melnet_fast.set_backend("triton")


def test_use_backend_restores_the_previous_backend_after_an_exception():
    melnet_fast.set_backend("reference")
    with pytest.raises(KeyError):
        with melnet_fast.use_backend("cpu"):
            assert melnet_fast.get_backend() == "cpu"
            with melnet_fast.use_backend("auto"):
                assert melnet_fast.get_backend() == "auto"
                raise KeyError("boom")
    assert melnet_fast.get_backend() == "reference"


def test_use_backend_refusing_a_name_keeps_the_current_one():
    melnet_fast.set_backend("cpu")
    with pytest.raises(ValueError), melnet_fast.use_backend("nope"):
        pass
    assert melnet_fast.get_backend() == "cpu"


def spy(monkeypatch, op, backend):
    """Replace the function that op (an OpTable) runs for `backend` by a wrapper that counts its calls."""
    calls = []
    original = op.function(backend)

    def wrapper(*args, **kwargs):
        calls.append(backend)
        return original(*args, **kwargs)

    monkeypatch.setitem(op._functions, backend, wrapper)
    return calls


def test_auto_runs_the_cpu_kernels_for_cpu_float32(monkeypatch):
    compiled = spy(monkeypatch, sweep_module.OP, "cpu")
    reference = spy(monkeypatch, sweep_module.OP, "reference")
    inputs = make_sweep_inputs(2, 3, 5, 3, 4, 2, torch.float32)
    got = sweep_value_and_grads("auto", inputs, ["t-", "f+"])
    assert (len(compiled), len(reference)) == (1, 0)
    want = sweep_value_and_grads("cpu", inputs, ["t-", "f+"])
    for g, w in zip(got, want):
        assert torch.equal(g, w)


def test_auto_gmm_nll_runs_the_cpu_kernels_for_cpu_float32(monkeypatch):
    compiled = spy(monkeypatch, gmm_module.OP, "cpu")
    reference = spy(monkeypatch, gmm_module.OP, "reference")
    inputs = make_gmm_inputs((4, 3), 5, torch.float32)
    got = gmm_value_and_grads("auto", inputs)
    assert (len(compiled), len(reference)) == (1, 0)
    for g, w in zip(got, gmm_value_and_grads("cpu", inputs)):
        assert torch.equal(g, w)


def test_every_op_is_in_the_one_registry():
    assert set(dispatch.REGISTRY) == {"lstm_sweep_2d", "gmm_nll", "sample_tier", "sample_tier_centralized"}
    for op in dispatch.REGISTRY.values():
        assert op.backends[-1].name == "reference", op.name
        for backend in op.backends:
            if backend.name != "triton" or importlib.util.find_spec("triton") is not None:
                assert callable(backend.function()), (op.name, backend.name)


def test_auto_resolves_to_cpu_on_cpu_tensors():
    for op in dispatch.REGISTRY.values():
        assert op.resolve(torch.ones(1)) == "cpu", op.name


def test_auto_falls_back_to_reference_for_dtypes_without_kernels(monkeypatch):
    compiled = spy(monkeypatch, sweep_module.OP, "cpu")
    x, *params = make_sweep_inputs(1, 2, 3, 2, 2, 1, torch.bfloat16)
    assert lstm_sweep_2d(x, *params, ["f-"]).dtype == torch.bfloat16
    assert compiled == []
    with melnet_fast.use_backend("cpu"), pytest.raises(ValueError, match="^x: the cpu backend"):
        lstm_sweep_2d(x, *params, ["f-"])
    with melnet_fast.use_backend("cpu"), pytest.raises(ValueError, match="^x: the cpu backend"):
        gmm_nll(*make_gmm_inputs((2,), 2, torch.bfloat16))


def test_auto_never_runs_triton_interpreter_on_cpu_tensors(monkeypatch):
    """With TRITON_INTERPRET=1 the triton backend serves CPU tensors when asked by name, but "auto" keeps to the
    cpu kernels (the interpreter is for tests)."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    x = torch.randn(2, 3)
    op = dispatch.OpTable("op", "x", [dispatch.Backend(n, frozenset(d), "math:sqrt") for n, d in
                                      (("cuda", ["cuda"]), ("triton", ["cuda", "cpu"]), ("cpu", ["cpu"]),
                                       ("reference", ["cpu", "cuda"]))])
    assert op.resolve(x) == "cpu"
    with melnet_fast.use_backend("triton"):
        assert op.resolve(x) == "triton"
    monkeypatch.delenv("TRITON_INTERPRET")
    only_triton = dispatch.OpTable("op", "x", [op.by_name["triton"], op.by_name["reference"]])
    assert only_triton.resolve(x) == "reference"
    with pytest.raises(RuntimeError, match=r"TRITON_INTERPRET=1"), melnet_fast.use_backend("triton"):
        only_triton.resolve(x)


def test_the_gpu_backends_take_half_precision_and_the_cpu_backend_refuses_it():
    assert backends.takes("cuda", torch.bfloat16) and backends.takes("triton", torch.float16)
    x = torch.randn(2, 3, dtype=torch.bfloat16)
    op = dispatch.OpTable("op", "x", [dispatch.Backend("cpu", frozenset(["cpu"]), "math:sqrt"),
                                      dispatch.Backend("reference", frozenset(["cpu"]), "math:sqrt")])
    with melnet_fast.use_backend("cpu"), pytest.raises(ValueError, match=r"x: the cpu backend takes float32"):
        op.resolve(x)
    assert op.resolve(x) == "reference"


def test_a_backend_an_op_lacks_is_named():
    with melnet_fast.use_backend("triton"), pytest.raises(RuntimeError, match="sample_tier: backend 'triton' does "
                                                                             "not implement this op"):
        dispatch.REGISTRY["sample_tier"].resolve(torch.ones(1))


def test_the_second_cuda_sweep_design_runs_only_when_measured_faster_or_forced(monkeypatch):
    """cuda_gemm, the sweep's second cuda design, is a variant of cuda: "auto" keeps the first design unless
    melnet_fast.tune recorded the variant as faster at that shape; use_backend forces either; an op without the
    variant runs cuda. (A stand-in table on CPU tensors, since no GPU is needed to check the choice.)"""
    assert [b.name for b in sweep_module.OP.backends][:2] == ["cuda", "cuda_gemm"]
    assert "cuda_gemm" in autotune.TUNED and backends.VARIANTS["cuda_gemm"] == "cuda"
    assert backends.why_unavailable("cuda_gemm") == backends.why_unavailable("cuda")
    monkeypatch.setattr(backends, "why_unavailable", lambda name: None)
    monkeypatch.setattr(autotune, "TUNED_DEVICES", ("cpu",))
    monkeypatch.delenv(autotune.CACHE_ENV, raising=False)
    autotune.clear()
    x = torch.randn(2, 3)
    table = [dispatch.Backend(n, frozenset(["cpu"]), "math:sqrt") for n in ("cuda", "cuda_gemm", "reference")]
    op = dispatch.OpTable("op", "x", table)
    try:
        assert op.resolve(x, shape_key=(7,)) == "cuda"
        autotune._choices[autotune._key("op", (7,), x.dtype, x.device)] = "cuda_gemm"
        assert op.resolve(x, shape_key=(7,)) == "cuda_gemm"
        assert op.resolve(x, shape_key=(8,)) == "cuda"  # measured at another shape only
        for name in ("cuda", "cuda_gemm"):
            with melnet_fast.use_backend(name):
                assert op.resolve(x, shape_key=(7,)) == name
        without = dispatch.OpTable("op", "x", [table[0], table[2]])
        with melnet_fast.use_backend("cuda_gemm"):
            assert without.resolve(x) == "cuda"
    finally:
        autotune.clear()
