"""Argument checks shared by the ops: every check raises ValueError naming the argument, before any kernel."""

from __future__ import annotations

from typing import Sequence

import torch

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_tensor(name: str, t, ndim: int | None = None, shape: Sequence[int | None] | None = None,
                 layout: str = "") -> None:
    """Check that `t` is a floating tensor of rank `ndim` and, where given, of `shape` (None = any size)."""
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor{layout}, got {type(t).__name__}")
    if not t.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
    if ndim is not None and t.dim() != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions{layout}, got shape {tuple(t.shape)}")
    if shape is not None:
        for got, want in zip(t.shape, shape):
            if want is not None and got != want:
                expected = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"
                raise ValueError(f"{name} must have shape {expected}{layout}, got {tuple(t.shape)}")


def check_same(named: dict[str, torch.Tensor]) -> None:
    """All tensors on one device and of one dtype."""
    items = list(named.items())
    first_name, first = items[0]
    for name, t in items[1:]:
        if t.device != first.device:
            raise ValueError(f"{name} is on {t.device} but {first_name} is on {first.device}; "
                             "all arguments must be on one device")
        if t.dtype != first.dtype:
            raise ValueError(f"{name} has dtype {t.dtype} but {first_name} has {first.dtype}; "
                             "all arguments must have one dtype")


def check_finite(name: str, t: torch.Tensor) -> None:
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} must be finite; it holds NaN or inf")
