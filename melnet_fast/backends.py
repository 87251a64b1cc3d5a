"""Backend selection: which implementation of each op runs.

Names: "auto" (fastest available for the tensors' device), "reference" (plain PyTorch, the oracle of every
test), "cpu" (fused C++ of melnet_fast._C), "cuda" (CUDA kernels of melnet_fast._C), "triton" (kernels/).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import threading

import torch

from melnet_fast import _extension

BACKENDS = ("auto", "reference", "cpu", "cuda", "triton")

_state = threading.local()


def get_backend() -> str:
    """The backend name in force in this thread ("auto" unless changed)."""
    return getattr(_state, "name", "auto")


def _check_name(name: str) -> str:
    if not isinstance(name, str) or name not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(map(repr, BACKENDS))}, got {name!r}")
    return name


def set_backend(name: str) -> None:
    """Select the backend for this thread. Raises if `name` is unknown or not available here."""
    _check_name(name)
    if name != "auto":
        missing = why_unavailable(name)
        if missing:
            raise RuntimeError(f"backend {name!r} is not available: {missing}")
    _state.name = name


@contextlib.contextmanager
def use_backend(name: str):
    """Context manager: run the enclosed ops with backend `name`, then restore the previous one."""
    previous = get_backend()
    set_backend(name)
    try:
        yield
    finally:
        _state.name = previous


def why_unavailable(name: str) -> str | None:
    """None when backend `name` can run on this machine, else what is missing."""
    _check_name(name)
    if name in ("auto", "reference"):
        return None
    if name == "cpu":
        if _extension.has_cpu_kernels():
            return None
        return (f"the compiled extension melnet_fast._C did not load ({_extension.load_error()}); "
                "reinstall with `pip install --no-build-isolation -e .`")
    if name == "cuda":
        if not _extension.has_cpu_kernels():
            return f"the compiled extension melnet_fast._C did not load ({_extension.load_error()})"
        if not _extension.has_cuda_kernels():
            return ("melnet_fast._C was built without CUDA kernels (needs nvcc and a CUDA build of torch; "
                    "rebuild with MELNET_FAST_CUDA=1)")
        if not torch.cuda.is_available():
            return "no CUDA device is visible to torch"
        return None
    if name == "triton":
        if importlib.util.find_spec("triton") is None:
            return "the package triton is not installed (pip install 'melnet_fast[triton]')"
        if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
            return "no CUDA device is visible to torch (set TRITON_INTERPRET=1 to run Triton on the CPU)"
        return None
    raise AssertionError(name)


def available_backends() -> list[str]:
    """Names of the backends that can run here (always includes "auto" and "reference")."""
    return [name for name in BACKENDS if why_unavailable(name) is None]


# The dtypes each compiled backend's kernels take (a backend not listed takes every floating dtype). The GPU
# kernels compute in float32 (cell state, accumulations) whatever the storage dtype.
KERNEL_DTYPES = {
    "cpu": (torch.float32, torch.float64),
    "cuda": (torch.float32, torch.bfloat16, torch.float16),
    "triton": (torch.float32, torch.bfloat16, torch.float16),
}
# Backends that "auto" may time against each other on the first call of a shape (CUDA tensors only).
TUNED = ("cuda", "triton")

_tuned_choice: dict[tuple, str] = {}


def interpreting_triton() -> bool:
    """True when Triton kernels run in its CPU interpreter (TRITON_INTERPRET=1): slow, for tests only."""
    return os.environ.get("TRITON_INTERPRET") == "1"


def _serves(name: str, devices: set[str], device: torch.device) -> bool:
    # Triton serves CPU tensors only in its interpreter.
    if name == "triton" and device.type == "cpu":
        return "cpu" in devices and interpreting_triton()
    return device.type in devices


def autotune_enabled() -> bool:
    """MELNET_FAST_AUTOTUNE=0 turns off the timing of candidates: "auto" then takes the first in order."""
    return os.environ.get("MELNET_FAST_AUTOTUNE", "1") != "0"


def _time_candidates(candidates: list[str], run) -> str:
    """The candidate whose run(name) is fastest on the GPU (median of a few calls after a warm-up)."""
    times = {}
    for name in candidates:
        try:
            run(name)  # warm-up: compiles Triton kernels, fills caches
            torch.cuda.synchronize()
            samples = []
            for _ in range(3):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                run(name)
                end.record()
                end.synchronize()
                samples.append(start.elapsed_time(end))
            times[name] = sorted(samples)[1]
        except Exception:  # a candidate that fails here is never chosen; the others still run
            continue
    if not times:
        return candidates[0]
    return min(times, key=times.get)


def _takes(name: str, dtype: torch.dtype) -> bool:
    return dtype in KERNEL_DTYPES.get(name, (dtype,))


def resolve(op: str, tensor: torch.Tensor, supported: dict[str, set[str]], arg: str = "x",
            shape_key: tuple | None = None, run=None) -> str:
    """Pick the concrete backend for `op` on the device and dtype of `tensor` (the op's argument `arg`).

    supported maps a backend name to the device types it implements for this op, e.g.
    {"reference": {"cpu", "cuda"}, "cpu": {"cpu"}}. With "auto" the first entry of `supported` that is
    available and serves the device and dtype wins, so callers list backends fastest first; an explicitly chosen
    backend that cannot take the dtype is a ValueError naming `arg`.

    On CUDA tensors, when more than one of TUNED can run and the caller passes `run` (run(name) executes the op
    with backend `name`) and a `shape_key`, "auto" times them once per (op, shape_key, dtype) and keeps the
    fastest for later calls.
    """
    device, dtype = tensor.device, tensor.dtype
    name = get_backend()
    if name == "auto":
        candidates = [c for c, devices in supported.items()
                      if (c != "triton" or device.type != "cpu")  # the interpreter is for tests, never auto
                      and _serves(c, devices, device) and _takes(c, dtype) and why_unavailable(c) is None]
        if not candidates:
            return "reference"
        tuned = [c for c in candidates if c in TUNED]
        if device.type == "cuda" and len(tuned) > 1 and run is not None and shape_key is not None \
                and autotune_enabled():
            key = (op, shape_key, dtype, device.index)
            if key not in _tuned_choice:
                _tuned_choice[key] = _time_candidates(tuned, run)
            return _tuned_choice[key]
        return candidates[0]
    if name not in supported:
        raise RuntimeError(f"{op}: backend {name!r} does not implement this op yet; "
                           f"implemented: {', '.join(supported)}")
    if not _serves(name, supported[name], device):
        where = sorted(supported[name])
        if name == "triton" and device.type == "cpu" and "cpu" in supported[name]:
            where = ["cuda (or cpu with TRITON_INTERPRET=1)"]
        raise RuntimeError(f"{op}: backend {name!r} runs on {where} tensors, "
                           f"got tensors on {device.type}")
    missing = why_unavailable(name)
    if missing:
        raise RuntimeError(f"{op}: backend {name!r} is not available: {missing}")
    if not _takes(name, dtype):
        allowed = " or ".join(str(d).removeprefix("torch.") for d in KERNEL_DTYPES[name])
        raise ValueError(f"{arg}: the {name} backend takes {allowed}, got {dtype}")
    return name
