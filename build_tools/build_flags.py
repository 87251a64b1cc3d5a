"""The build flags of melnet_fast._C (environment variables, one prefix) and the facts of the torch it builds
against. Read by setup.py, by the PEP 517 backend beside this file, and by scripts/check_cuda_compile.sh; imports
torch only inside the functions that need it, so that an sdist builds without torch.

  MELNET_FAST_CUDA          auto (default) | 0 | 1: build the CUDA kernels (auto: when nvcc and a CUDA torch exist)
  MELNET_FAST_CUDA_ARCHS    compute capabilities, ";"- or ","-separated, "+PTX" adds PTX for later GPUs; default
                            DISTRIBUTABLE_ARCHS (TORCH_CUDA_ARCH_LIST is read when this is unset)
  MELNET_FAST_NVCC_THREADS  nvcc --threads, default 2
  MELNET_FAST_DEBUG_BUILD   1: -O0 -g, asserts on (C++ assert, TORCH_INTERNAL_ASSERT_DEBUG_ONLY), nvcc -G
  MAX_JOBS                  parallel compile jobs (read by torch's ninja build)
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

# A100 (8.0), consumer Ampere (8.6), Ada and L4 (8.9), H100 / H200 (9.0), and PTX that later GPUs JIT-compile.
DISTRIBUTABLE_ARCHS = "8.0;8.6;8.9;9.0+PTX"
# The kernels need bfloat16 tensor cores (wmma) and cooperative grid launches: compute capability 8.0.
MIN_ARCH = (8, 0)
# The oldest torch the package supports; pyproject.toml's dependencies say the same (a test pins them together).
MIN_TORCH = "2.4"


class BuildFlagError(ValueError):
    """A build flag with a value the build cannot use; the message names the variable."""


def _env(name: str, default: str, env=None) -> str:
    return (os.environ if env is None else env).get(name, default).strip()


def cuda_mode(env=None) -> str:
    mode = _env("MELNET_FAST_CUDA", "auto", env).lower()
    if mode not in ("auto", "0", "1"):
        raise BuildFlagError(f"MELNET_FAST_CUDA must be auto, 0 or 1, got {mode!r}")
    return mode


def debug_build(env=None) -> bool:
    value = _env("MELNET_FAST_DEBUG_BUILD", "0", env)
    if value not in ("0", "1"):
        raise BuildFlagError(f"MELNET_FAST_DEBUG_BUILD must be 0 or 1, got {value!r}")
    return value == "1"


def nvcc_threads(env=None) -> int:
    value = _env("MELNET_FAST_NVCC_THREADS", "2", env)
    if not value.isdigit() or int(value) < 1:
        raise BuildFlagError(f"MELNET_FAST_NVCC_THREADS must be a positive integer, got {value!r}")
    return int(value)


_ARCH = re.compile(r"^(\d+)\.(\d)([af]?)(\+PTX)?$")


def cuda_archs(env=None, nvcc_codes: set[str] | None = None) -> list[tuple[str, bool]]:
    """[(arch, with_ptx)] from MELNET_FAST_CUDA_ARCHS (else TORCH_CUDA_ARCH_LIST, else DISTRIBUTABLE_ARCHS),
    e.g. [("80", False), ("90", True)]. nvcc_codes: the sm_XX codes nvcc can compile for (checked when given).
    BuildFlagError names the variable and the entry that is wrong."""
    name, value = "MELNET_FAST_CUDA_ARCHS", _env("MELNET_FAST_CUDA_ARCHS", "", env)
    if not value and _env("TORCH_CUDA_ARCH_LIST", "", env):
        name, value = "TORCH_CUDA_ARCH_LIST", _env("TORCH_CUDA_ARCH_LIST", "", env)
    if not value:
        name, value = "the default architecture list", DISTRIBUTABLE_ARCHS
    entries = [e.strip() for e in re.split(r"[;, ]+", value) if e.strip()]
    if not entries:
        raise BuildFlagError(f"{name} names no architecture (e.g. {DISTRIBUTABLE_ARCHS!r})")
    archs = []
    for entry in entries:
        m = _ARCH.match(entry)
        if m is None:
            raise BuildFlagError(f"{name}: {entry!r} is not a compute capability like 8.6, 9.0a or 9.0+PTX "
                                 f"(got {value!r})")
        major, minor, suffix, ptx = int(m.group(1)), int(m.group(2)), m.group(3), bool(m.group(4))
        if (major, minor) < MIN_ARCH:
            raise BuildFlagError(f"{name}: {entry} is below {MIN_ARCH[0]}.{MIN_ARCH[1]}, the oldest architecture "
                                 "the kernels support (bfloat16 tensor cores, cooperative launches)")
        code = f"{major}{minor}{suffix}"
        if nvcc_codes is not None and f"sm_{code}" not in nvcc_codes:
            known = ", ".join(sorted(c.removeprefix("sm_") for c in nvcc_codes))
            raise BuildFlagError(f"{name}: nvcc cannot compile for {entry} (it knows {known})")
        archs.append((code, ptx))
    return archs


def gencode_flags(archs: list[tuple[str, bool]]) -> list[str]:
    flags = []
    for code, ptx in archs:
        flags.append(f"-gencode=arch=compute_{code},code=sm_{code}")
        if ptx:
            flags.append(f"-gencode=arch=compute_{code},code=compute_{code}")
    return flags


def arch_names(archs: list[tuple[str, bool]]) -> list[str]:
    """["8.0", "9.0a", "9.0+PTX"]: the list as the build record and `melnet-fast info` show it."""
    names = []
    for code, ptx in archs:
        digits = code.rstrip("af")
        names.append(f"{digits[:-1]}.{digits[-1]}{code[len(digits):]}" + ("+PTX" if ptx else ""))
    return names


def cxx_standard(torch_include: str) -> str:
    """The C++ standard the torch headers under torch_include require ("c++17" or "c++20"), read from the check
    at the top of ATen/ATen.h (`#if ... __cplusplus < 202002L` / `#error C++20 or later ...`)."""
    path = os.path.join(torch_include, "ATen", "ATen.h")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read(4096)
    except OSError:
        return "c++17"
    m = re.search(r"__cplusplus\s*<\s*(\d{6})L", text)
    if m is None:
        return "c++17"
    return "c++20" if int(m.group(1)) >= 202002 else "c++17"


def compile_args(std: str, debug: bool, archs: list[tuple[str, bool]] | None, threads: int) -> dict[str, list[str]]:
    """extra_compile_args of the extension: {"cxx": [...]} plus "nvcc" when archs is given (a CUDA build)."""
    opt = ["-O0", "-g", "-UNDEBUG"] if debug else ["-O3"]
    args = {"cxx": opt + [f"-std={std}", "-fopenmp"]}
    if archs is not None:
        device = ["-G"] if debug else ["-lineinfo"]
        args["nvcc"] = opt + device + [f"-std={std}", "--use_fast_math", f"--threads={threads}"] + gencode_flags(archs)
    return args


def target_torch() -> dict | None:
    """The torch of the environment this build installs into: {"version", "dist_version", "cuda"}, or None.

    Under pip's build isolation the running interpreter sees only the isolated build environment (through
    PYTHONPATH and a sitecustomize); `python -I` ignores both and sees the environment pip installs into.
    Without isolation it is the same torch the build imports."""
    code = ("import importlib.metadata as m, json, torch; "
            "print(json.dumps({'version': str(torch.__version__), 'dist_version': m.version('torch'), "
            "'cuda': torch.version.cuda}))")
    try:
        out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    import json

    try:
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None


def public_version(version: str) -> str:
    """"2.11.0+cu130" -> "2.11.0" (the local label names the wheel's variant, not the release)."""
    return version.split("+", 1)[0]


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", public_version(version))[:3])


def torch_build_requirement(target: dict | None) -> str:
    """The torch an isolated build installs: the release that the target environment runs (so the extension
    is built against it), or the newest supported release when the target has no torch (pip then installs the
    same newest release as the package's dependency)."""
    if target is None or version_tuple(target["dist_version"]) < version_tuple(MIN_TORCH):
        return f"torch>={MIN_TORCH}"
    return f"torch=={public_version(target['dist_version'])}"
