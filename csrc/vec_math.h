// Vectorisable math for the CPU kernels, and the target clones that make it fast.
//
// libm's expf / tanhf are scalar calls: they were a third of the sampler's time and most of the sweep's. The
// functions here work in passes over arrays that GCC vectorises, and MELNET_FAST_CPU_CLONES compiles a kernel
// for AVX-512 and AVX2 as well as the baseline, picked at load time (GCC function multi-versioning), so the
// package still runs on any x86-64. Helpers are forced inline so they are compiled inside each clone.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace melnet_fast {

#define MF_INLINE __attribute__((always_inline)) inline

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define MELNET_FAST_CPU_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define MELNET_FAST_CPU_CLONES
#endif

// exp in passes over arrays: Cody-Waite reduction x = n ln2 + r with |r| <= ln2 / 2, a Taylor polynomial of
// r (degree 7 in float, 13 in double: below one ulp), and 2^n assembled in the exponent bits. Arguments are
// clamped to the range where 2^n is a normal number (the gates only need exp of moderate values).
template <typename T>
struct ExpConsts;
template <>
struct ExpConsts<float> {
  using Int = int32_t;
  static constexpr float lo = -87.0f, hi = 88.0f, log2e = 1.44269504088896341f;
  static constexpr float ln2_hi = 0.693359375f, ln2_lo = -2.12194440e-4f;
  static constexpr int bias = 127, shift = 23, degree = 7;
};
template <>
struct ExpConsts<double> {
  using Int = int64_t;
  static constexpr double lo = -708.0, hi = 709.0, log2e = 1.4426950408889634074;
  static constexpr double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
  static constexpr int bias = 1023, shift = 52, degree = 13;
};

template <typename T>
struct PointwiseScratch {
  std::vector<T> arg, scale;
  std::vector<typename ExpConsts<T>::Int> bits;
  explicit PointwiseScratch(int64_t n) : arg(n), scale(n), bits(n) {}
};

// x[j] = exp(x[j]) for j < n.
template <typename T>
MF_INLINE void exp_inplace(T* x, int64_t n, PointwiseScratch<T>& s) {
  using C = ExpConsts<T>;
  using Int = typename C::Int;
  T* scale = s.scale.data();
  Int* bits = s.bits.data();
  T inv_fact[C::degree + 1];
  inv_fact[0] = T(1);
  for (int d = 1; d <= C::degree; ++d) inv_fact[d] = inv_fact[d - 1] / T(d);
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) {
    const T t = std::min(std::max(x[j], T(C::lo)), T(C::hi));
    const T k = std::floor(t * T(C::log2e) + T(0.5));
    const T r = (t - k * T(C::ln2_hi)) - k * T(C::ln2_lo);
    T p = inv_fact[C::degree];
    for (int d = C::degree - 1; d >= 0; --d) p = p * r + inv_fact[d];
    x[j] = p;
    bits[j] = (static_cast<Int>(k) + C::bias) << C::shift;
  }
  __builtin_memcpy(scale, bits, n * sizeof(T));  // reinterpret the exponent bits as the 2^k factors
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) x[j] *= scale[j];
}

// The LSTM pointwise update of one row from pre-activation gates pre = a + b (b may be null), gates (i, f, g, o):
// act [4H] receives the activated gates, (h, c) [H] are updated in place.
// sigmoid(v) = 1 / (1 + exp(-v)), tanh(v) = sign(v) (1 - exp(-2|v|)) / (1 + exp(-2|v|)).
template <typename T>
MF_INLINE void lstm_cell_pointwise(const T* a, const T* b, T* act, T* h, T* c, int64_t H, PointwiseScratch<T>& s) {
  T* e = s.arg.data();
  const int64_t G = 4 * H;
#pragma omp simd
  for (int64_t j = 0; j < G; ++j) {
    const T v = b ? a[j] + b[j] : a[j];
    act[j] = v;
    e[j] = (j >= 2 * H && j < 3 * H) ? T(-2) * std::abs(v) : -v;
  }
  exp_inplace(e, G, s);
#pragma omp simd
  for (int64_t j = 0; j < H; ++j) {
    const T i = T(1) / (T(1) + e[j]), f = T(1) / (T(1) + e[H + j]), o = T(1) / (T(1) + e[3 * H + j]);
    const T ga = (T(1) - e[2 * H + j]) / (T(1) + e[2 * H + j]);
    const T g = act[2 * H + j] < T(0) ? -ga : ga;
    act[j] = i;
    act[H + j] = f;
    act[2 * H + j] = g;
    act[3 * H + j] = o;
    const T cn = f * c[j] + i * g;
    c[j] = cn;
    e[j] = T(-2) * std::abs(cn);
  }
  exp_inplace(e, H, s);
#pragma omp simd
  for (int64_t j = 0; j < H; ++j) {
    const T ta = (T(1) - e[j]) / (T(1) + e[j]);
    h[j] = act[3 * H + j] * (c[j] < T(0) ? -ta : ta);
  }
}

// out[j] = tanh(x[j]) for j < n.
template <typename T>
MF_INLINE void tanh_array(const T* x, T* out, int64_t n, PointwiseScratch<T>& s) {
  T* e = s.arg.data();
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) e[j] = T(-2) * std::abs(x[j]);
  exp_inplace(e, n, s);
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) {
    const T ta = (T(1) - e[j]) / (T(1) + e[j]);
    out[j] = x[j] < T(0) ? -ta : ta;
  }
}

// Sizes the scratch for n values; n may grow between calls.
template <typename T>
MF_INLINE void reserve(PointwiseScratch<T>& s, int64_t n) {
  if (static_cast<int64_t>(s.arg.size()) < n) {
    s.arg.resize(n);
    s.scale.resize(n);
    s.bits.resize(n);
  }
}

}  // namespace melnet_fast

// ---------------------------------------------------------------------------------------------------------------
// Explicit 64-byte vectors (GCC vector extensions) with a full-range exp and log.
//
// The auto-vectoriser does not always turn the select-and-clamp code of a scalar exp into vector code (GCC 12
// keeps branches for `x < lo ? lo : x` followed by arithmetic in the AVX2 and baseline builds), so these work on
// whole vectors: one zmm register in the AVX-512 clone, two ymm in the AVX2 one, four xmm in the baseline, from
// the same source. Like the rest of this file they are forced inline, to be compiled inside each target clone.
namespace melnet_fast {
namespace simd {

template <typename T>
struct VecTraits;
template <>
struct VecTraits<float> {
  using Int = int32_t;
  // exp: arguments clamped to [lo, hi], which still underflows to 0 / overflows to inf; round-to-integer constant
  static constexpr float exp_lo = -110.0f, exp_hi = 89.0f, round_magic = 12582912.0f;  // 1.5 * 2^23
  static constexpr float log2e = 1.44269504088896341f, ln2_hi = 0.693359375f, ln2_lo = -2.12194440e-4f;
  static constexpr int bias = 127, shift = 23, exp_degree = 7;
};
template <>
struct VecTraits<double> {
  using Int = int64_t;
  static constexpr double exp_lo = -750.0, exp_hi = 710.0, round_magic = 6755399441055744.0;  // 1.5 * 2^52
  static constexpr double log2e = 1.4426950408889634074;
  static constexpr double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
  static constexpr int bias = 1023, shift = 52, exp_degree = 13;
};

// Vec<T>: 64 bytes of T; IVec<T>: the same bits as integers of T's size (comparisons yield IVec masks, -1 / 0).
template <typename T>
struct Vec64Types {
  typedef T type __attribute__((vector_size(64), aligned(sizeof(T))));
  typedef typename VecTraits<T>::Int itype __attribute__((vector_size(64), aligned(sizeof(T))));
  static constexpr int lanes = 64 / sizeof(T);
};
template <typename T>
using Vec = typename Vec64Types<T>::type;
template <typename T>
using IVec = typename Vec64Types<T>::itype;
template <typename T>
constexpr int lanes() {
  return Vec64Types<T>::lanes;
}

template <typename T>
MF_INLINE Vec<T> load(const T* p) {
  Vec<T> v;
  __builtin_memcpy(&v, p, sizeof(v));
  return v;
}
template <typename T>
MF_INLINE void store(T* p, const Vec<T>& v) {
  __builtin_memcpy(p, &v, sizeof(v));
}
template <typename T>
MF_INLINE Vec<T> splat(T s) {
  return Vec<T>{} + s;
}
// max / min that return b when a is NaN (the vmaxps / vminps rule)
template <typename V>
MF_INLINE V vmax(const V& a, const V& b) {
  return a > b ? a : b;
}
template <typename V>
MF_INLINE V vmin(const V& a, const V& b) {
  return a < b ? a : b;
}

// exp over the whole range: x = k ln2 + r (Cody-Waite, |r| <= ln2 / 2), a Taylor polynomial of r (degree 7 in
// float, 13 in double, below one ulp), times 2^k applied as two normal factors 2^(k/2) 2^(k - k/2), so results
// below the normal range come out as subnormals or 0 and above it as +inf. exp(-inf) = 0, NaN stays NaN.
template <typename T>
MF_INLINE Vec<T> exp_impl(const Vec<T>& x) {
  using C = VecTraits<T>;
  const Vec<T> t = vmin(splat(T(C::exp_hi)), vmax(splat(T(C::exp_lo)), x));  // NaN passes through both
  const Vec<T> magic = splat(T(C::round_magic));
  const Vec<T> kr = t * T(C::log2e) + magic;  // k = round(t log2 e) sits in the low mantissa bits of kr
  const Vec<T> k = kr - magic;
  const Vec<T> r = (t - k * T(C::ln2_hi)) - k * T(C::ln2_lo);
  T inv_fact[C::exp_degree + 1];
  inv_fact[0] = T(1);
  for (int d = 1; d <= C::exp_degree; ++d) inv_fact[d] = inv_fact[d - 1] / T(d);
  Vec<T> p = splat(inv_fact[C::exp_degree]);
  for (int d = C::exp_degree - 1; d >= 0; --d) p = p * r + inv_fact[d];
  const IVec<T> ki = (IVec<T>)(kr) - (IVec<T>)(magic);
  const IVec<T> half = ki >> 1;
  const IVec<T> b1 = (half + C::bias) << C::shift;
  const IVec<T> b2 = (ki - half + C::bias) << C::shift;
  return p * (Vec<T>)(b1) * (Vec<T>)(b2);
}

MF_INLINE Vec<float> exp(const Vec<float>& x) { return exp_impl<float>(x); }
MF_INLINE Vec<double> exp(const Vec<double>& x) { return exp_impl<double>(x); }

// log over the whole range (fdlibm / musl method): x = 2^k m with m in [sqrt(1/2), sqrt(2)), f = m - 1,
// s = f / (2 + f), log(m) = f - f^2/2 + s (f^2/2 + R(s^2)) with the minimax R of fdlibm; about 1 ulp.
// Subnormals are scaled up first; log(0) = -inf, log(x < 0) = NaN, log(inf) = inf, NaN stays NaN.
MF_INLINE Vec<float> log(const Vec<float>& x_in) {
  using V = Vec<float>;
  using I = IVec<float>;
  const I tiny = x_in < 1.17549435e-38f;  // below the normal range (or <= 0, sorted out at the end)
  const V x = tiny ? x_in * 33554432.0f : x_in;  // * 2^25
  I ix = (I)(x);
  ix += 0x3f800000 - 0x3f3504f3;
  const I k = (ix >> 23) - 0x7f + (tiny & -25);
  ix = (ix & 0x007fffff) + 0x3f3504f3;
  const V m = (V)(ix);
  const V f = m - 1.0f;
  const V s = f / (f + 2.0f);
  const V z = s * s;
  const V w = z * z;
  const V t1 = w * (0.40000972152f + w * 0.24279078841f);
  const V t2 = z * (0.66666662693f + w * 0.28498786688f);
  const V R = t2 + t1;
  const V hfsq = 0.5f * f * f;
  const V dk = __builtin_convertvector(k, V);
  const V r = s * (hfsq + R) + dk * 9.0580006145e-06f - hfsq + f + dk * 6.9313812256e-01f;
  const V inf = splat(__builtin_inff());
  const V special = x_in == 0.0f ? -inf : (x_in == inf ? inf : splat(__builtin_nanf("")));
  return (x_in > 0.0f & x_in < inf) ? r : special;
}

MF_INLINE Vec<double> log(const Vec<double>& x_in) {
  using V = Vec<double>;
  using I = IVec<double>;
  const I tiny = x_in < 2.2250738585072014e-308;
  const V x = tiny ? x_in * 18014398509481984.0 : x_in;  // * 2^54
  I ix = (I)(x);
  ix += int64_t(0x3ff00000 - 0x3fe6a09e) << 32;
  const I k = (ix >> 52) - 0x3ff + (tiny & -54);
  ix = (ix & 0x000fffffffffffffLL) + (int64_t(0x3fe6a09e) << 32);
  const V m = (V)(ix);
  const V f = m - 1.0;
  const V hfsq = 0.5 * f * f;
  const V s = f / (f + 2.0);
  const V z = s * s;
  const V w = z * z;
  const V t1 = w * (3.999999999940941908e-01 + w * (2.222219843214978396e-01 + w * 1.531383769920937332e-01));
  const V t2 = z * (6.666666666666735130e-01 +
                    w * (2.857142874366239149e-01 + w * (1.818357216161805012e-01 + w * 1.479819860511658591e-01)));
  const V R = t2 + t1;
  const V dk = __builtin_convertvector(k, V);
  const V r = s * (hfsq + R) + dk * 1.90821492927058770002e-10 - hfsq + f + dk * 6.93147180369123816490e-01;
  const V inf = splat(__builtin_inf());
  const V special = x_in == 0.0 ? -inf : (x_in == inf ? inf : splat(__builtin_nan("")));
  return (x_in > 0.0 & x_in < inf) ? r : special;
}

}  // namespace simd

// x[j] = log(x[j]) for j < n (simd::log: full range, about 1 ulp).
template <typename T>
MF_INLINE void log_inplace(T* x, int64_t n) {
  constexpr int W = simd::lanes<T>();
  int64_t j = 0;
  for (; j + W <= n; j += W) simd::store(x + j, simd::log(simd::load(x + j)));
  if (j < n) {
    T tail[W];
    for (int i = 0; i < W; ++i) tail[i] = j + i < n ? x[j + i] : T(1);
    simd::store(tail, simd::log(simd::load(tail)));
    for (int64_t i = 0; j + i < n; ++i) x[j + i] = tail[i];
  }
}

}  // namespace melnet_fast
