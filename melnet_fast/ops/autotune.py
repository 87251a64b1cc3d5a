"""Ahead-of-time choice among the backends that "auto" could run on a GPU (cuda and triton).

"auto" never times anything inside a user's call: timing candidates at the user's full shape would allocate a
second set of activations next to the live ones, and under CUDA-graph capture or torch.compile tracing it cannot
run at all. Instead, melnet_fast.tune(fn, *args, **kwargs) runs fn once in tuning mode: each op that fn calls with
"auto" on a GPU times its candidate backends there (forward and backward, on detached copies of its inputs) and
records the fastest for (op, shapes, dtype, GPU model). Later calls with those shapes take it, in this process, and
in later ones when the choices go to a JSON file (tune(..., cache_file=...) or the environment variable
MELNET_FAST_TUNE_CACHE, which "auto" also reads). Without a recorded choice "auto" takes the first candidate in the
op's order (the cuda kernels; of the sweep, its first design).
"""

from __future__ import annotations

import functools
import json
import os
import statistics
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Callable

import torch

TUNED = ("cuda", "cuda_gemm", "triton")  # the backends "auto" chooses among by timing
TUNED_DEVICES = ("cuda",)  # device types where it does
CACHE_ENV = "MELNET_FAST_TUNE_CACHE"
_FORMAT = 1

_choices: dict[tuple, str] = {}  # (op, shape key, dtype, device model) -> backend
_loaded: set[str] = set()  # cache files read into _choices
_state = threading.local()


def tuning() -> bool:
    """True inside melnet_fast.tune()."""
    return getattr(_state, "on", False)


def _device_model(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else device.type


def _key(op: str, shape_key: tuple, dtype: torch.dtype, device: torch.device) -> tuple:
    return op, tuple(shape_key), str(dtype).removeprefix("torch."), _device_model(device)


def tunable(candidates, device: torch.device) -> list[str]:
    """The candidates that "auto" chooses among by the times melnet_fast.tune recorded, on this device."""
    return [c for c in candidates if c in TUNED] if device.type in TUNED_DEVICES else []


def choose(op: str, candidates: list[str], device: torch.device, dtype: torch.dtype, shape_key: tuple) -> str:
    """The backend "auto" runs: the recorded choice for (op, shape_key, dtype, device model) when it is among the
    candidates, else the first candidate."""
    if len(tunable(candidates, device)) > 1:
        path = os.environ.get(CACHE_ENV)
        if path and path not in _loaded:
            load(path)
        chosen = _choices.get(_key(op, shape_key, dtype, device))
        if chosen in candidates:
            return chosen
    return candidates[0]


def is_device_error(exc: BaseException) -> bool:
    """A CUDA error that may leave the context unusable (an illegal address, a launch failure): never swallowed.
    Running out of memory is not one."""
    if isinstance(exc, torch.OutOfMemoryError):
        return False
    return isinstance(exc, torch.AcceleratorError) or (isinstance(exc, RuntimeError) and "CUDA error" in str(exc))


def _run_once(fn: Callable, args, kwargs) -> None:
    """fn's forward on detached copies of the tensor arguments, and its backward where an output needs one."""
    detached = [a.detach().requires_grad_(a.requires_grad) if isinstance(a, torch.Tensor) else a for a in args]
    with torch.enable_grad():
        out = fn(*detached, **kwargs)
    outs = [o for o in (out if isinstance(out, (tuple, list)) else (out,))
            if isinstance(o, torch.Tensor) and o.requires_grad]
    if outs:
        torch.autograd.backward(outs, [torch.ones_like(o) for o in outs])


def elapsed_ms(fn: Callable, device: torch.device) -> float:
    """Milliseconds of one call of fn(): between two CUDA events on a GPU (asynchronous work included), by
    perf_counter on the CPU."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end)
    begin = time.perf_counter()
    fn()
    return (time.perf_counter() - begin) * 1e3


def time_backends(op, names: list[str], device: torch.device, args, kwargs, repeats: int = 3) -> dict[str, float]:
    """Median milliseconds of forward and backward of op (an OpTable) with each backend in `names`, after a warm-up
    (Triton's compilation, caches). A backend that fails is left out with a warning; a device error is raised."""
    times = {}
    for name in names:
        try:
            run = functools.partial(_run_once, op.function(name), args, kwargs)
            run()
            if device.type == "cuda":
                torch.cuda.synchronize(device)  # an asynchronous error of the warm-up surfaces here
            times[name] = statistics.median(elapsed_ms(run, device) for _ in range(repeats))
        except Exception as exc:
            if is_device_error(exc):
                raise
            warnings.warn(f"{op.name}: the {name} backend failed while tuning and will not be chosen "
                          f"({type(exc).__name__}: {exc})", RuntimeWarning, stacklevel=2)
    return times


def tune_call(op, candidates: list[str], tensor: torch.Tensor, shape_key: tuple, args, kwargs) -> None:
    """Inside tune(): time op's tunable candidates at this call's arguments once per key and record the fastest."""
    device = tensor.device
    names = tunable(candidates, device)
    key = _key(op.name, shape_key, tensor.dtype, device)
    if len(names) < 2 or key in _choices:
        return
    times = time_backends(op, names, device, args, kwargs)
    if times:
        _choices[key] = min(times, key=times.get)


def tune(fn: Callable, *args, cache_file: str | os.PathLike | None = None, **kwargs):
    """Run fn(*args, **kwargs) once with every op that runs with "auto" on a GPU timing its candidate backends at
    the shapes it meets (forward and backward), and record the fastest for later calls with those shapes. Returns
    fn's result. cache_file (default: $MELNET_FAST_TUNE_CACHE, if set): a JSON file read first and written after,
    keyed by GPU model, so that later processes skip the timing. Call it outside torch.compile and CUDA-graph
    capture, e.g. melnet_fast.tune(lambda: model.loss(x).backward()) before training."""
    if torch.compiler.is_compiling():
        raise RuntimeError("melnet_fast.tune: call it outside torch.compile (it times real kernel runs)")
    if torch.cuda.is_available() and torch.cuda.is_current_stream_capturing():
        raise RuntimeError("melnet_fast.tune: call it outside CUDA-graph capture (it times real kernel runs)")
    path = cache_file if cache_file is not None else os.environ.get(CACHE_ENV)
    if path and Path(path).exists():
        load(path)
    _state.on = True
    try:
        result = fn(*args, **kwargs)
    finally:
        _state.on = False
    if path:
        save(path)
    return result


def choices() -> dict[tuple, str]:
    """The recorded choices: {(op, shape key, dtype, device model): backend}."""
    return dict(_choices)


def clear() -> None:
    """Forget every recorded choice (and which cache files were read)."""
    _choices.clear()
    _loaded.clear()


def load(path: str | os.PathLike) -> None:
    """Add the choices of a cache file written by save() (a missing file adds nothing)."""
    path = os.fspath(path)
    _loaded.add(path)
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        return
    except (OSError, ValueError) as exc:
        warnings.warn(f"{CACHE_ENV}: could not read the tuning cache {path} ({exc}); ignoring it", RuntimeWarning,
                      stacklevel=2)
        return
    if not isinstance(data, dict) or data.get("format") != _FORMAT:
        warnings.warn(f"{CACHE_ENV}: {path} is not a melnet_fast tuning cache of format {_FORMAT}; ignoring it",
                      RuntimeWarning, stacklevel=2)
        return
    for e in data.get("choices", []):
        _choices.setdefault((e["op"], _tuple(e["shape"]), e["dtype"], e["device"]), e["backend"])


def _tuple(v):
    return tuple(_tuple(x) for x in v) if isinstance(v, list) else v


def save(path: str | os.PathLike) -> None:
    """Write every recorded choice to a JSON file, atomically."""
    path = Path(path)
    entries = [{"op": op, "shape": list(shape), "dtype": dtype, "device": device, "backend": backend}
               for (op, shape, dtype, device), backend in sorted(_choices.items(), key=repr)]
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        json.dump({"format": _FORMAT, "choices": entries}, f, indent=1)
    os.replace(tmp, path)
