"""Builds the CUDA emulation harness with the host C++ compiler: emu_sweep.cpp with the shim headers (host
stand-ins for cuda_bf16.h, cuda_fp16.h, mma.h and the CUDA built-ins) and the repository's
csrc/cuda/lstm_step.cuh, read at build time and rewritten only to fill its __shared__ variables with garbage at
the start of every block. Executables are cached under the temp folder, keyed by a hash of every input (the
rewritten kernel source, the harness, the compiler and its flags), so a rerun with unchanged sources reuses them.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CSRC = REPO / "csrc"
KERNEL_SOURCE = CSRC / "cuda" / "lstm_step.cuh"
# The torch-free headers of csrc/ that device code includes unchanged (found through -I csrc).
SHARED_HEADERS = [CSRC / name for name in ("scalar_math.h", "mixture_draw.h", "sampler_layout.h", "sweep_geometry.h")]
# The second sweep design's device headers, included unchanged (they declare no __shared__ memory).
EPILOGUE_HEADERS = [CSRC / "cuda" / name for name in ("lstm_epilogue.cuh", "lstm_cell.cuh")]
HARNESS = [HERE / "emu_sweep.cpp", *EPILOGUE_HEADERS, HERE / "emu_selftest.h", HERE / "emu_buffer.h",
           *sorted((HERE / "shim").glob("*.h")),
           *SHARED_HEADERS]
FLAGS = ["-std=c++17", "-O2", "-ffp-contract=off", "-fno-fast-math", "-Wall", "-Wextra", "-Wno-unknown-pragmas"]
# "sm80": the kernels as compiled for sm_80 and newer (wmma tensor-core path for 16-bit dtypes); "sm75": as for
# older GPUs (FMA path for every dtype), selected by the __CUDA_ARCH__ test in lstm_step.cuh.
VARIANTS = {"sm80": [], "sm75": ["-D__CUDA_ARCH__=750"]}

# "__shared__ TYPE NAME;" or "__shared__ TYPE NAME[...]...;", TYPE possibly templated, possibly __align__(n).
_SHARED = re.compile(r"__shared__\s+(?:__align__\(\d+\)\s+)?[\w:]+(?:<[\w:, ]*>)?\s+(\w+)(?:\[\w+\])*\s*;")


class BuildError(RuntimeError):
    pass


def find_compiler() -> str | None:
    """$CXX, else g++, c++ or clang++ on PATH; None when there is none."""
    for name in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        path = shutil.which(name) if name else None
        if path:
            return path
    return None


def rewrite_kernel_source(text: str, path: Path) -> str:
    """The kernel source with emu::shared_declared(&NAME, sizeof(NAME)) appended to each __shared__ declaration (on
    the same line, under a #line directive naming the original: compiler messages and barrier sites keep its file
    and line numbers)."""
    if re.search(r"extern\s+__shared__", text):
        raise BuildError(f"{path}: dynamic shared memory (extern __shared__) is not emulated")
    found = len(re.findall(r"\b__shared__\b", text))
    new, n = _SHARED.subn(lambda m: f"{m.group(0)} emu::shared_declared(&{m.group(1)}, sizeof({m.group(1)}));",
                          text)
    if n != found:
        raise BuildError(f"{path}: {found} __shared__ declarations but only {n} of the emulated form "
                         f"'__shared__ TYPE NAME;' (extend _SHARED in {Path(__file__).name})")
    return f'#line 1 "{path}"\n{new}'


def _compiler_id(cxx: str) -> str:
    out = subprocess.run([cxx, "--version"], capture_output=True, text=True, check=True).stdout
    return f"{cxx}\n{out}"


def compile_all(commands: dict[str, list[str]], exes: dict[str, Path], cxx: str) -> None:
    """Runs the compile commands (without their "-o OUTPUT") of the executables exes lacks, in parallel, each into
    a partial file renamed into place when it succeeds. Raises BuildError with every failure's messages."""
    jobs = {}
    for name, cmd in commands.items():
        if exes[name].exists():
            continue
        partial = exes[name].parent / f".{exes[name].name}.{os.getpid()}"
        jobs[name] = (partial, subprocess.Popen([*cmd, "-o", str(partial)], stdout=subprocess.PIPE,
                                                stderr=subprocess.STDOUT, text=True))
    errors = []
    for name, (partial, proc) in jobs.items():
        messages, _ = proc.communicate()
        if proc.returncode != 0:
            errors.append(f"{exes[name].name}: {cxx} failed ({proc.returncode}):\n{messages}")
            partial.unlink(missing_ok=True)
        else:
            os.replace(partial, exes[name])
    if errors:
        raise BuildError("\n".join(errors))


def build(kernel_source: Path | None = None, variants=tuple(VARIANTS), cache_root: Path | None = None,
          cxx: str | None = None) -> dict[str, Path]:
    """{variant: executable}, compiling (in parallel) only what the cache lacks. Raises BuildError with the
    compiler's messages when compilation fails."""
    kernel_source = Path(kernel_source or KERNEL_SOURCE)
    cxx = cxx or find_compiler()
    if cxx is None:
        raise BuildError("no C++ compiler found")
    kernel = rewrite_kernel_source(kernel_source.read_text(), kernel_source)
    digest = hashlib.sha256()
    for part in (kernel.encode(), _compiler_id(cxx).encode(), " ".join(FLAGS).encode(),
                 *(p.name.encode() + b"\0" + p.read_bytes() for p in HARNESS)):
        digest.update(part + b"\0\0")
    root = cache_root or Path(tempfile.gettempdir()) / f"melnet_fast_cuda_emulation-{os.getuid()}"
    out_dir = root / digest.hexdigest()[:20]
    out_dir.mkdir(parents=True, exist_ok=True)
    header = out_dir / "lstm_step.cuh"
    tmp = out_dir / f".lstm_step.cuh.{os.getpid()}"
    tmp.write_text(kernel)
    os.replace(tmp, header)  # same content for the same key: a concurrent build may replace it harmlessly

    exes = {v: out_dir / f"emu_sweep_{v}" for v in variants}
    compile_all({v: [cxx, *FLAGS, *VARIANTS[v], f"-I{out_dir}", f"-I{HERE / 'shim'}", f"-I{HERE}", f"-I{CSRC}",
                     str(HERE / "emu_sweep.cpp")] for v in variants}, exes, cxx)
    return exes


# The maths harness: "device" compiles csrc/scalar_math.h as the CUDA kernels do (__CUDA_ARCH__ set, the shim's
# intrinsics) with no contraction of multiply-adds, so that Triton's interpreter reproduces it bit for bit; "host"
# with the flags of the extension's C++ sources (setup.py), as the CPU kernels use it.
MATH_SOURCES = [HERE / "emu_math.cpp", CSRC / "scalar_math.h", CSRC / "vec_math.h", HERE / "shim" / "cuda_runtime.h",
                HERE / "shim" / "emu_runtime.h"]
MATH_VARIANTS = {"device": [*FLAGS, "-D__CUDA_ARCH__=900", f"-I{HERE / 'shim'}"],
                 "host": ["-std=c++17", "-O3", "-fopenmp", "-Wall", "-Wextra"]}


def build_math(cache_root: Path | None = None, cxx: str | None = None) -> dict[str, Path]:
    """{"device": executable, "host": executable} of emu_math.cpp, compiled only when the cache lacks them."""
    cxx = cxx or find_compiler()
    if cxx is None:
        raise BuildError("no C++ compiler found")
    digest = hashlib.sha256()
    for part in (_compiler_id(cxx).encode(), repr(MATH_VARIANTS).encode(),
                 *(p.name.encode() + b"\0" + p.read_bytes() for p in MATH_SOURCES)):
        digest.update(part + b"\0\0")
    root = cache_root or Path(tempfile.gettempdir()) / f"melnet_fast_cuda_emulation-{os.getuid()}"
    out_dir = root / f"math-{digest.hexdigest()[:20]}"
    out_dir.mkdir(parents=True, exist_ok=True)
    exes = {variant: out_dir / f"emu_math_{variant}" for variant in MATH_VARIANTS}
    compile_all({variant: [cxx, *flags, f"-I{CSRC}", str(HERE / "emu_math.cpp")]
                 for variant, flags in MATH_VARIANTS.items()}, exes, cxx)
    return exes


if __name__ == "__main__":
    for variant, exe in {**build(), **build_math()}.items():
        print(variant, exe)
