"""One registry of every op's backends, and the dispatch that runs the one in force.

Each op registers an OpTable: its backends fastest first (the order "auto" tries), the device types each serves,
and where its function lives ("module:function", imported on first use, so that the triton backends import triton
only when they run); every backend function of an op takes the same arguments. The user's choice and what this
machine can run are melnet_fast.backends'. "auto" on a device where more than one tunable backend can run takes
the choice recorded by melnet_fast.tune() (ops/autotune.py), never timing anything by itself.

A backend may have variants: other designs of the same kernel (say a second CUDA sampler), registered with
register_variant. The backend's own target stays the default ("auto" never picks a variant until a measurement
says it is faster); a user or a benchmark forces one for an op with use_variant(op, name) or the environment
variable MELNET_FAST_<OP>_VARIANT (e.g. MELNET_FAST_SAMPLE_TIER_VARIANT=flags).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import threading
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from melnet_fast import backends
from melnet_fast.ops import autotune


@dataclass(frozen=True)
class Backend:
    """One implementation of an op: backend name, the device types it serves (triton's "cpu" means CPU tensors
    under TRITON_INTERPRET=1, for tests, never chosen by "auto") and "module:function"."""

    name: str
    devices: frozenset
    target: str

    def function(self) -> Callable:
        module, attr = self.target.split(":")
        return getattr(importlib.import_module(module), attr)


@dataclass
class OpTable:
    """An op's backends, fastest first, and the argument whose device and dtype choose among them (named in
    errors)."""

    name: str
    arg: str
    backends: Sequence[Backend]
    variants: dict = field(default_factory=dict)  # (backend, variant) -> "module:function"
    _functions: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        self.by_name = {b.name: b for b in self.backends}

    def function(self, backend: str) -> Callable:
        """The function of `backend`, or of the variant of it in force (use_variant)."""
        variant = variant_in_force(self.name)
        key = backend if variant == DEFAULT_VARIANT else (backend, variant)
        fn = self._functions.get(key)
        if fn is None:
            if variant == DEFAULT_VARIANT:
                fn = self.by_name[backend].function()
            else:
                target = self.variants.get((backend, variant))
                if target is None:
                    owners = sorted(b for b, v in self.variants if v == variant)
                    raise RuntimeError(f"{self.name}: variant {variant!r} is a variant of the "
                                       f"{' / '.join(owners) or 'no'} backend, but the {backend} backend runs here "
                                       f"(variants of {backend}: {', '.join(self.variant_names(backend))})")
                fn = Backend(backend, frozenset(), target).function()
            self._functions[key] = fn
        return fn

    def variant_names(self, backend: str) -> list[str]:
        """The variants of `backend` for this op, the default first."""
        return [DEFAULT_VARIANT] + [v for b, v in self.variants if b == backend]

    def candidates(self, tensor: torch.Tensor, exclude: Sequence[str] = ()) -> list[str]:
        """The backends "auto" may run on tensor's device and dtype here, in the op's order."""
        return self._candidates(tensor.device, tensor.dtype, exclude)

    def _candidates(self, device: torch.device, dtype: torch.dtype, exclude: Sequence[str]) -> list[str]:
        return [b.name for b in self.backends if b.name not in exclude
                and (b.name != "triton" or device.type != "cpu")  # the interpreter is for tests, never auto
                and serves(b, device) and backends.takes(b.name, dtype) and backends.why_unavailable(b.name) is None]

    def resolve(self, tensor: torch.Tensor, shape_key: tuple = (), exclude: Sequence[str] = ()) -> str:
        """The backend that runs this op on `tensor`'s device and dtype: the user's choice (checked: a backend that
        does not implement the op, serve the device, run here or take the dtype is an error naming the argument)
        or, with "auto", the first candidate, unless melnet_fast.tune() recorded a faster one for (shape_key,
        dtype, device model)."""
        return self._resolve(tensor.device, tensor.dtype, shape_key, exclude)

    def _resolve(self, device: torch.device, dtype: torch.dtype, shape_key: tuple, exclude: Sequence[str]) -> str:
        name = backends.get_backend()
        if name not in self.by_name and backends.VARIANTS.get(name) in self.by_name:
            name = backends.VARIANTS[name]  # an op without this variant runs the backend it varies
        if name == "auto":
            candidates = self._candidates(device, dtype, exclude)
            if not candidates:
                return "reference"
            return autotune.choose(self.name, candidates, device, dtype, shape_key)
        if name not in self.by_name or name in exclude:
            raise RuntimeError(f"{self.name}: backend {name!r} does not implement this op"
                               + (" for these arguments" if name in exclude else "")
                               + f"; implemented: {', '.join(b for b in self.by_name if b not in exclude)}")
        backend = self.by_name[name]
        if not serves(backend, device):
            where = sorted(backend.devices)
            if name == "triton" and device.type == "cpu" and "cpu" in backend.devices:
                where = ["cuda (or cpu with TRITON_INTERPRET=1)"]
            raise RuntimeError(f"{self.name}: backend {name!r} runs on {where} tensors, got tensors on "
                               f"{device.type}")
        missing = backends.why_unavailable(name)
        if missing:
            raise RuntimeError(f"{self.name}: backend {name!r} is not available: {missing}")
        if not backends.takes(name, dtype):
            allowed = " or ".join(str(d).removeprefix("torch.") for d in backends.KERNEL_DTYPES[name])
            raise ValueError(f"{self.arg}: the {name} backend takes {allowed}, got {dtype}")
        return name

    def choose(self, tensor: torch.Tensor, args: tuple, shape_key: tuple = (), exclude: Sequence[str] = ()) -> str:
        """resolve(tensor, shape_key, exclude); inside melnet_fast.tune(), with "auto", first time the candidates on
        args (the arguments the backend functions take). Under torch.compile tracing the choice is made once, at
        trace time, and fixed in the compiled graph."""
        if torch.compiler.is_compiling():
            device = tensor.device
            return _resolve_at_trace_time(self.name, device.type, device.index, tensor.dtype, tuple(shape_key),
                                          tuple(exclude))
        if autotune.tuning() and backends.get_backend() == "auto":
            autotune.tune_call(self, self.candidates(tensor, exclude), tensor, shape_key, args, {})
        return self.resolve(tensor, shape_key, exclude)

    def __call__(self, tensor: torch.Tensor, *args, shape_key: tuple = (), exclude: Sequence[str] = ()):
        """Run the op with the backend choose() picks on args (tensor, the argument that chooses, is one of them)."""
        return self.function(self.choose(tensor, args, shape_key, exclude))(*args)


@torch.compiler.assume_constant_result
def _resolve_at_trace_time(op: str, device_type: str, device_index, dtype: torch.dtype, shape_key: tuple,
                           exclude: tuple) -> str:
    """The backend of op for these arguments, run by torch.compile's tracer as plain Python (backend selection,
    environment, lazy imports) with the result a constant of the graph; the backend's function is loaded here so
    that the traced code only looks it up."""
    table = REGISTRY[op]
    name = table._resolve(torch.device(device_type, device_index), dtype, shape_key, exclude)
    table.function(name)
    return name


def serves(backend: Backend, device: torch.device) -> bool:
    # Triton serves CPU tensors only in its interpreter.
    if backend.name == "triton" and device.type == "cpu":
        return "cpu" in backend.devices and backends.interpreting_triton()
    return device.type in backend.devices


REGISTRY: dict[str, OpTable] = {}


def register(name: str, arg: str, table: Sequence[tuple[str, Sequence[str], str]]) -> OpTable:
    """Register op `name`: table rows (backend, device types, "module:function"), fastest first."""
    op = OpTable(name, arg, [Backend(b, frozenset(devices), target) for b, devices, target in table])
    REGISTRY[name] = op
    return op


# ---------------------------------------------------------------------------------------------------- variants
DEFAULT_VARIANT = "default"
_variant_state = threading.local()


def register_variant(op: str, backend: str, variant: str, target: str) -> None:
    """Register `variant` ("module:function", the backend's argument list) of `backend` for the registered op."""
    table = REGISTRY[op]
    if backend not in table.by_name or variant == DEFAULT_VARIANT:
        raise ValueError(f"{op}: cannot register variant {variant!r} of backend {backend!r}")
    table.variants[(backend, variant)] = target


def variant_env(op: str) -> str:
    """The environment variable that forces a variant of op's backends."""
    return f"MELNET_FAST_{op.upper()}_VARIANT"


def variant_in_force(op: str) -> str:
    """The variant of op's backends in force in this thread: use_variant's, else the environment's, else default."""
    forced = getattr(_variant_state, "forced", {})
    if op in forced:
        return forced[op]
    name = os.environ.get(variant_env(op), "").strip()
    if name and name != DEFAULT_VARIANT and not any(v == name for _, v in REGISTRY[op].variants):
        raise ValueError(f"{variant_env(op)}={name!r}: {op} has no such variant (variants: "
                         f"{', '.join(sorted({DEFAULT_VARIANT, *(v for _, v in REGISTRY[op].variants)}))})")
    return name or DEFAULT_VARIANT


@contextlib.contextmanager
def use_variant(op: str, variant: str):
    """Run `op` with `variant` of its backend (DEFAULT_VARIANT: the backend's own) in the enclosed code."""
    if op not in REGISTRY:
        raise ValueError(f"use_variant: no op {op!r}; registered: {', '.join(sorted(REGISTRY))}")
    if variant != DEFAULT_VARIANT and not any(v == variant for _, v in REGISTRY[op].variants):
        raise ValueError(f"use_variant: {op} has no variant {variant!r}")
    forced = getattr(_variant_state, "forced", {})
    previous = dict(forced)
    _variant_state.forced = {**forced, op: variant}
    try:
        yield
    finally:
        _variant_state.forced = previous
