"""Loads the compiled extension melnet_fast._C once, only when its build record matches the running torch and
CUDA, and remembers why it is missing, if it is. A mismatched build is not loaded: one warning names both
versions and the rebuild command, and the ops fall back to the backends that work (reference, triton)."""

from __future__ import annotations

import importlib.util
import os
import warnings

import torch

from melnet_fast import _build_record

_C = None
_LOAD_ERROR: str | None = None
_RECORD: dict | None = None


def _load() -> None:
    global _C, _LOAD_ERROR, _RECORD
    try:
        spec = importlib.util.find_spec("melnet_fast._C")
    except ImportError as exc:
        spec, _LOAD_ERROR = None, f"{type(exc).__name__}: {exc}"
    if spec is None or spec.origin is None:
        _LOAD_ERROR = _LOAD_ERROR or "the package was installed without its compiled extension melnet_fast._C"
        return
    _RECORD = _build_record.read(os.path.dirname(spec.origin))
    problem = _build_record.mismatch(_RECORD, str(torch.__version__), torch.version.cuda)
    if problem:
        _LOAD_ERROR = f"{problem}; rebuild it: {_build_record.REBUILD}"
        warnings.warn(f"melnet_fast: {_LOAD_ERROR}. Until then the ops run on the reference (and triton) "
                      "backends.", RuntimeWarning, stacklevel=3)
        return
    try:
        from melnet_fast import _C as module  # type: ignore[attr-defined]
    except ImportError as exc:  # a broken build, or one whose libraries are missing
        _LOAD_ERROR = f"{type(exc).__name__}: {exc}"
        return
    _C = module


_load()


def extension():
    """The loaded module melnet_fast._C, or None."""
    return _C


def load_error() -> str | None:
    """Why melnet_fast._C was not loaded (None when it loaded)."""
    return _LOAD_ERROR


def build_record() -> dict | None:
    """What melnet_fast._C was built against (torch, CUDA, C++ standard, CUDA architectures, debug), or None."""
    return _RECORD


def has_cpu_kernels() -> bool:
    return _C is not None


def has_cuda_kernels() -> bool:
    return _C is not None and bool(_C.built_with_cuda())


def poisoning_outputs() -> bool:
    """Whether kernels fill their output buffers with NaN before writing them (tests turn it on with
    melnet_fast._C.set_poison_outputs, for the Python hosts of the GPU kernels too)."""
    return _C is not None and bool(_C.poison_outputs())
