"""The build flags (build_tools/build_flags.py): architecture lists and their errors, the debug build, the C++
standard read from torch's headers, the torch an isolated build installs; and the facts that pyproject.toml
repeats (oldest torch, extras, version), pinned to their sources."""

import inspect
import os
import re
import sys

import pytest
import tomllib
import torch
from torch.utils import cpp_extension
from torch.utils.cpp_extension import include_paths

import melnet_fast
from melnet_fast import _optional

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "build_tools"))
import build_flags  # noqa: E402

NVCC_CODES = {"sm_75", "sm_80", "sm_86", "sm_89", "sm_90", "sm_90a", "sm_100", "sm_120"}


def pyproject():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def test_default_architectures_cover_ampere_ada_hopper_with_ptx():
    archs = build_flags.cuda_archs(env={}, nvcc_codes=NVCC_CODES)
    assert build_flags.arch_names(archs) == ["8.0", "8.6", "8.9", "9.0+PTX"]
    flags = build_flags.gencode_flags(archs)
    assert "-gencode=arch=compute_80,code=sm_80" in flags
    assert "-gencode=arch=compute_90,code=sm_90" in flags
    assert "-gencode=arch=compute_90,code=compute_90" in flags  # PTX for later GPUs
    assert sum("code=compute_" in f for f in flags) == 1


@pytest.mark.parametrize("value, names", [
    pytest.param("9.0", ["9.0"], id="one"),
    pytest.param("8.0, 8.6;9.0a", ["8.0", "8.6", "9.0a"], id="mixed-separators-and-arch-specific"),
    pytest.param(" 8.9 9.0+PTX ", ["8.9", "9.0+PTX"], id="spaces"),
])
def test_architecture_lists_parse(value, names):
    archs = build_flags.cuda_archs(env={"MELNET_FAST_CUDA_ARCHS": value}, nvcc_codes=NVCC_CODES)
    assert build_flags.arch_names(archs) == names


def test_torch_cuda_arch_list_is_read_when_ours_is_unset():
    archs = build_flags.cuda_archs(env={"TORCH_CUDA_ARCH_LIST": "8.6"}, nvcc_codes=NVCC_CODES)
    assert build_flags.arch_names(archs) == ["8.6"]
    archs = build_flags.cuda_archs(env={"TORCH_CUDA_ARCH_LIST": "8.6", "MELNET_FAST_CUDA_ARCHS": "9.0"})
    assert build_flags.arch_names(archs) == ["9.0"]


@pytest.mark.parametrize("env, match", [
    pytest.param({"MELNET_FAST_CUDA_ARCHS": "sm_90"}, r"MELNET_FAST_CUDA_ARCHS: 'sm_90' is not a compute capab",
                 id="not-a-capability"),
    pytest.param({"MELNET_FAST_CUDA_ARCHS": "7.5"}, r"MELNET_FAST_CUDA_ARCHS: 7.5 is below 8.0", id="too-old"),
    pytest.param({"TORCH_CUDA_ARCH_LIST": "8.0;7.0"}, r"TORCH_CUDA_ARCH_LIST: 7.0 is below 8.0",
                 id="too-old-torch-list"),
    pytest.param({"MELNET_FAST_CUDA_ARCHS": "9.9"}, r"MELNET_FAST_CUDA_ARCHS: nvcc cannot compile for 9.9 \(it "
                 r"knows .*90a", id="unknown-to-nvcc"),
    pytest.param({"MELNET_FAST_CUDA_ARCHS": " ; ,"}, r"MELNET_FAST_CUDA_ARCHS names no architecture", id="empty"),
])
def test_bad_architecture_lists_name_the_variable_and_entry(env, match):
    with pytest.raises(build_flags.BuildFlagError, match=match):
        build_flags.cuda_archs(env=env, nvcc_codes=NVCC_CODES)


@pytest.mark.parametrize("name, value", [("MELNET_FAST_DEBUG_BUILD", "yes"), ("MELNET_FAST_CUDA", "on"),
                                         ("MELNET_FAST_NVCC_THREADS", "0")])
def test_bad_flag_values_name_the_variable(name, value):
    read = {"MELNET_FAST_DEBUG_BUILD": build_flags.debug_build, "MELNET_FAST_CUDA": build_flags.cuda_mode,
            "MELNET_FAST_NVCC_THREADS": build_flags.nvcc_threads}[name]
    with pytest.raises(build_flags.BuildFlagError, match=f"^{name} must be"):
        read(env={name: value})


def test_debug_build_compiles_without_optimisation_with_asserts_and_device_debug_info():
    archs = [("90", False)]
    debug = build_flags.compile_args("c++20", True, archs, 2)
    release = build_flags.compile_args("c++20", False, archs, 2)
    assert build_flags.debug_build(env={"MELNET_FAST_DEBUG_BUILD": "1"}) is True
    assert build_flags.debug_build(env={}) is False
    for tool in ("cxx", "nvcc"):
        assert {"-O0", "-g", "-UNDEBUG"} <= set(debug[tool]) and "-O3" not in debug[tool]
        assert "-O3" in release[tool] and "-O0" not in release[tool] and "-UNDEBUG" not in release[tool]
        assert "-std=c++20" in debug[tool] and "-std=c++20" in release[tool]
    assert "-G" in debug["nvcc"] and "-lineinfo" in release["nvcc"]
    assert "nvcc" not in build_flags.compile_args("c++17", False, None, 2)  # a CPU-only build


@pytest.mark.parametrize("check, std", [("__cplusplus < 201703L", "c++17"), ("__cplusplus < 202002L", "c++20"),
                                        ("__cplusplus < 202302L", "c++20")])
def test_cxx_standard_follows_the_torch_headers(tmp_path, check, std):
    (tmp_path / "ATen").mkdir()
    (tmp_path / "ATen" / "ATen.h").write_text(f"#pragma once\n#if !defined(_MSC_VER) && {check}\n#error C++\n#endif\n")
    assert build_flags.cxx_standard(str(tmp_path)) == std


def test_cxx_standard_of_the_installed_torch_is_the_one_its_own_extension_builder_uses():
    source = inspect.getsource(cpp_extension)
    torch_default = re.search(r"common_cflags \+= \['-std=(c\+\+\d+)'", source).group(1)
    assert build_flags.cxx_standard(include_paths()[0]) == torch_default


@pytest.mark.parametrize("target, requirement", [
    pytest.param({"version": "2.11.0+cu130", "dist_version": "2.11.0", "cuda": "13.0"}, "torch==2.11.0", id="pypi"),
    pytest.param({"version": "2.13.0+cpu", "dist_version": "2.13.0+cpu", "cuda": None}, "torch==2.13.0",
                 id="local-label"),
    pytest.param(None, "torch>=2.4", id="no-torch"),
    pytest.param({"version": "2.3.1", "dist_version": "2.3.1", "cuda": None}, "torch>=2.4", id="too-old"),
])
def test_isolated_build_installs_the_torch_release_of_the_target_environment(target, requirement):
    assert build_flags.torch_build_requirement(target) == requirement


def test_target_torch_is_this_environments_torch():
    target = build_flags.target_torch()
    assert target is not None and target["version"] == str(torch.__version__)
    assert target["cuda"] == torch.version.cuda


def test_pyproject_repeats_the_oldest_torch_the_extras_and_the_version_from_their_sources():
    project = pyproject()
    assert f"torch>={build_flags.MIN_TORCH}" in project["project"]["dependencies"]
    assert project["project"]["dynamic"] == ["version"]
    assert pyproject()["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "melnet_fast.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", melnet_fast.__version__)
    extras = project["project"]["optional-dependencies"]
    for module, (dist, extra) in _optional.OPTIONAL.items():
        names = [re.split(r"[<>=\[ ]", r)[0].lower() for r in extras[extra]]
        assert dist in names, f"{module}: extra {extra!r} of pyproject.toml does not install {dist}"
    assert {"audio", "plots", "train", "triton"} <= set(extras)
