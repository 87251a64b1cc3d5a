"""melnet_fast.tune and "auto": no timing inside a user's call; tune() times the candidates at the shapes it meets
and records the fastest, which "auto" then runs, in this process and, through the cache file, in later ones; a
failing candidate is warned about and never chosen, a device error is raised. On a GPU the tunable pair is cuda
and triton (tests/gpu/test_gmm_nll_gpu.py); here cpu and reference stand in for them on CPU tensors."""

import importlib
import json

import pytest
import torch

import melnet_fast
from melnet_fast.ops import autotune, gmm_nll
from tests.ops.helpers import make_gmm_inputs

gmm_module = importlib.import_module("melnet_fast.ops.gmm")


@pytest.fixture
def cpu_tuning(monkeypatch):
    monkeypatch.setattr(autotune, "TUNED", ("cpu", "reference"))
    monkeypatch.setattr(autotune, "TUNED_DEVICES", ("cpu",))
    monkeypatch.delenv(autotune.CACHE_ENV, raising=False)
    autotune.clear()
    yield
    autotune.clear()


def training_step(shape=(4, 3), K=5):
    inputs = make_gmm_inputs(shape, K)
    return lambda: gmm_nll(*[t.detach().requires_grad_() for t in inputs]).sum().backward()


def spy(monkeypatch, backend, behaviour=None):
    calls = []
    original = gmm_module.OP.function(backend)

    def wrapper(*args):
        calls.append(backend)
        return (behaviour or original)(*args)

    monkeypatch.setitem(gmm_module.OP._functions, backend, wrapper)
    return calls


def prefer_reference(monkeypatch):
    """Time the candidates for real (the code under test), then report reference as the faster."""
    real = autotune.time_backends

    def fake(op, names, device, args, kwargs, repeats=3):
        times = real(op, names, device, args, kwargs, repeats=1)
        assert set(times) == set(names) == {"cpu", "reference"}
        return {"cpu": 2.0, "reference": 1.0}

    monkeypatch.setattr(autotune, "time_backends", fake)


def test_auto_times_nothing_outside_tune(cpu_tuning, monkeypatch):
    monkeypatch.setattr(autotune, "time_backends", lambda *a, **k: pytest.fail("auto timed the backends"))
    cpu = spy(monkeypatch, "cpu")
    training_step()()
    assert cpu == ["cpu"] and autotune.choices() == {}


def test_tune_records_the_fastest_and_auto_takes_it(cpu_tuning, monkeypatch):
    prefer_reference(monkeypatch)
    step = training_step()
    melnet_fast.tune(step)
    assert list(autotune.choices().items()) == [(("gmm_nll", ((4, 3), 5, True), "float64", "cpu"), "reference")]
    reference, cpu = spy(monkeypatch, "reference"), spy(monkeypatch, "cpu")
    step()
    assert (reference, cpu) == (["reference"], [])
    training_step((5, 3))()  # a shape nobody tuned: the first candidate
    assert cpu == ["cpu"]


def test_the_cache_file_carries_the_choices_to_another_process(cpu_tuning, monkeypatch, tmp_path):
    prefer_reference(monkeypatch)
    cache = tmp_path / "tuning.json"
    melnet_fast.tune(training_step(), cache_file=cache)
    entry, = json.loads(cache.read_text())["choices"]
    assert entry == {"op": "gmm_nll", "shape": [[4, 3], 5, True], "dtype": "float64", "device": "cpu",
                     "backend": "reference"}
    autotune.clear()  # as a fresh process
    monkeypatch.setenv(autotune.CACHE_ENV, str(cache))
    reference = spy(monkeypatch, "reference")
    training_step()()
    assert reference == ["reference"]


def test_an_unreadable_cache_file_is_ignored_with_a_warning(cpu_tuning, monkeypatch, tmp_path):
    cache = tmp_path / "tuning.json"
    cache.write_text("{not json")
    monkeypatch.setenv(autotune.CACHE_ENV, str(cache))
    cpu = spy(monkeypatch, "cpu")
    with pytest.warns(RuntimeWarning, match="could not read the tuning cache"):
        training_step()()
    assert cpu == ["cpu"]


def test_a_failing_candidate_is_warned_about_and_never_chosen(cpu_tuning, monkeypatch):
    def broken(*args):
        raise ValueError("no kernel for this shape")

    spy(monkeypatch, "cpu", broken)
    with pytest.warns(RuntimeWarning, match=r"gmm_nll: the cpu backend failed while tuning and will not be chosen "
                                            r"\(ValueError: no kernel for this shape\)"):
        melnet_fast.tune(training_step())  # the step itself then runs the recorded choice, not the broken cpu
    assert list(autotune.choices().values()) == ["reference"]


def test_a_device_error_while_tuning_is_raised(cpu_tuning, monkeypatch):
    def fault(*args):
        raise torch.AcceleratorError("CUDA error: an illegal memory access was encountered")

    spy(monkeypatch, "reference", fault)
    with pytest.raises(torch.AcceleratorError, match="illegal memory access"):
        melnet_fast.tune(training_step())


def test_which_errors_are_device_errors():
    assert autotune.is_device_error(torch.AcceleratorError("CUDA error: unspecified launch failure"))
    assert autotune.is_device_error(RuntimeError("CUDA error: misaligned address"))
    assert not autotune.is_device_error(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert not autotune.is_device_error(ValueError("CUDA error"))


def test_tune_refuses_to_run_under_torch_compile(monkeypatch):
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    with pytest.raises(RuntimeError, match="outside torch.compile"):
        melnet_fast.tune(lambda: None)
