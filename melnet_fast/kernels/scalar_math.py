"""The Triton twin of csrc/scalar_math.h: exp, sigmoid, tanh, log, log-sum-exp and log sqrt(2 pi) in float32, the
same algorithms, constants and operation order as the C++ header, which every CUDA and CPU kernel uses; the Triton
kernels of this package import them from here. tests/cuda_emulation/test_scalar_math.py pins the two to each other
(bit for bit in Triton's interpreter against the header compiled without contraction) and to torch over the whole
float32 range.

Why not tl.exp / tl.sigmoid / '/': on NVIDIA GPUs they are approximations (ex2.approx of a rounded product,
div.full) with errors far outside the float32 tests' tolerance. Here: adds, multiplies, comparisons, bit
manipulation and tl.math.div_rn (IEEE division). Range as the header's: exp(x) is 0 below the clamp, inf above it,
NaN for NaN; sigmoid(+-inf) = 1 / 0; tanh(+-inf) = +-1; log(0) = -inf, log(x < 0) = NaN.
"""

from __future__ import annotations

import math

import triton
import triton.language as tl

LOG_SQRT_2PI = tl.constexpr(0.91893853320467274178)  # log sqrt(2 pi), math::kLogSqrt2Pi

# math::ExpConstants<float>
EXP_LO = tl.constexpr(-104.0)
EXP_HI = tl.constexpr(89.0)
LOG2E = tl.constexpr(1.44269504088896341)
LN2_HI = tl.constexpr(0.693145751953125)
LN2_LO = tl.constexpr(1.42860682030941723212e-6)
ROUND_MAGIC = tl.constexpr(12582912.0)  # 1.5 * 2^23
ROUND_MAGIC_BITS = tl.constexpr(0x4B400000)
EXP_BIAS = tl.constexpr(127)
MANTISSA_BITS = tl.constexpr(23)
EXP_DEGREE = 7
TANH_ONE = tl.constexpr(10.0)

# math::LogConstants<float>
LG1 = tl.constexpr(0.66666662693)
LG2 = tl.constexpr(0.40000972152)
LG3 = tl.constexpr(0.28498786688)
LG4 = tl.constexpr(0.24279078841)
LOG_LN2_HI = tl.constexpr(6.9313812256e-01)
LOG_LN2_LO = tl.constexpr(9.0580006145e-06)
SQRT_HALF_BITS = tl.constexpr(0x3F3504F3)
MIN_NORMAL = tl.constexpr(1.17549435e-38)
SUBNORMAL_SCALE = tl.constexpr(33554432.0)  # 2^25
SUBNORMAL_SCALE_LOG2 = tl.constexpr(25)
_MANTISSA_MASK = tl.constexpr((1 << 23) - 1)
_ONE_MINUS_SQRT_HALF = tl.constexpr((127 << 23) - 0x3F3504F3)  # the bits of 1.0 minus those of sqrt(1/2)

# 1 / d! for d = 1 .. EXP_DEGREE (rounded to float32 where the kernels use them, as the header's are)
_C1, _C2, _C3, _C4, _C5, _C6, _C7 = (tl.constexpr(1.0 / math.factorial(d)) for d in range(1, EXP_DEGREE + 1))


@triton.jit
def _bits(x):
    return x.to(tl.int32, bitcast=True)


@triton.jit
def _float(b):
    return b.to(tl.float32, bitcast=True)


@triton.jit
def _pow2(n):
    """2^n for n in the normal exponent range (int32 n)."""
    return _float((n + EXP_BIAS) << MANTISSA_BITS)


@triton.jit
def _reduce(x):
    """math::exp_reduce: (k as int32, r) with x clamped, x = k ln 2 + r."""
    t = tl.where(x < EXP_LO, EXP_LO, tl.where(x > EXP_HI, EXP_HI, x))  # NaN fails both and passes
    kr = t * LOG2E + ROUND_MAGIC
    k = kr - ROUND_MAGIC
    r = (t - k * LN2_HI) - k * LN2_LO
    return _bits(kr) - ROUND_MAGIC_BITS, r


@triton.jit
def _expm1_poly(r):
    q = _C7 + r * 0.0
    q = q * r + _C6
    q = q * r + _C5
    q = q * r + _C4
    q = q * r + _C3
    q = q * r + _C2
    q = q * r + _C1
    return q * r


@triton.jit
def exp(x):
    """math::exp: exp(x) in float32 to about 1 ulp over the whole range."""
    k, r = _reduce(x.to(tl.float32))
    h = k >> 1
    return ((1.0 + _expm1_poly(r)) * _pow2(h)) * _pow2(k - h)


@triton.jit
def _expm1_moderate(x):
    k, r = _reduce(x)
    s = _pow2(k)
    return s * _expm1_poly(r) + (s - 1.0)


@triton.jit
def sigmoid(x):
    """math::sigmoid: 1 / (1 + exp(-x)) for x >= 0, exp(x) / (1 + exp(x)) below."""
    x = x.to(tl.float32)
    e = exp(tl.where(x < 0.0, x, -x))
    d = 1.0 + e
    return tl.where(x >= 0.0, tl.math.div_rn(1.0, d), tl.math.div_rn(e, d))


@triton.jit
def tanh(x):
    """math::tanh: expm1(2|x|) / (expm1(2|x|) + 2) with the sign of x, 1 from |x| >= TANH_ONE on."""
    x = x.to(tl.float32)
    a = tl.where(x < 0.0, -x, x)
    em = _expm1_moderate(a + a)
    t = tl.where(a >= TANH_ONE, 1.0, tl.math.div_rn(em, em + 2.0))
    sign = _bits(x) & -2147483648
    return _float((_bits(t) & 2147483647) | sign)


@triton.jit
def _log1p_reduced(f, s, dk):
    z = s * s
    w = z * z
    hfsq = 0.5 * f * f
    t1 = w * (LG2 + w * LG4)
    t2 = z * (LG1 + w * LG3)
    return s * (hfsq + (t2 + t1)) + dk * LOG_LN2_LO - hfsq + f + dk * LOG_LN2_HI


@triton.jit
def log(x):
    """math::log: the natural logarithm in float32 to about 1 ulp over the whole range."""
    x = x.to(tl.float32)
    sub = x < MIN_NORMAL
    y = tl.where(sub, x * SUBNORMAL_SCALE, x)
    ix = _bits(y) + _ONE_MINUS_SQRT_HALF
    k = (ix >> MANTISSA_BITS) - EXP_BIAS - tl.where(sub, SUBNORMAL_SCALE_LOG2, 0)
    ix = (ix & _MANTISSA_MASK) + SQRT_HALF_BITS
    f = _float(ix) - 1.0
    r = _log1p_reduced(f, tl.math.div_rn(f, f + 2.0), k.to(tl.float32))
    r = tl.where(x == float("inf"), x, r)
    nan_or_x = tl.where(x != x, x, float("nan"))
    return tl.where(x > 0.0, r, tl.where(x == 0.0, -float("inf"), nan_or_x))


@triton.jit
def log_sum_exp(v, axis: tl.constexpr):
    """math::log_sum_exp along `axis` of a block: m + log(sum exp(v - m)), m the maximum; -inf when every value is
    -inf, +inf when one is +inf, NaN when one is NaN."""
    v = v.to(tl.float32)
    nan = v != v
    m = tl.max(tl.where(nan, -float("inf"), v), axis=axis)
    m = tl.where(tl.max(nan.to(tl.int32), axis=axis) > 0, float("nan"), m)  # a NaN sticks
    finite = (m > -float("inf")) & (m < float("inf"))
    m_safe = tl.where(finite, m, 0.0)
    s = tl.sum(exp(v - tl.expand_dims(m_safe, axis)), axis=axis)
    return tl.where(finite, m + log(s), m)
