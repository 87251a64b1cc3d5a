"""Backend selection: the user's choice of implementation (per thread) and what this machine can run.

Names: "auto" (fastest available for the tensors' device), "reference" (plain PyTorch, the oracle of every
test), "cpu" (fused C++ of melnet_fast._C), "cuda" (CUDA kernels of melnet_fast._C), "triton"
(melnet_fast.kernels), and "cuda_gemm", a variant of "cuda" (VARIANTS): the second design of the sweep's cuda kernels
(recurrent products as cuBLAS GEMMs with fused epilogues), "cuda" itself for every op that has no second design.
Which backends implement which op, and the dispatch among them: melnet_fast.ops.dispatch.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import threading

import torch

from melnet_fast import _extension

BACKENDS = ("auto", "reference", "cpu", "cuda", "triton", "cuda_gemm")
# A variant runs, for an op that does not implement it, the backend it is a variant of.
VARIANTS = {"cuda_gemm": "cuda"}

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
    if name in VARIANTS:
        return why_unavailable(VARIANTS[name])
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
    "cuda_gemm": (torch.float32, torch.bfloat16, torch.float16),
}


def interpreting_triton() -> bool:
    """True when Triton kernels run in its CPU interpreter (TRITON_INTERPRET=1): slow, for tests only."""
    return os.environ.get("TRITON_INTERPRET") == "1"


def takes(name: str, dtype: torch.dtype) -> bool:
    """Whether backend `name`'s kernels take tensors of `dtype`."""
    return dtype in KERNEL_DTYPES.get(name, (dtype,))
