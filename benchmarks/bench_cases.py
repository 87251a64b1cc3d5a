"""The benchmark cases of the op layer, shared by test_bench_ops.py (pytest-benchmark) and bench_table.py.

A case is one op in one mode at one size; `runner(backend)` builds its inputs on the backend's device and
returns a function that runs the op once (and waits for the device), so every provider times the same work.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

import melnet_fast
from melnet_fast import backends
from melnet_fast.ops import dispatch, gmm_nll, lstm_sweep_2d

BACKENDS = ("reference", "cpu", "cuda", "triton")

SWEEP = dict(B=4, T=64, F=64, I=64, H=64, directions=("t+", "f+", "f-"))
GMM = dict(shape=(4, 64, 64), K=10)


def device_of(backend: str) -> str:
    return "cuda" if backend in ("cuda", "triton") else "cpu"


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _sweep_inputs(device: str, dtype=torch.float32, seed=0):
    s = SWEEP
    R, H, I = len(s["directions"]), s["H"], s["I"]
    g = torch.Generator().manual_seed(seed)
    shapes_scales = [((s["B"], s["T"], s["F"], I), 1.0), ((R, 4 * H, I), I**-0.5), ((R, 4 * H, H), H**-0.5),
                     ((R, 4 * H), 0.5), ((R, H), 0.5), ((R, H), 0.5)]
    return [(torch.randn(shape, generator=g) * scale).to(device, dtype) for shape, scale in shapes_scales]


def _gmm_inputs(device: str, dtype=torch.float32, seed=0):
    shape, K = GMM["shape"], GMM["K"]
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g) * 1.5
    mu, log_sigma, logit_pi = (torch.randn(*shape, K, generator=g) * s for s in (1.0, 0.5, 2.0))
    return [t.to(device, dtype) for t in (x, mu, log_sigma, logit_pi)]


def _forward(op, inputs, extra, backend, device):
    def run():
        with torch.no_grad(), melnet_fast.use_backend(backend):
            op(*inputs, *extra)
        _sync(device)

    return run


def _forward_backward(op, inputs, extra, backend, device):
    leaves = [t.requires_grad_() for t in inputs]
    with torch.no_grad(), melnet_fast.use_backend(backend):
        grad_out = torch.randn_like(op(*leaves, *extra))

    def run():
        with melnet_fast.use_backend(backend):
            out = op(*leaves, *extra)
        torch.autograd.grad(out, leaves, grad_out)
        _sync(device)

    return run


@dataclass(frozen=True)
class Case:
    op: str  # public name in melnet_fast.ops
    mode: str  # "fwd" (inference, no autograd) or "fwd+bwd" (training step of the op)
    size: str
    make: Callable[[str, str], Callable[[], None]]  # (backend, device) -> run once

    @property
    def name(self) -> str:
        return f"{self.op} {self.mode} {self.size}"

    def skip_reason(self, backend: str) -> str | None:
        """Why `backend` cannot run this case here (None when it can)."""
        if backend not in dispatch.REGISTRY[self.op].by_name:
            return f"backend {backend!r} does not implement {self.op} yet"
        return backends.why_unavailable(backend)

    def runner(self, backend: str) -> Callable[[], None]:
        return self.make(backend, device_of(backend))


_SWEEP_SIZE = "B{B}-T{T}-F{F}-I{I}-H{H}-".format(**SWEEP) + ".".join(SWEEP["directions"])
_GMM_SIZE = "x".join(map(str, GMM["shape"])) + f"-K{GMM['K']}"
_DIRS = (list(SWEEP["directions"]),)

CASES = [
    Case("lstm_sweep_2d", "fwd", _SWEEP_SIZE,
         lambda b, d: _forward(lstm_sweep_2d, _sweep_inputs(d), _DIRS, b, d)),
    Case("lstm_sweep_2d", "fwd+bwd", _SWEEP_SIZE,
         lambda b, d: _forward_backward(lstm_sweep_2d, _sweep_inputs(d), _DIRS, b, d)),
    Case("gmm_nll", "fwd+bwd", _GMM_SIZE,
         lambda b, d: _forward_backward(gmm_nll, _gmm_inputs(d), (), b, d)),
]
