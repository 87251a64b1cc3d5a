"""Loads the compiled extension melnet_fast._C once and remembers why it is missing, if it is."""

from __future__ import annotations

_C = None
_LOAD_ERROR: str | None = None

try:
    import torch  # noqa: F401  (the extension links against torch's libraries)

    from melnet_fast import _C  # type: ignore[attr-defined,no-redef]
except ImportError as exc:  # built without the extension, or a broken build
    _LOAD_ERROR = f"{type(exc).__name__}: {exc}"


def extension():
    """The loaded module melnet_fast._C, or None."""
    return _C


def load_error() -> str | None:
    """Why melnet_fast._C could not be imported (None when it loaded)."""
    return _LOAD_ERROR


def has_cpu_kernels() -> bool:
    return _C is not None


def has_cuda_kernels() -> bool:
    return _C is not None and bool(_C.built_with_cuda())


def poisoning_outputs() -> bool:
    """Whether kernels fill their output buffers with NaN before writing them (tests turn it on with
    melnet_fast._C.set_poison_outputs, for the Python hosts of the GPU kernels too)."""
    return _C is not None and bool(_C.poison_outputs())
