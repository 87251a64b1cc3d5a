"""Pieces shared by bench_gpu_training.py and bench_gpu_sampling.py: run context, timing, peak memory, which
providers can run, a time budget, and the result files (JSON rewritten after every case, CSV appended at the end).

Everything here works on a CPU too (the scripts' --smoke mode): device-only measurements return None there.
"""

from __future__ import annotations

import datetime
import gc
import json
import os
import platform
import statistics
import subprocess
import time
from typing import Callable

import torch
from results_csv import append_rows

from melnet_fast import backends
from melnet_fast.ops import dispatch
from melnet_fast.ops.autotune import elapsed_ms

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


# ---------------------------------------------------------------------------------------------------- context
def git_commit() -> str:
    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def run_context(device: torch.device) -> dict:
    """Where and with what the numbers were taken: device name, versions, commit and date."""
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    ctx = dict(date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               commit=git_commit(), host=platform.node(), device_type=device.type, torch=torch.__version__,
               cuda=torch.version.cuda, triton=triton_version, python=platform.python_version(),
               threads=torch.get_num_threads())
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        ctx.update(device=torch.cuda.get_device_name(device), sm_count=p.multi_processor_count,
                   gpu_mem_gib=round(p.total_memory / 2**30, 1), cudnn=torch.backends.cudnn.version(),
                   cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
                   matmul_allow_tf32=torch.backends.cuda.matmul.allow_tf32)
    else:
        ctx.update(device=f"CPU: {platform.processor() or platform.machine()} x{os.cpu_count()}")
    return ctx


def pick_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------------------------------------------- budget
class Budget:
    """Wall-clock budget of a script: cases started after it runs out are skipped (and said so)."""

    def __init__(self, seconds: float):
        self.seconds, self.start = seconds, time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return self.seconds - self.elapsed()

    def exhausted(self) -> bool:
        return self.left() <= 0


# ---------------------------------------------------------------------------------------------------- timing
def time_call(fn: Callable[[], object], device: torch.device, warmup: int = 2, reps: int = 20,
              max_s: float = 1.5, min_reps: int = 3) -> dict:
    """Median, quartiles and count of per-call milliseconds of fn() after `warmup` calls.

    On CUDA each call sits between two events (so asynchronous work is counted, and the host's launch overhead
    too when the device would otherwise wait for it); on the CPU, perf_counter. The number of timed calls is
    min(reps, max_s / time of one warm-up call), at least min_reps.
    """
    one = None
    for _ in range(max(warmup, 1)):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        one = time.perf_counter() - t
    n = max(min_reps, min(reps, int(max_s / max(one, 1e-6))))
    return summarize([elapsed_ms(fn, device) for _ in range(n)])


def summarize(times_ms: list[float]) -> dict:
    if len(times_ms) >= 2:
        q1, median, q3 = statistics.quantiles(times_ms, n=4, method="inclusive")
    else:
        q1 = median = q3 = times_ms[0]
    return dict(median_ms=median, q1_ms=q1, q3_ms=q3, reps=len(times_ms))


def device_kernel_ms(fn: Callable[[], object], device: torch.device, reps: int = 5) -> tuple[float, list] | None:
    """(milliseconds of device kernels per call of fn, the 6 costliest kernels) from torch.profiler, CUDA only.

    This is the device's busy time, free of the host's launch overhead and of the synchronisations the ops'
    argument checks make (e.g. the finiteness check of gmm_nll). None on the CPU or if the profiler fails.
    """
    if device.type != "cuda":
        return None
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    try:
        fn()
        sync(device)
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(reps):
                fn()
            sync(device)
        # Only device-side events (kernels, memsets, copies): the host's runtime calls carry their kernels' time
        # too, and summing both would count it twice.
        per_kernel: dict[str, float] = {}
        for evt in prof.events():
            if evt.device_type == DeviceType.CUDA:
                per_kernel[evt.name] = per_kernel.get(evt.name, 0.0) + evt.time_range.elapsed_us() / reps / 1e3
        if not per_kernel:
            return None
        top = sorted(per_kernel.items(), key=lambda kv: -kv[1])[:6]
        return sum(per_kernel.values()), [dict(kernel=k[:120], ms=round(ms, 4)) for k, ms in top]
    except Exception as exc:  # the profiler is a bonus: a failure must not lose the other numbers
        print(f"  (profiler failed: {type(exc).__name__}: {exc})")
        return None


def peak_extra_bytes(fn: Callable[[], object], device: torch.device) -> int | None:
    """Peak device memory of one fn() above what was allocated before it (the inputs, weights and grad_out
    allocated by the caller). CUDA only: None on the CPU."""
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    fn()
    sync(device)
    return torch.cuda.max_memory_allocated(device) - base


def release(device: torch.device) -> None:
    """Hand the device memory of dead tensors back (after a case, or an out-of-memory error). gc.collect takes
    ~0.1-0.3 s with torch loaded, so this runs between cases, not between timed calls, and not on the CPU."""
    if device.type == "cuda":
        gc.collect()
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()


def measure_bandwidth_gbps(device: torch.device, mib: int) -> float:
    """Device-memory bandwidth of a large copy (bytes read + bytes written per second), median of several."""
    n = mib * 2**20 // 4
    src = torch.rand(n, device=device)
    dst = torch.empty_like(src)
    t = time_call(lambda: dst.copy_(src), device, warmup=3, reps=20, max_s=1.0, min_reps=5)
    return 2 * n * 4 / (t["median_ms"] * 1e-3) / 1e9


def is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


def short_error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200] if text else ''}"


# ---------------------------------------------------------------------------------------------------- providers
def compiled_backends(device: torch.device, smoke: bool) -> list[str]:
    """The compiled backends worth trying on `device`: cuda and triton on a GPU; cpu on the CPU, plus triton in
    its interpreter (TRITON_INTERPRET=1) except in smoke mode, where it would take minutes."""
    if device.type == "cuda":
        return ["cuda", "triton"]
    return ["cpu"] + ([] if smoke else ["triton"])


def skip_reason(op: str, backend: str, dtype: torch.dtype, device: torch.device) -> str | None:
    """Why `backend` cannot run op `op` (its name in melnet_fast.ops) on `device` in `dtype` here, or None.

    Reads only public facts: the op's row in melnet_fast.ops.dispatch.REGISTRY, backends.why_unavailable and
    backends.KERNEL_DTYPES.
    """
    table = dispatch.REGISTRY[op].by_name
    if backend not in table:
        return f"backend {backend!r} does not implement {op} (yet)"
    if device.type not in table[backend].devices:
        return f"backend {backend!r} does not serve {device.type} tensors for this op"
    missing = backends.why_unavailable(backend)
    if missing:
        return missing
    if device.type == "cpu" and backend == "triton" and not backends.interpreting_triton():
        return "triton on the CPU needs TRITON_INTERPRET=1"
    allowed = backends.KERNEL_DTYPES.get(backend)
    if allowed is not None and dtype not in allowed:
        return f"backend {backend!r} does not take {str(dtype).removeprefix('torch.')}"
    return None


# ---------------------------------------------------------------------------------------------------- output
def markdown(headers: list[str], rows: list[list]) -> str:
    def cell(v):
        if v is None:
            return ""
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 100 else f"{v:,.0f}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


class Results:
    """The results of one script: a JSON document rewritten after every case (so a run cut short by a timeout
    still leaves what it measured) and, at the end, one CSV row per measured case appended to NAME.csv."""

    def __init__(self, out_dir: str, name: str, context: dict, csv_fields: list[str]):
        os.makedirs(out_dir, exist_ok=True)
        self.out_dir, self.name, self.csv_fields = out_dir, name, csv_fields
        self.doc: dict = {"context": context, "skipped": [], "errors": [], "notes": []}

    def __getitem__(self, key):
        return self.doc[key]

    def __setitem__(self, key, value):
        self.doc[key] = value

    def skip(self, case: str, provider: str, reason: str) -> None:
        print(f"  skip {case} / {provider}: {reason}")
        self.doc["skipped"].append(dict(case=case, provider=provider, reason=reason))

    def error(self, case: str, provider: str, message: str) -> None:
        print(f"  ERROR {case} / {provider}: {message}")
        self.doc["errors"].append(dict(case=case, provider=provider, error=message))

    def note(self, text: str) -> None:
        print(f"note: {text}")
        self.doc["notes"].append(text)

    @property
    def json_path(self) -> str:
        return os.path.join(self.out_dir, f"{self.name}.json")

    def save(self) -> None:
        tmp = self.json_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.doc, f, indent=1, default=str)
        os.replace(tmp, self.json_path)

    def append_csv(self, rows: list[dict]) -> str:
        """Append rows (context fields added) to NAME.csv (results_csv.append_rows: columns the file lacks widen its
        header)."""
        fields = list(self.doc["context"]) + [f for f in self.csv_fields if f not in self.doc["context"]]
        return append_rows(os.path.join(self.out_dir, f"{self.name}.csv"),
                           [{**self.doc["context"], **r} for r in rows], fields)
