"""The one source of the kernels' maths, csrc/scalar_math.h, pinned to torch and to its copies over the whole float
range, +-inf, NaN and subnormals included:

- the header as the CUDA kernels compile it (emu_math "device": __CUDA_ARCH__ set, the emulator's intrinsics, no
  multiply-add contraction) against torch, in float32 and float64, within a few ulps, special values exactly;
- the header as the C++ CPU kernels compile it (emu_math "host", the extension's flags), and the vector forms of
  csrc/vec_math.h at every vector width this machine runs (the CPU kernels' exp, log, gate sigmoid and tanh),
  against torch;
- its Triton twin (melnet_fast.kernels.scalar_math, in Triton's interpreter) bit for bit against the "device" build;
- the constants: the header's, the twin's and the Python reference's log sqrt(2 pi).

A value is judged by its distance in ulps to the result computed in a wider type (float64 for float32 inputs, 80-bit
long double for float64 ones) and rounded; NaN must meet NaN and an infinity the same infinity."""

import importlib.util
import math
import platform
import subprocess
import sys

import numpy as np
import pytest
import torch

from tests.cuda_emulation import build_emulator

pytestmark = [
    pytest.mark.skipif(build_emulator.find_compiler() is None,
                       reason="no C++ compiler ($CXX, g++, c++ or clang++) to build the maths harness"),
    pytest.mark.skipif(not sys.platform.startswith("linux") or platform.machine() != "x86_64",
                       reason="the vector forms are x86-64 code"),
]

NP = {torch.float32: np.float32, torch.float64: np.float64}
NAMES = {torch.float32: "f32", torch.float64: "f64"}
TORCH_FN = {"exp": torch.exp, "sigmoid": torch.sigmoid, "tanh": torch.tanh, "log": torch.log}
# Largest distance in ulps to the wider result: measured over these inputs, exp 1, sigmoid 2, tanh 2, log 1 in float32
# and float64, for the device and host scalar forms and the vector forms alike; the bounds leave one ulp. The CPU
# gates' tanh (vector form) is off by at most eps / 2 in absolute terms.
ULPS = {"exp": 2, "sigmoid": 3, "tanh": 3, "log": 2}


@pytest.fixture(scope="module")
def harness():
    return build_emulator.build_math()


def special_values(dtype):
    fi = torch.finfo(dtype)
    tiny_sub = fi.smallest_normal * fi.eps
    base = [0.0, 1.0, 0.5, 2.0, 1e-8, 1e-30, 0.1, 3.0, 9.0, 9.02, 10.0, 19.06, 20.0, 44.0, 80.0, 87.33, 88.72, 88.73,
            89.0, 103.97, 104.0, 110.0, 700.0, 709.78, 709.79, 710.0, 745.13, 750.0, 1e30, fi.max, fi.smallest_normal,
            tiny_sub, fi.smallest_normal / 3, math.inf]
    vals = torch.tensor(base, dtype=torch.float64)
    vals = torch.cat([vals, -vals, torch.tensor([math.nan])]).to(dtype)
    return vals


def inputs(dtype, seed=0):
    """Special values, random bit patterns (every exponent equally often) and a dense sweep of exp's range."""
    g = torch.Generator().manual_seed(seed)
    if dtype == torch.float32:
        bits = torch.randint(-(2**31), 2**31, (1 << 16,), generator=g, dtype=torch.int64).to(torch.int32)
        dense = torch.empty(1 << 15, dtype=torch.float64).uniform_(-110, 100, generator=g)
        small = torch.empty(1 << 12, dtype=torch.float64).uniform_(-1, 1, generator=g)
    else:
        bits = torch.randint(-(2**62), 2**62, (1 << 14,), generator=g, dtype=torch.int64) * 2
        dense = torch.empty(1 << 13, dtype=torch.float64).uniform_(-760, 720, generator=g)
        small = torch.empty(1 << 10, dtype=torch.float64).uniform_(-1, 1, generator=g)
    random = bits.view(dtype)
    return torch.cat([special_values(dtype), random, dense.to(dtype), small.to(dtype)])


def expected(form, x):
    """The correctly rounded result, near enough: computed in float64 (float32 inputs) or in numpy's 80-bit long
    double (float64 inputs), with the sigmoid written so that it reaches the subnormals (torch's does not)."""
    if x.dtype == torch.float32:
        v = x.double()
        if form == "sigmoid":
            return torch.where(v >= 0, 1 / (1 + torch.exp(-v)), torch.exp(v) / (1 + torch.exp(v))).float()
        return TORCH_FN[form](v).float()
    v = x.numpy().astype(np.longdouble)
    with np.errstate(all="ignore"):
        if form == "sigmoid":
            out = np.where(v >= 0, 1 / (1 + np.exp(-v)), np.exp(v) / (1 + np.exp(v)))
        else:
            out = {"exp": np.exp, "tanh": np.tanh, "log": np.log}[form](v)
    return torch.from_numpy(out.astype(np.float64))


def ordered(t):
    """The float bits as integers in the order of the values (+0 and -0 one apart)."""
    i = t.view(torch.int32 if t.dtype == torch.float32 else torch.int64).long()
    low = torch.iinfo(torch.int32 if t.dtype == torch.float32 else torch.int64).min
    return torch.where(i < 0, low - i, i)


def ulp_distance(a, b):
    """|a - b| in ulps (float and its integer order); 0 for two NaNs, huge for NaN against a number."""
    nan_a, nan_b = a.isnan(), b.isnan()
    d = (ordered(a) - ordered(b)).abs()
    d = torch.where(nan_a & nan_b, torch.zeros_like(d), d)
    return torch.where(nan_a ^ nan_b, torch.full_like(d, 1 << 40), d)


def assert_within_ulps(label, got, x, want, ulps):
    d = ulp_distance(got, want)
    worst = int(d.argmax())
    assert int(d.max()) <= ulps, (f"{label}: {int(d.max())} ulps at x={x[worst].item()!r}: got {got[worst].item()!r}, "
                                  f"want {want[worst].item()!r}")
    finite = want.isfinite()
    assert torch.equal(got[~finite].isnan(), want[~finite].isnan()), label
    inf = want.isinf()
    assert torch.equal(got[inf], want[inf]), f"{label}: infinities differ"


def run(exe, tmp_path, form, x):
    src, dst = tmp_path / "in.bin", tmp_path / "out.bin"
    x.numpy().tofile(src)
    subprocess.run([str(exe), "eval", form, NAMES[x.dtype], str(src), str(dst)], check=True, capture_output=True)
    return torch.from_numpy(np.fromfile(dst, dtype=NP[x.dtype]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("form", list(TORCH_FN))
@pytest.mark.parametrize("variant", ["device", "host"])
def test_scalar_forms_match_torch(harness, tmp_path, variant, form, dtype):
    x = inputs(dtype)
    assert_within_ulps(f"{variant} {form} {dtype}", run(harness[variant], tmp_path, form, x), x, expected(form, x),
                       ULPS[form])


def test_sigmoid_and_tanh_saturate_at_infinity(harness, tmp_path):
    """sigmoid(+inf) = 1, sigmoid(-inf) = 0, tanh(+-inf) = +-1, and 1e30 saturates too (an exp without the clamp
    gave NaN there)."""
    x = torch.tensor([math.inf, -math.inf, 1e30, -1e30, 3e38, -3e38])
    for variant in ("device", "host"):
        assert run(harness[variant], tmp_path, "sigmoid", x).tolist() == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]
        assert run(harness[variant], tmp_path, "tanh", x).tolist() == [1.0, -1.0, 1.0, -1.0, 1.0, -1.0]


def vector_forms(harness):
    out = subprocess.run([str(harness["host"]), "forms"], check=True, capture_output=True, text=True).stdout.split()
    return [f for f in out if f not in TORCH_FN]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_vector_forms_match_torch(harness, tmp_path, dtype):
    """The CPU kernels' vector forms at every width this machine runs (16-byte always; 32 and 64 with AVX2 and
    AVX-512). exp and log to a few ulps; the gates' sigmoid to a few ulps; their tanh, (1 - e) / (1 + e) with
    e = exp(-2|x|), to a few ulps of 1 in absolute terms (it loses relative accuracy near 0, where the gates need
    none)."""
    x = inputs(dtype)
    forms = vector_forms(harness)
    assert {"vexp16", "vlog16", "vsig16", "vtan16"} <= set(forms)
    eps = torch.finfo(dtype).eps
    for form in forms:
        got = run(harness["host"], tmp_path, form, x)
        name = {"vexp": "exp", "vlog": "log", "vsig": "sigmoid", "vtan": "tanh"}[form[:4]]
        want = expected(name, x)
        if name == "tanh":
            err = (got.double() - want.double()).abs()
            same_special = (got.isnan() == want.isnan()).all() and torch.equal(got[want.isinf()], want[want.isinf()])
            assert same_special, form
            assert err.nan_to_num(0).max() <= 4 * eps, f"{form} {dtype}: absolute error {err.max():.3e}"
        else:
            assert_within_ulps(f"{form} {dtype}", got, x, want, ULPS[name])


# ---- The Triton twin


def twin_apply(form, x):
    """The twin's `form` of every element of the float32 tensor x (CPU under the interpreter, or CUDA)."""
    from tests.cuda_emulation import twin_kernels  # imports triton

    return twin_kernels.apply(form, x)


def twin_log_sum_exp(rows):
    from tests.cuda_emulation import twin_kernels

    return twin_kernels.log_sum_exp(rows)


@pytest.mark.parametrize("form", list(TORCH_FN))
def test_triton_twin_is_the_header_bit_for_bit(harness, tmp_path, form):
    pytest.importorskip("triton")
    x = inputs(torch.float32, seed=1)
    got = twin_apply(form, x)
    want = run(harness["device"], tmp_path, form, x)
    same = (got.view(torch.int32) == want.view(torch.int32)) | (got.isnan() & want.isnan())
    assert same.all(), f"{form}: {int((~same).sum())} values differ, first at x={x[~same][0].item()!r}"
    assert_within_ulps(f"triton {form}", got, x, expected(form, x), ULPS[form])


def lse_rows(dtype):
    g = torch.Generator().manual_seed(2)
    rows = (torch.randn(64, 8, generator=g, dtype=torch.float64) * torch.logspace(-2, 3, 64)[:, None]).to(dtype)
    inf, nan = math.inf, math.nan
    special = torch.tensor([[-inf] * 8, [-inf] * 7 + [1.0], [inf] + [0.0] * 7, [nan] + [0.0] * 7,
                            [-inf, inf] + [0.0] * 6, [80.0] * 8, [-200.0] * 8, [1e30, -1e30] + [0.0] * 6],
                           dtype=dtype)
    return torch.cat([rows, special])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_log_sum_exp(harness, tmp_path, dtype):
    rows = lse_rows(dtype)
    src, dst = tmp_path / "rows.bin", tmp_path / "lse.bin"
    rows.numpy().tofile(src)
    subprocess.run([str(harness["device"]), "lse", NAMES[dtype], "8", str(src), str(dst)], check=True)
    got = torch.from_numpy(np.fromfile(dst, dtype=NP[dtype]))
    want = torch.logsumexp(rows.double(), dim=1).to(dtype)  # exact enough for both dtypes at these sizes
    assert_within_ulps(f"log_sum_exp {dtype}", got, rows[:, 0], want, 4)
    if dtype == torch.float32 and importlib.util.find_spec("triton") is not None:
        assert_within_ulps("triton log_sum_exp", twin_log_sum_exp(rows), rows[:, 0], want, 4)


def test_constants_are_one_source(harness):
    """The twin's constants and the reference's log sqrt(2 pi) are the header's (the header's printed to 17
    digits, compared after rounding to the dtype that uses them)."""
    pytest.importorskip("triton")
    from melnet_fast.kernels import scalar_math as sm
    from melnet_fast.ops.gmm import reference

    lines = subprocess.run([str(harness["device"]), "constants"], check=True, capture_output=True, text=True).stdout
    c = {name: float(value) for name, value in (line.split() for line in lines.splitlines())}
    assert c["log_sqrt_2pi"] == reference.LOG_SQRT_2PI == sm.LOG_SQRT_2PI.value
    assert math.isclose(c["log_sqrt_2pi"], 0.5 * math.log(2 * math.pi), rel_tol=2e-16)
    f32 = np.float32
    twin = {"lo": sm.EXP_LO, "hi": sm.EXP_HI, "log2e": sm.LOG2E, "ln2_hi": sm.LN2_HI, "ln2_lo": sm.LN2_LO,
            "round_magic": sm.ROUND_MAGIC, "bias": sm.EXP_BIAS, "mantissa_bits": sm.MANTISSA_BITS,
            "tanh_one": sm.TANH_ONE, "lg1": sm.LG1, "lg2": sm.LG2, "lg3": sm.LG3, "lg4": sm.LG4,
            "log_ln2_hi": sm.LOG_LN2_HI, "log_ln2_lo": sm.LOG_LN2_LO, "sqrt_half_bits": sm.SQRT_HALF_BITS,
            "min_normal": sm.MIN_NORMAL, "subnormal_scale": sm.SUBNORMAL_SCALE,
            "subnormal_scale_log2": sm.SUBNORMAL_SCALE_LOG2}
    for name, value in twin.items():
        assert f32(value.value) == f32(c[f"f32.{name}"]), name
    assert sm.EXP_DEGREE == c["f32.degree"]
    assert np.float32(sm.ROUND_MAGIC.value).view(np.int32) == sm.ROUND_MAGIC_BITS.value
    # The reductions' identities: ln2_hi + ln2_lo = ln 2 to the type's precision.
    assert f32(c["f32.ln2_hi"]) + f32(c["f32.ln2_lo"]) == f32(math.log(2))
    assert c["f64.ln2_hi"] + c["f64.ln2_lo"] == math.log(2)
