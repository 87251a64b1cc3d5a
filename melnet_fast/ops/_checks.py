"""Argument checks shared by the ops: every check raises ValueError naming the argument, before any kernel."""

from __future__ import annotations

import os
import threading
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


# Finiteness checks without a host synchronisation where one would cost (a GPU, torch.compile):
#   CPU tensors, eager: checked at once (a ValueError before any kernel runs);
#   under torch.compile tracing: a graph assertion on CPU tensors (raised when the compiled graph runs); on GPU
#     tensors none (a device-side assertion would end the process's CUDA context), the result carries the NaN;
#   GPU tensors, eager: the verdict is computed on the device and kept (a flag per argument name, no sync), and
#     raise_deferred_errors() reads them all at once at a point where the caller synchronises anyway (the trainer
#     does after every step); MELNET_FAST_SYNC_CHECKS=1 checks at once instead, where the call is.
SYNC_CHECKS_ENV = "MELNET_FAST_SYNC_CHECKS"
SYNC_DEVICES = ("cpu",)  # device types checked at once by default
_deferred = threading.local()


def check_finite(name: str, t: torch.Tensor, message: str | None = None) -> None:
    """ValueError (message, default "NAME must be finite; it holds NaN or inf") when t holds NaN or inf, following
    the policy above."""
    message = message or f"{name} must be finite; it holds NaN or inf"
    if torch.compiler.is_compiling():
        if t.device.type == "cpu":
            torch._assert_async(torch.isfinite(t).all(), message)
        return
    if t.device.type not in SYNC_DEVICES and os.environ.get(SYNC_CHECKS_ENV, "0") != "1":
        flags = _pending()
        ok = torch.isfinite(t).all()
        flags[message] = flags[message] & ok if message in flags else ok
        return
    if not bool(torch.isfinite(t).all()):
        raise ValueError(message)


def _pending() -> dict:
    if not hasattr(_deferred, "flags"):
        _deferred.flags = {}
    return _deferred.flags


def raise_deferred_errors() -> None:
    """Read the finiteness verdicts that checks on GPU tensors left on the device since the last call (one
    synchronisation) and raise a ValueError naming the arguments that held NaN or inf; clears them."""
    flags = _pending()
    if not flags:
        return
    messages, verdicts = list(flags), torch.stack([flags[m].cpu() for m in flags])
    flags.clear()
    bad = [m for m, ok in zip(messages, verdicts.tolist()) if not ok]
    if bad:
        raise ValueError("; ".join(bad) + " (found by a deferred check of tensors on the GPU)")
