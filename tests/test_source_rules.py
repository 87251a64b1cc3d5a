"""Rules the compilers do not check (scripts/check_source_rules.py, also a pre-commit hook): no libm function or
fast-math intrinsic in device code built with --use_fast_math outside csrc/scalar_math.h, and no approximate
Triton maths outside its twin, melnet_fast/kernels/scalar_math.py."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("check_source_rules", ROOT / "scripts" / "check_source_rules.py")
rules = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rules)


def test_device_code_calls_its_maths_from_the_one_header():
    assert rules.check() == []


def test_the_device_sources_are_every_cuda_file_and_what_it_includes():
    names = {p.relative_to(ROOT).as_posix() for p in rules.device_sources()}
    cu = {p.relative_to(ROOT).as_posix() for p in (ROOT / "csrc" / "cuda").glob("*.cu")}
    assert cu <= names
    assert {"csrc/cuda/lstm_step.cuh", "csrc/cuda/gmm_nll_kernel.cuh", "csrc/cuda/sample_tier_kernel.cuh",
            "csrc/cuda/sample_tier_device.cuh", "csrc/scalar_math.h", "csrc/mixture_draw.h"} <= names


def test_the_triton_sources_are_the_kernels_but_the_twin():
    names = {p.name for p in rules.triton_sources()}
    assert {"gmm_nll.py", "lstm_sweep_2d.py"} <= names and "scalar_math.py" not in names


def test_the_check_finds_the_calls_it_forbids(tmp_path):
    src = tmp_path / "k.cuh"
    text = ("// expf(x) in a comment is fine\n"
            "__device__ float f(float x) {\n"
            "  const char* s = \"logf(\";\n"
            "  return __expf(x) + std::tanh(x) + math::exp(x) + log_density(x)\n"
            "       + logf(x) + ::exp(x) + a.log(x) + powf(x, 2.f) + __fdividef(x, 3.f);\n"
            "}\n")
    found = rules.fast_math_violations(src, text)
    assert [f.split(": ")[1] for f in found] == ["__expf(", "std::tanh(", "logf(", "::exp(", "powf(", "__fdividef("]
    assert all(f.split(":")[1] in ("4", "5") for f in found)


def test_the_check_finds_approximate_triton_maths(tmp_path):
    text = ("import triton.language as tl\n"
            "# tl.exp(x) in a comment is fine\n"
            "y = tl.exp(x) + sm.exp(x) + tl.math.log(x) + tl.sigmoid(x) + tl.math.div_rn(a, b) + tl.sum(x, 0)\n"
            "z = tl.extra.cuda.libdevice.tanh(x)\n")
    found = rules.triton_violations(tmp_path / "k.py", text)
    assert [f.split(": ")[1] for f in found] == ["tl.exp(", "tl.math.log(", "tl.sigmoid(",
                                                 "tl.extra.cuda.libdevice.tanh("]
