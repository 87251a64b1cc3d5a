"""Builds the grid harnesses of the CUDA emulation tests (emu_sample_tier.cpp, emu_gmm.cpp) with the host C++
compiler, on the repository's device headers (csrc/cuda/sample_tier_kernel.cuh with sample_tier_device.cuh,
csrc/cuda/gmm_nll_kernel.cuh), read at build time and rewritten only to give every block its own shared memory:
these harnesses run all blocks of a grid at once (shim/emu_grid.h), so __shared__ variables cannot be function
statics as in build_emulator.py. Executables are cached like build_emulator.py's, keyed by a hash of every input.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

from tests.cuda_emulation.build_emulator import (
    CSRC,
    FLAGS,
    SHARED_HEADERS,
    BuildError,
    _compiler_id,
    compile_all,
    find_compiler,
)

HERE = Path(__file__).resolve().parent
CUDA_DIR = HERE.parents[1] / "csrc" / "cuda"
# -fno-strict-aliasing: the kernels read float / uint4 through reinterpret_cast as CUDA code does; the alignment
# sanitizer turns a misaligned vector load (a fault on the GPU) into an error.
GRID_FLAGS = [*FLAGS, "-fno-strict-aliasing", "-fsanitize=alignment", "-fno-sanitize-recover=alignment"]
# harness -> (its source, the device headers it includes, rewritten into the build folder, and whether they are in
# csrc/cuda or in this folder)
HARNESSES = {
    "sample_tier": ("emu_sample_tier.cpp", ["sample_tier_kernel.cuh", "sample_tier_device.cuh",
                                            "sample_tier_flags_kernel.cuh"], "csrc"),
    "gmm_nll": ("emu_gmm.cpp", ["gmm_nll_kernel.cuh"], "csrc"),
    "grid_selftest": ("emu_grid_selftest.cpp", ["emu_grid_selftest.cuh"], "here"),
    "sweep_narrow": ("emu_sweep_narrow.cpp", ["lstm_narrow.cuh"], "csrc"),
}
COMMON = [HERE / "emu_buffer.h", *sorted((HERE / "shim").glob("*.h")), *SHARED_HEADERS, CUDA_DIR / "flags.cuh",
          CUDA_DIR / "lstm_cell.cuh"]

# "extern __shared__ [__align__(n)] TYPE NAME[];"
_ALIGN = r"(?:__align__\((?:[^()]|\([^()]*\))*\)\s+)?"
_TYPE = r"((?:unsigned\s+|signed\s+)?[\w:]+(?:<[\w:, ]*>)?)"
_DYNAMIC = re.compile(r"extern\s+__shared__\s+" + _ALIGN + _TYPE + r"\s+(\w+)\[\]\s*;")
# "__shared__ [__align__(n)] TYPE NAME[dims]...;"
_STATIC = re.compile(r"__shared__\s+" + _ALIGN + _TYPE + r"\s+(\w+)((?:\[[^\]]+\])*)\s*;")


def rewrite_for_grid(text: str, path: Path) -> str:
    """The device source with each __shared__ declaration turned into a reference to the current block's copy, and
    each extern __shared__ array into a pointer to the block's dynamic shared memory (same line, under a #line
    directive naming the original, so messages and barrier call sites keep its file and line numbers)."""
    found = len(re.findall(r"\b__shared__\b", text))
    text, n_dyn = _DYNAMIC.subn(lambda m: f"{m.group(1)}* {m.group(2)} = emu::grid::dynamic_shared<{m.group(1)}>();",
                                text)
    text, n_static = _STATIC.subn(
        lambda m: (f"static char emu_key_{m.group(2)}; auto& {m.group(2)} = "
                   f"*emu::grid::block_shared<{m.group(1)}{m.group(3)}>(&emu_key_{m.group(2)});"), text)
    if n_dyn + n_static != found:
        raise BuildError(f"{path}: {found} __shared__ declarations but only {n_dyn + n_static} of the emulated forms "
                         f"(extend the patterns in {Path(__file__).name})")
    return f'#line 1 "{path}"\n{text}'


def build(name: str, cache_root: Path | None = None, cxx: str | None = None) -> Path:
    """The executable of harness `name` (a key of HARNESSES), compiled only when the cache lacks it. Raises
    BuildError with the compiler's messages when compilation fails."""
    source, headers, where = HARNESSES[name]
    cxx = cxx or find_compiler()
    if cxx is None:
        raise BuildError("no C++ compiler found")
    folder = CUDA_DIR if where == "csrc" else HERE
    rewritten = {h: rewrite_for_grid((folder / h).read_text(), folder / h) for h in headers}
    digest = hashlib.sha256()
    for part in (*(h.encode() + b"\0" + t.encode() for h, t in rewritten.items()), _compiler_id(cxx).encode(),
                 " ".join(GRID_FLAGS).encode(),
                 *(p.name.encode() + b"\0" + p.read_bytes() for p in (HERE / source, *COMMON))):
        digest.update(part + b"\0\0")
    root = cache_root or Path(tempfile.gettempdir()) / f"melnet_fast_cuda_emulation-{os.getuid()}"
    out_dir = root / f"{name}-{digest.hexdigest()[:20]}"
    exe = out_dir / f"emu_{name}"
    if exe.exists():
        return exe
    out_dir.mkdir(parents=True, exist_ok=True)
    for h, text in rewritten.items():
        tmp = out_dir / f".{h}.{os.getpid()}"
        tmp.write_text(text)
        os.replace(tmp, out_dir / h)  # same content for the same key: a concurrent build may replace it harmlessly
    compile_all({name: [cxx, *GRID_FLAGS, f"-I{out_dir}", f"-I{HERE / 'shim'}", f"-I{HERE}", f"-I{CSRC}",
                        str(HERE / source)]}, {name: exe}, cxx)
    return exe


if __name__ == "__main__":
    for harness in HARNESSES:
        print(harness, build(harness))
