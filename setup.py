"""Build of melnet_fast and its extension melnet_fast._C (flags: build_tools/build_flags.py).

The C++ CPU kernels are always built; the CUDA kernels when nvcc and a CUDA build of torch are there (without
nvcc the build warns and builds the rest). The C++ standard is the one the torch headers require. The build
stops when the torch it compiles against is not the torch of the environment it installs into, and it writes
what it was built against beside the extension (melnet_fast/_build_record.py), checked at import.
An sdist needs no torch.
"""

import glob
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import warnings

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(ROOT, "build_tools"))
import build_flags  # noqa: E402  (beside setup.py, not an installed package)

# Commands that compile the extension; the others (sdist, egg_info, dist_info) never import torch.
_BUILD_COMMANDS = {"build", "build_ext", "bdist_wheel", "editable_wheel", "install", "develop", "bdist_egg"}


def _load_build_record_module():
    spec = importlib.util.spec_from_file_location(
        "_melnet_fast_build_record", os.path.join(ROOT, "melnet_fast", "_build_record.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fail(message: str):
    sys.exit(f"melnet_fast build: {message}")


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


def _nvcc(cuda_home, *args):
    return subprocess.run([os.path.join(cuda_home, "bin", "nvcc"), *args], capture_output=True, text=True).stdout


def _nvcc_version(cuda_home):
    m = re.search(r"release (\d+)\.(\d+)", _nvcc(cuda_home, "--version"))
    return (int(m.group(1)), int(m.group(2))) if m else None


def _want_cuda(mode, cuda_home):
    """Decide whether to build the CUDA kernels; returns cuda_home or None."""
    if mode == "0":
        return None
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
            _fail(f"MELNET_FAST_CUDA=1 but {problem}")
        warnings.warn(f"melnet_fast: building without CUDA kernels: {problem}", stacklevel=1)
        return None
    return cuda_home


def _check_target_torch(torch):
    """Stop when this build's torch is not the one the package will run with (e.g. an isolated build that
    could not get the user's torch release), instead of writing an extension that will not load."""
    target = build_flags.target_torch()
    if target is not None and target["version"] != str(torch.__version__):
        _fail(f"building against torch {torch.__version__} but the environment it installs into runs torch "
              f"{target['version']}; build against that torch with `pip install --no-build-isolation .`")


def _extension():
    try:
        mode, debug, threads = build_flags.cuda_mode(), build_flags.debug_build(), build_flags.nvcc_threads()
    except build_flags.BuildFlagError as e:
        _fail(str(e))
    cuda_home = _find_cuda_home() if mode != "0" else None
    if cuda_home:  # torch.utils.cpp_extension reads CUDA_HOME at import: set it before importing torch
        os.environ["CUDA_HOME"] = cuda_home
    try:
        import torch
    except ImportError:
        _fail("the extension builds against torch, which is not installed: install torch first, then "
              "`pip install --no-build-isolation .`")
    _check_target_torch(torch)
    from torch.utils.cpp_extension import CppExtension, CUDAExtension, include_paths

    try:
        cuda_home = _want_cuda(mode, cuda_home)
        archs = None
        if cuda_home:
            codes = set(_nvcc(cuda_home, "--list-gpu-code").split())
            archs = build_flags.cuda_archs(nvcc_codes=codes or None)
    except build_flags.BuildFlagError as e:
        _fail(str(e))
    std = build_flags.cxx_standard(include_paths()[0])
    args = build_flags.compile_args(std, debug, archs, threads)
    sources = sorted(glob.glob("csrc/*.cpp"))
    kwargs = dict(include_dirs=[os.path.join(ROOT, "csrc")], extra_compile_args=args,
                  extra_link_args=["-fopenmp"] + (["-g"] if debug else []))
    if archs is not None:
        ext = CUDAExtension("melnet_fast._C", sources + sorted(glob.glob("csrc/cuda/*.cu")),
                            define_macros=[("MELNET_FAST_WITH_CUDA", "1")], **kwargs)
    else:
        ext = CppExtension("melnet_fast._C", sources, **kwargs)
    record = {
        "torch": str(torch.__version__), "torch_cuda": torch.version.cuda, "with_cuda": archs is not None,
        "cxx_standard": std, "debug": debug,
        "cuda_archs": build_flags.arch_names(archs) if archs is not None else [],
        "nvcc": ".".join(map(str, _nvcc_version(cuda_home))) if cuda_home else None,
    }
    return ext, record


def _cmdclass(record):
    from torch.utils.cpp_extension import BuildExtension

    build_record = _load_build_record_module()
    base = BuildExtension.with_options(use_ninja=True)

    class BuildExtensionWithRecord(base):
        """Writes the build record beside the extension: in the build folder (wheels) and, for in-place and
        editable builds, beside the copy in the source tree."""

        def run(self):
            super().run()
            build_record.write(os.path.join(self.build_lib, "melnet_fast"), record)
            if self.inplace:
                package_dir = self.get_finalized_command("build_py").get_package_dir("melnet_fast")
                build_record.write(os.path.join(ROOT, package_dir), record)

    return {"build_ext": BuildExtensionWithRecord}


if _BUILD_COMMANDS & set(sys.argv[1:]):
    _ext, _record = _extension()
    _setup_ext = {"ext_modules": [_ext], "cmdclass": _cmdclass(_record)}
else:
    _setup_ext = {}

setup(
    packages=find_packages(include=["melnet_fast", "melnet_fast.*"]),
    **_setup_ext,
)
