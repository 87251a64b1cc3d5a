"""set_backend / use_backend: names, unavailable backends, restoring the previous one, and what "auto" picks."""

import importlib

import pytest
import torch

import melnet_fast
from melnet_fast import backends
from melnet_fast.ops import gmm_nll, lstm_sweep_2d
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


def spy(monkeypatch, module, name):
    """Replace module.name by a wrapper that counts its calls."""
    calls = []
    original = getattr(module, name)

    def wrapper(*args, **kwargs):
        calls.append(name)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)
    return calls


def test_auto_runs_the_cpu_kernels_for_cpu_float32(monkeypatch):
    compiled = spy(monkeypatch, sweep_module, "lstm_sweep_2d_cpp")
    reference = spy(monkeypatch, sweep_module, "lstm_sweep_2d_ref")
    inputs = make_sweep_inputs(2, 3, 5, 3, 4, 2, torch.float32)
    got = sweep_value_and_grads("auto", inputs, ["t-", "f+"])
    assert (len(compiled), len(reference)) == (1, 0)
    want = sweep_value_and_grads("cpu", inputs, ["t-", "f+"])
    for g, w in zip(got, want):
        assert torch.equal(g, w)


def test_auto_gmm_nll_runs_the_cpu_kernels_for_cpu_float32(monkeypatch):
    compiled = spy(monkeypatch, gmm_module, "gmm_nll_compiled")
    reference = spy(monkeypatch, gmm_module, "gmm_nll_ref")
    inputs = make_gmm_inputs((4, 3), 5, torch.float32)
    got = gmm_value_and_grads("auto", inputs)
    assert (len(compiled), len(reference)) == (1, 0)
    for g, w in zip(got, gmm_value_and_grads("cpu", inputs)):
        assert torch.equal(g, w)


def test_auto_resolves_to_cpu_on_cpu_tensors():
    for module, op in ((sweep_module, "lstm_sweep_2d"), (gmm_module, "gmm_nll")):
        assert backends.resolve(op, torch.ones(1), module.SUPPORTED) == "cpu"


def test_auto_falls_back_to_reference_for_dtypes_without_kernels(monkeypatch):
    compiled = spy(monkeypatch, sweep_module, "lstm_sweep_2d_cpp")
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
    supported = {"cuda": {"cuda"}, "triton": {"cuda", "cpu"}, "cpu": {"cpu"}, "reference": {"cpu", "cuda"}}
    assert backends.resolve("op", x, supported) == "cpu"
    with melnet_fast.use_backend("triton"):
        assert backends.resolve("op", x, supported) == "triton"
    monkeypatch.delenv("TRITON_INTERPRET")
    assert backends.resolve("op", x, {"triton": {"cuda", "cpu"}, "reference": {"cpu"}}) == "reference"


def test_the_gpu_backends_take_half_precision_and_the_cpu_backend_refuses_it():
    assert backends._takes("cuda", torch.bfloat16) and backends._takes("triton", torch.float16)
    x = torch.randn(2, 3, dtype=torch.bfloat16)
    with melnet_fast.use_backend("cpu"), pytest.raises(ValueError, match=r"x: the cpu backend takes float32"):
        backends.resolve("op", x, {"cpu": {"cpu"}, "reference": {"cpu"}})
    assert backends.resolve("op", x, {"cpu": {"cpu"}, "reference": {"cpu"}}) == "reference"
