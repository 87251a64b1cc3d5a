"""`melnet-fast info`: what this installation is made of and what it will run: versions built against and running,
the compiled CPU levels and CUDA architectures, the GPUs seen, and the backend "auto" picks for each op (with the
reason a backend is missing). The first thing to paste into a bug report."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform

import torch

import melnet_fast
from melnet_fast import _extension, backends
from melnet_fast.cli.common import HelpFormatter
from melnet_fast.ops import autotune, dispatch

# The ops that dispatch: every table of the one registry.
OPS = dispatch.REGISTRY
CPU_LEVELS = {4: "x86-64-v4 (AVX-512)", 3: "x86-64-v3 (AVX2 + FMA)", 1: "baseline"}


def add_parser(sub) -> None:
    p = sub.add_parser("info", help="versions, compiled kernels, GPUs and the backend each op runs on",
                       description="Print the package version, the torch / CUDA / Triton versions the extension "
                                   "was built against and runs with, the compiled CPU levels and CUDA "
                                   "architectures, the GPUs torch sees, and which backend 'auto' picks for each op "
                                   "(with the reason a backend is unavailable).",
                       formatter_class=HelpFormatter)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.set_defaults(func=run)


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _gpu_code(capability: tuple[int, int], archs: list[str]) -> str:
    """How the extension's CUDA code runs on a GPU of `capability`, given the record's architecture names."""
    cubins, ptx = set(), set()
    for name in archs:
        base = name.removesuffix("+PTX")
        major, minor = base.rstrip("af").split(".")
        cc = (int(major), int(minor))
        if base[-1] not in "af" or cc == capability:  # arch-specific code ("9.0a") runs on that capability only
            cubins.add(cc)
        if name.endswith("+PTX"):
            ptx.add(cc)
    if any(c[0] == capability[0] and c[1] <= capability[1] for c in cubins):
        return "native code"
    if any(c <= capability for c in ptx):
        return "PTX, compiled by the driver at first use"
    return (f"no code for sm_{capability[0]}{capability[1]}: rebuild with "
            f"MELNET_FAST_CUDA_ARCHS={capability[0]}.{capability[1]}")


def _auto_pick(table: dispatch.OpTable, device: str) -> str:
    tensor = torch.empty(0, device=device)
    with backends.use_backend("auto"):
        name = table.resolve(tensor)
        tunable = autotune.tunable(table.candidates(tensor), tensor.device)
    if len(tunable) > 1:
        return f"{name}, or the faster of {' and '.join(tunable)} where melnet_fast.tune recorded one for the shape"
    return name


def collect() -> dict:
    """Everything `melnet-fast info` prints, as a JSON-able dict."""
    record = _extension.build_record()
    ext = _extension.extension()
    info = {
        "melnet_fast": melnet_fast.__version__, "location": os.path.dirname(melnet_fast.__file__),
        "python": platform.python_version(), "platform": platform.platform(),
        "torch": str(torch.__version__), "torch_cuda": torch.version.cuda,
        "triton": _version("triton"), "numpy": _version("numpy"),
        "extension": {"loaded": ext is not None, "error": _extension.load_error(), "built_against": record},
        "gpus": [],
        "backends": {name: backends.why_unavailable(name) for name in backends.BACKENDS if name != "auto"},
        "auto": {},
    }
    if ext is not None:
        compiled, running = ext.cpu_levels()
        info["extension"]["cpu_levels"] = {"compiled": [CPU_LEVELS[c] for c in compiled],
                                           "running": CPU_LEVELS[running]}
    archs = (record or {}).get("cuda_archs", [])
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            cc = torch.cuda.get_device_capability(i)
            info["gpus"].append({"index": i, "name": torch.cuda.get_device_name(i), "capability": f"{cc[0]}.{cc[1]}",
                                 "extension_code": _gpu_code(cc, archs) if archs else None})
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for op, table in OPS.items():
        info["auto"][op] = {device: _auto_pick(table, device) for device in devices}
    return info


def _text(info: dict) -> list[str]:
    ext, record = info["extension"], info["extension"]["built_against"]
    lines = [f"melnet_fast {info['melnet_fast']}  ({info['location']})",
             f"python      {info['python']}  ({info['platform']})",
             f"torch       {info['torch']} (CUDA {info['torch_cuda'] or 'none'})  running",
             f"numpy       {info['numpy']}",
             f"triton      {info['triton'] or 'not installed (pip install melnet_fast[triton])'}"]
    if record:
        cuda = (f"CUDA kernels for {', '.join(record['cuda_archs'])} (nvcc {record.get('nvcc')})"
                if record.get("with_cuda") else "no CUDA kernels")
        lines.append(f"extension   built against torch {record.get('torch')} "
                     f"(CUDA {record.get('torch_cuda') or 'none'}), {record.get('cxx_standard')}, {cuda}"
                     f"{', debug build' if record.get('debug') else ''}")
    label = "            " if record else "extension   "
    lines.append(label + ("loaded" if ext["loaded"] else f"not loaded: {ext['error']}"))
    if "cpu_levels" in ext:
        lines.append(f"CPU kernels compiled for {', '.join(ext['cpu_levels']['compiled'])}; "
                     f"this CPU runs {ext['cpu_levels']['running']}")
    if not info["gpus"]:
        lines.append("GPUs        none visible to torch")
    for gpu in info["gpus"]:
        code = f"; extension: {gpu['extension_code']}" if gpu["extension_code"] else ""
        lines.append(f"GPU {gpu['index']}       {gpu['name']} (compute capability {gpu['capability']}){code}")
    lines.append("auto picks, per op and tensor device:")
    for op, picks in info["auto"].items():
        lines.append(f"  {op:<16}" + ", ".join(f"{device} tensors -> {name}" for device, name in picks.items()))
    lines.append("backends:")
    for name, why in info["backends"].items():
        lines.append(f"  {name:<16}{'available' if why is None else 'unavailable: ' + why}")
    return lines


def run(args) -> int:
    info = collect()
    print(json.dumps(info, indent=1) if args.json else "\n".join(_text(info)))
    return 0
