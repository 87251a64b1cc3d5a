"""Build of melnet_fast and its extension melnet_fast._C.

Flags (environment variables, one prefix):
  MELNET_FAST_CUDA        auto (default) | 0 | 1   build the CUDA kernels: auto = when nvcc and a CUDA torch exist
  MELNET_FAST_CUDA_ARCHS  compute capabilities, ";"-separated, default "9.0" (H100 / H200)
  MELNET_FAST_NVCC_THREADS  nvcc --threads, default 2
  MAX_JOBS                parallel compile jobs (read by torch's ninja build)
The C++ CPU kernels are always built. Without nvcc the build warns and builds the rest.
"""

import glob
import os
import re
import shutil
import subprocess
import sys
import warnings

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def _find_cuda_home():
    for var in ("CUDA_HOME", "CUDA_PATH"):
        path = os.environ.get(var)
        if path and os.path.exists(os.path.join(path, "bin", "nvcc")):
            return path
    candidates = []
    nvcc = shutil.which("nvcc")
    if nvcc:  # may be a wrapper script: accept its home only if it holds the toolkit's headers
        candidates.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
    candidates += ["/usr/local/cuda"] + sorted(glob.glob("/usr/local/cuda-*"), reverse=True)
    for path in candidates:
        if os.path.exists(os.path.join(path, "bin", "nvcc")) and os.path.exists(
                os.path.join(path, "include", "cuda_runtime.h")):
            return path
    return None


def _nvcc_version(cuda_home):
    out = subprocess.run([os.path.join(cuda_home, "bin", "nvcc"), "--version"], capture_output=True, text=True)
    m = re.search(r"release (\d+)\.(\d+)", out.stdout)
    return (int(m.group(1)), int(m.group(2))) if m else None


def _want_cuda():
    """Decide whether to build the CUDA kernels; returns (build, cuda_home)."""
    mode = os.environ.get("MELNET_FAST_CUDA", "auto").lower()
    if mode not in ("auto", "0", "1"):
        sys.exit(f"MELNET_FAST_CUDA must be auto, 0 or 1, got {mode!r}")
    if mode == "0":
        return False, None
    cuda_home = _find_cuda_home()
    # torch.utils.cpp_extension reads CUDA_HOME at import: set it before importing.
    if cuda_home:
        os.environ["CUDA_HOME"] = cuda_home
    import torch

    problem = None
    if cuda_home is None:
        problem = "nvcc was not found (set CUDA_HOME or put nvcc on PATH)"
    elif torch.version.cuda is None:
        problem = f"the installed torch {torch.__version__} is a CPU-only build"
    else:
        nvcc = _nvcc_version(cuda_home)
        torch_major = int(torch.version.cuda.split(".")[0])
        if nvcc is None:
            problem = f"could not read the version of {cuda_home}/bin/nvcc"
        elif nvcc[0] != torch_major:
            problem = (
                f"nvcc at {cuda_home} is CUDA {nvcc[0]}.{nvcc[1]} but torch {torch.__version__} was built with "
                f"CUDA {torch.version.cuda}; the major versions must match (install the matching toolkit "
                f"or set CUDA_HOME)"
            )
    if problem:
        if mode == "1":
            sys.exit(f"MELNET_FAST_CUDA=1 but {problem}")
        warnings.warn(f"melnet_fast: building without CUDA kernels: {problem}", stacklevel=1)
        return False, None
    return True, cuda_home


def _extensions():
    build_cuda, _ = _want_cuda()
    from torch.utils.cpp_extension import CppExtension, CUDAExtension

    sources = sorted(glob.glob("csrc/*.cpp"))
    cxx = ["-O3", "-std=c++17", "-fopenmp"]
    define_macros = []
    if build_cuda:
        sources += sorted(glob.glob("csrc/cuda/*.cu"))
        archs = os.environ.get("MELNET_FAST_CUDA_ARCHS", "9.0")
        gencode = []
        for arch in archs.replace(",", ";").split(";"):
            arch = arch.strip()
            if not arch:
                continue
            num = arch.replace(".", "")
            gencode += [f"-gencode=arch=compute_{num},code=sm_{num}"]
        nvcc = ["-O3", "-std=c++17", "--use_fast_math", "-lineinfo",
                f"--threads={os.environ.get('MELNET_FAST_NVCC_THREADS', '2')}"] + gencode
        define_macros.append(("MELNET_FAST_WITH_CUDA", "1"))
        ext = CUDAExtension(
            "melnet_fast._C", sources, define_macros=define_macros, include_dirs=[os.path.join(ROOT, "csrc")],
            extra_compile_args={"cxx": cxx, "nvcc": nvcc}, extra_link_args=["-fopenmp"],
        )
    else:
        ext = CppExtension(
            "melnet_fast._C", sources, define_macros=define_macros, include_dirs=[os.path.join(ROOT, "csrc")],
            extra_compile_args={"cxx": cxx}, extra_link_args=["-fopenmp"],
        )
    return [ext]


def _cmdclass():
    from torch.utils.cpp_extension import BuildExtension

    return {"build_ext": BuildExtension.with_options(use_ninja=True)}


setup(
    packages=find_packages(include=["melnet_fast", "melnet_fast.*"]),
    ext_modules=_extensions(),
    cmdclass=_cmdclass(),
)
