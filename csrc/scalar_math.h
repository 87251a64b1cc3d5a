// The maths every kernel shares, written once: exp, sigmoid, tanh, log, log-sum-exp and log sqrt(2 pi), for
// float and double, on the host (the C++ CPU kernels) and on the device (the CUDA kernels). Torch-free, so the
// CUDA emulator of tests/cuda_emulation compiles it too; melnet_fast/kernels/scalar_math.py is its Triton twin,
// and tests/cuda_emulation/test_scalar_math.py pins the two to each other and to torch over the whole float range.
//
// Why not expf / tanhf / logf: the CUDA sources build with --use_fast_math, which turns them (and '/') into
// approximations with relative errors up to ~2^-11 (tanh) or |x| 2^-23 (exp), far outside the float32 tests'
// tolerance. Everything here is adds, multiplies, comparisons and bit manipulation, which the flag leaves exact,
// plus the IEEE-rounded __fdiv_rn / __frcp_rn on the device; no other device source may call a libm or fast-math
// intrinsic (tests/test_source_rules.py checks it).
//
// Range: exp(x) is 0 below the clamp, inf above it, and a subnormal where the true value is one; every function
// returns NaN for NaN; sigmoid(+-inf) = 1 / 0, tanh(+-inf) = +-1, log(0) = -inf, log(x < 0) = NaN. (On the GPU the
// fast-math flag still flushes float32 subnormal inputs and results to zero.)
#pragma once

#include <cstdint>
#include <cstring>
#include <limits>

#ifdef __CUDA_ARCH__
#include <cuda_runtime.h>  // the device intrinsics below (implicit under nvcc; the emulator's shim provides them)
#endif

#ifdef __CUDACC__
#define MF_MATH __host__ __device__ __forceinline__
#else
#define MF_MATH inline __attribute__((always_inline))
#endif

namespace melnet_fast {
namespace math {

// log sqrt(2 pi) = 0.5 log(2 pi), the normalising constant of the Gaussian log density.
constexpr double kLogSqrt2Pi = 0.91893853320467274178;

// exp(x) = 2^k e^r with k = round(x log2 e) and r = x - k ln 2 (Cody-Waite: ln 2 = ln2_hi + ln2_lo, where k ln2_hi
// is exact for every k the clamp allows), e^r = 1 + expm1_poly(r), the Taylor polynomial of degree `degree` (below
// 0.15 ulp of truncation for |r| <= ln(2) / 2), and 2^k applied as two normal factors 2^h 2^(k - h), so that
// results below the normal range round once into subnormals or 0 and results above it overflow to inf. Arguments
// are clamped to [lo, hi] first: beyond, exp is 0 or inf in the type anyway, and k stays where both factors are
// normal. The clamp is written as comparisons, which NaN fails, so NaN passes through.
template <typename T>
struct ExpConstants;
template <>
struct ExpConstants<float> {
  using Bits = int32_t;
  using UBits = uint32_t;
  static constexpr float lo = -104.0f, hi = 89.0f;
  static constexpr float log2e = 1.44269504088896341f;
  static constexpr float ln2_hi = 0.693145751953125f;  // 16 significant bits: k ln2_hi exact for |k| < 2^8
  static constexpr float ln2_lo = 1.42860682030941723212e-6f;
  static constexpr float round_magic = 12582912.0f;  // 1.5 * 2^23: t log2 e + this holds round(t log2 e) exactly
  static constexpr int bias = 127, mantissa_bits = 23, degree = 7;
  static constexpr float tanh_one = 10.0f;  // tanh(x) rounds to 1 for x >= 9.02
};
template <>
struct ExpConstants<double> {
  using Bits = int64_t;
  using UBits = uint64_t;
  static constexpr double lo = -750.0, hi = 710.0;
  static constexpr double log2e = 1.4426950408889634074;
  static constexpr double ln2_hi = 6.93147180369123816490e-01;  // 32 significant bits (fdlibm)
  static constexpr double ln2_lo = 1.90821492927058770002e-10;
  static constexpr double round_magic = 6755399441055744.0;  // 1.5 * 2^52
  static constexpr int bias = 1023, mantissa_bits = 52, degree = 13;
  static constexpr double tanh_one = 20.0;  // tanh(x) rounds to 1 for x >= 19.07
};

// log(x) = k ln 2 + log(1 + f) with x = 2^k (1 + f), 1 + f in [sqrt(1/2), sqrt(2)) (the fdlibm / musl method):
// s = f / (2 + f), log(1 + f) = f - f^2/2 + s (f^2/2 + R(s^2)), R the minimax polynomial below (Lg1..Lg7 of fdlibm
// in double, its float32 version in float). At most 0.8 ulp measured.
template <typename T>
struct LogConstants;
template <>
struct LogConstants<float> {
  static constexpr float lg1 = 0.66666662693f, lg2 = 0.40000972152f, lg3 = 0.28498786688f, lg4 = 0.24279078841f;
  static constexpr float ln2_hi = 6.9313812256e-01f, ln2_lo = 9.0580006145e-06f;
  static constexpr int32_t sqrt_half_bits = 0x3f3504f3;  // the bits of sqrt(1/2)
  static constexpr float min_normal = 1.17549435e-38f;
  static constexpr float subnormal_scale = 33554432.0f;  // 2^25: brings a subnormal into the normal range
  static constexpr int subnormal_scale_log2 = 25;
};
template <>
struct LogConstants<double> {
  static constexpr double lg1 = 6.666666666666735130e-01, lg2 = 3.999999999940941908e-01;
  static constexpr double lg3 = 2.857142874366239149e-01, lg4 = 2.222219843214978396e-01;
  static constexpr double lg5 = 1.818357216161805012e-01, lg6 = 1.531383769920937332e-01;
  static constexpr double lg7 = 1.479819860511658591e-01;
  static constexpr double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
  static constexpr int64_t sqrt_half_bits = int64_t(0x3fe6a09e) << 32;
  static constexpr double min_normal = 2.2250738585072014e-308;
  static constexpr double subnormal_scale = 18014398509481984.0;  // 2^54
  static constexpr int subnormal_scale_log2 = 54;
};

// 1 / d! rounded once to T (d! is exact in T for the degrees used).
template <typename T>
constexpr T inv_factorial(int d) {
  T f = T(1);
  for (int i = 2; i <= d; ++i) f *= T(i);
  return T(1) / f;
}

// ---- Pieces written once for scalars and for the CPU kernels' vectors (V = T or a GCC vector of T: only
// arithmetic with scalars of T, which both accept).
#if defined(__GNUC__) && !defined(__CUDACC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"  // 32 / 64-byte vector arguments: always inlined, so no such call exists
#endif

// c_d + r (c_(d+1) + r (... + r c_D)) with c_i = 1 / i!: Horner, unrolled at compile time.
template <typename T, int d, int D, typename V>
MF_MATH V factorial_horner(const V& r) {
  if constexpr (d == D) {
    return V{} + inv_factorial<T>(D);
  } else {
    return factorial_horner<T, d + 1, D>(r) * r + inv_factorial<T>(d);
  }
}

// expm1 of a reduced argument: r (1 + r/2! + ... + r^(degree-1)/degree!).
template <typename T, typename V>
MF_MATH V expm1_poly(const V& r) {
  return factorial_horner<T, 1, ExpConstants<T>::degree>(r) * r;
}

// log(1 + f) + dk ln 2 for f in [sqrt(1/2) - 1, sqrt(2) - 1) (see LogConstants); s = f / (2 + f), computed by the
// caller with its own division.
template <typename T, typename V>
MF_MATH V log1p_reduced(const V& f, const V& s, const V& dk) {
  using C = LogConstants<T>;
  const V z = s * s;
  const V w = z * z;
  const V hfsq = T(0.5) * f * f;
  V t1, t2;
  if constexpr (sizeof(T) == 4) {
    t1 = w * (C::lg2 + w * C::lg4);
    t2 = z * (C::lg1 + w * C::lg3);
  } else {
    t1 = w * (C::lg2 + w * (C::lg4 + w * C::lg6));
    t2 = z * (C::lg1 + w * (C::lg3 + w * (C::lg5 + w * C::lg7)));
  }
  return s * (hfsq + (t2 + t1)) + dk * C::ln2_lo - hfsq + f + dk * C::ln2_hi;
}

#if defined(__GNUC__) && !defined(__CUDACC__)
#pragma GCC diagnostic pop
#endif

// ---- Scalar primitives: IEEE division and reciprocal; a sum and a product that the compiler may not contract
// into an FMA (where a result must round like the reference's separate operations); bit casts.
#ifdef __CUDA_ARCH__
MF_MATH float div(float a, float b) { return __fdiv_rn(a, b); }  // '/' is approximate under fast math
MF_MATH float recip(float a) { return __frcp_rn(a); }
MF_MATH float add_rn(float a, float b) { return __fadd_rn(a, b); }
MF_MATH float mul_rn(float a, float b) { return __fmul_rn(a, b); }
MF_MATH double add_rn(double a, double b) { return __dadd_rn(a, b); }
MF_MATH double mul_rn(double a, double b) { return __dmul_rn(a, b); }
#else
MF_MATH float div(float a, float b) { return a / b; }
MF_MATH float recip(float a) { return 1.0f / a; }
template <typename T>
MF_MATH T add_rn(T a, T b) {  // plain on the host (where the target clones with FMA may still contract)
  return a + b;
}
template <typename T>
MF_MATH T mul_rn(T a, T b) {
  return a * b;
}
#endif
MF_MATH double div(double a, double b) { return a / b; }  // fast math leaves double alone
MF_MATH double recip(double a) { return 1.0 / a; }

#ifdef __CUDA_ARCH__
MF_MATH int32_t bits_of(float x) { return __float_as_int(x); }
MF_MATH int64_t bits_of(double x) { return static_cast<int64_t>(__double_as_longlong(x)); }
template <typename T>
MF_MATH T from_bits(typename ExpConstants<T>::Bits b);
template <>
MF_MATH float from_bits<float>(int32_t b) {
  return __int_as_float(b);
}
template <>
MF_MATH double from_bits<double>(int64_t b) {
  return __longlong_as_double(static_cast<long long>(b));
}
#else
template <typename T>
MF_MATH typename ExpConstants<T>::Bits bits_of(T x) {
  typename ExpConstants<T>::Bits b;
  std::memcpy(&b, &x, sizeof b);
  return b;
}
template <typename T>
MF_MATH T from_bits(typename ExpConstants<T>::Bits b) {
  T x;
  std::memcpy(&x, &b, sizeof x);
  return x;
}
#endif
template <typename T>
MF_MATH T copy_sign(T magnitude, T sign) {
  using B = typename ExpConstants<T>::Bits;
  constexpr B sign_bit = B(1) << (8 * sizeof(T) - 1);
  return from_bits<T>((bits_of(magnitude) & ~sign_bit) | (bits_of(sign) & sign_bit));
}
template <typename T>
MF_MATH T infinity() {
  return std::numeric_limits<T>::infinity();
}
template <typename T>
MF_MATH T quiet_nan() {
  return std::numeric_limits<T>::quiet_NaN();
}

// 2^n for n in the normal exponent range (unsigned arithmetic: a NaN argument's garbage n stays defined).
template <typename T>
MF_MATH T pow2(typename ExpConstants<T>::Bits n) {
  using C = ExpConstants<T>;
  using U = typename C::UBits;
  return from_bits<T>(static_cast<typename C::Bits>(static_cast<U>(n + C::bias) << C::mantissa_bits));
}

// The reduction of exp: clamps x, returns k and sets r (x = k ln 2 + r, |r| <= ln(2) / 2 + tiny).
template <typename T>
MF_MATH typename ExpConstants<T>::Bits exp_reduce(T x, T& r) {
  using C = ExpConstants<T>;
  const T t = x < C::lo ? C::lo : (x > C::hi ? C::hi : x);  // NaN fails both comparisons and passes
  const T kr = t * C::log2e + C::round_magic;  // round(t log2 e) sits in the low mantissa bits
  const T k = kr - C::round_magic;
  r = (t - k * C::ln2_hi) - k * C::ln2_lo;
  return bits_of(kr) - bits_of(C::round_magic);
}

// ---- The scalar functions.

template <typename T>
MF_MATH T exp(T x) {
  T r;
  const auto k = exp_reduce(x, r);
  const auto h = k >> 1;  // floor(k / 2)
  return ((T(1) + expm1_poly<T>(r)) * pow2<T>(h)) * pow2<T>(k - h);
}

// exp(x) - 1, accurate also near 0; for |x| below ~80 (float) / ~700 (double), where 2^k is one normal factor.
template <typename T>
MF_MATH T expm1_moderate(T x) {
  T r;
  const auto k = exp_reduce(x, r);
  const T s = pow2<T>(k);
  return s * expm1_poly<T>(r) + (s - T(1));
}

// 1 / (1 + exp(-x)) for x >= 0, exp(x) / (1 + exp(x)) below (where exp(-x) would overflow before the result
// reaches the subnormals): one exp of -|x| either way.
template <typename T>
MF_MATH T sigmoid(T x) {
  const T e = exp(x < T(0) ? x : -x);
  const T d = T(1) + e;
  return x >= T(0) ? recip(d) : div(e, d);  // NaN takes the second branch and stays NaN
}

// tanh(|x|) = expm1(2|x|) / (expm1(2|x|) + 2) (no cancellation near 0), 1 from tanh_one on; the sign of x.
template <typename T>
MF_MATH T tanh(T x) {
  const T a = x < T(0) ? -x : x;
  T t = T(1);
  if (!(a >= ExpConstants<T>::tanh_one)) {  // NaN goes this way and stays NaN
    const T em = expm1_moderate(a + a);
    t = div(em, em + T(2));
  }
  return copy_sign(t, x);
}

template <typename T>
MF_MATH T log(T x) {
  using C = LogConstants<T>;
  using E = ExpConstants<T>;
  using B = typename E::Bits;
  if (!(x > T(0))) return x == T(0) ? -infinity<T>() : (x != x ? x : quiet_nan<T>());  // log(x < 0) = NaN
  if (x == infinity<T>()) return x;
  const bool sub = x < C::min_normal;
  const T y = sub ? x * C::subnormal_scale : x;
  constexpr B one = B(E::bias) << E::mantissa_bits;
  constexpr B mant = (B(1) << E::mantissa_bits) - 1;
  B ix = bits_of(y) + (one - C::sqrt_half_bits);
  const B k = (ix >> E::mantissa_bits) - E::bias - (sub ? C::subnormal_scale_log2 : 0);
  ix = (ix & mant) + C::sqrt_half_bits;
  const T f = from_bits<T>(ix) - T(1);
  return log1p_reduced<T>(f, div(f, f + T(2)), static_cast<T>(k));
}

// log sum_k exp(v_k) over the n values get(0) ... get(n - 1): m + log(sum_k exp(v_k - m)), m = max_k v_k.
// -inf when every value is -inf (not NaN), +inf when one is +inf, NaN when one is NaN.
template <typename T, typename Get>
MF_MATH T log_sum_exp(int n, Get get) {
  T m = -infinity<T>();
  for (int k = 0; k < n; ++k) {
    const T v = get(k);
    m = (v > m || v != v) ? v : m;  // a NaN sticks: nothing compares greater than it
  }
  if (!(m > -infinity<T>() && m < infinity<T>())) return m;
  T s = T(0);
  for (int k = 0; k < n; ++k) s += exp(get(k) - m);
  return m + log(s);
}

// The range rule of every tier sampler (keep_in_range of melnet_fast/ops/gmm/reference.py): below lo -> lo, above
// hi or NaN (which has no side) -> hi, so a diverging model still gives finite samples and its runaways show at hi.
template <typename T>
MF_MATH T keep_in_range(T x, T lo, T hi) {
  return x != x ? hi : (x < lo ? lo : (x > hi ? hi : x));
}

}  // namespace math
}  // namespace melnet_fast
