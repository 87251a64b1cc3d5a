// Vector math for the CPU kernels, and the per-target builds that make it fast.
//
// libm's expf / tanhf are scalar calls: they were a third of the sampler's time and most of the sweep's. The
// functions here are the vector forms of the maths of scalar_math.h (its constants, polynomials and algorithms,
// written for whole vectors), and every CPU kernel is compiled for AVX-512 and AVX2 as well as the baseline, one
// wrapper per target, picked at run time by simd::cpu_level() (below), so the package still runs on any x86-64.
// Helpers are forced inline so they are compiled inside each wrapper.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <type_traits>

#include "scalar_math.h"

namespace melnet_fast {

#define MF_INLINE __attribute__((always_inline)) inline
// The same for a lambda's body, a function of its own: GCC may otherwise leave it out of line, compiled without the
// caller's target attribute (64-byte vector code then runs as SSE).
#define MF_LAMBDA_INLINE __attribute__((always_inline))

}  // namespace melnet_fast

// ---------------------------------------------------------------------------------------------------------------
// Explicit vectors (GCC vector extensions) with a full-range exp and log, at the native width of each target.
//
// The auto-vectoriser does not always turn the select-and-clamp code of a scalar exp into vector code, so these
// work on whole vectors. The width must match the target: GCC 12 splits a vector wider than the hardware's for
// arithmetic but lowers its comparisons and selects lane by lane in scalar code. So a kernel is a template on
// the vector size in bytes, compiled three times: 64 in a MELNET_FAST_TARGET_V4 function (AVX-512), 32 in a
// MELNET_FAST_TARGET_V3 one (AVX2 + FMA), 16 in a plain one, and simd::cpu_level() picks one at run time.
// Everything here is forced inline, so it is compiled inside each of them. Comparisons are used only as the
// condition of a select (`a < b ? a : b`): a mask kept as an integer vector becomes scalar code in the AVX-512
// build of GCC 12.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"  // 32 / 64-byte vector arguments; always inlined, so no such call exists
namespace melnet_fast {
namespace simd {

// The level of the host: 4 = AVX-512 (x86-64-v4), 3 = AVX2 + FMA (x86-64-v3), 1 = anything else. The environment
// variable MELNET_FAST_CPU_LEVEL (1, 3 or 4) caps it, to test the narrower builds on a wider machine; it is
// read once.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define MELNET_FAST_TARGET_CLONES 1  // the levels 4, 3 and 1 are compiled
#define MELNET_FAST_TARGET_V4 __attribute__((target("arch=x86-64-v4")))
#define MELNET_FAST_TARGET_V3 __attribute__((target("arch=x86-64-v3")))
inline int host_cpu_level() {
  return __builtin_cpu_supports("x86-64-v4") ? 4 : __builtin_cpu_supports("x86-64-v3") ? 3 : 1;
}
#else
#define MELNET_FAST_TARGET_V4
#define MELNET_FAST_TARGET_V3
inline int host_cpu_level() { return 1; }
#endif
inline int cpu_level() {
  static const int level = [] {
    const int host = host_cpu_level();
    const char* cap = std::getenv("MELNET_FAST_CPU_LEVEL");
    if (cap == nullptr || *cap == '\0') return host;
    const int c = std::atoi(cap);
    return std::min(host, c >= 4 ? 4 : c >= 3 ? 3 : 1);
  }();
  return level;
}

// Of the functions compiled one per target (AVX-512, AVX2 + FMA, baseline), the one this CPU runs (cpu_level()).
template <typename Fn>
inline Fn for_level(Fn v4, Fn v3, Fn v1) {
  const int level = cpu_level();
  return level >= 4 ? v4 : level >= 3 ? v3 : v1;
}

// Vec<T, B>: B bytes of T; IVec<T, B>: integers of T's size (the bits of a Vec, by a cast).
template <typename T, int B>
struct VecTypes {
  typedef T type __attribute__((vector_size(B), aligned(sizeof(T))));
  typedef typename math::ExpConstants<T>::Bits itype __attribute__((vector_size(B), aligned(sizeof(T))));
};
template <typename T, int B>
using Vec = typename VecTypes<T, B>::type;
template <typename T, int B>
using IVec = typename VecTypes<T, B>::itype;
template <typename V>
using Elem = typename std::remove_cv<typename std::remove_reference<decltype(V{}[0])>::type>::type;
template <typename V>
constexpr int lanes() {
  return sizeof(V) / sizeof(Elem<V>);
}

template <typename V>
MF_INLINE V load(const Elem<V>* p) {
  V v;
  __builtin_memcpy(&v, p, sizeof(v));
  return v;
}
template <typename V>
MF_INLINE void store(Elem<V>* p, const V& v) {
  __builtin_memcpy(p, &v, sizeof(v));
}
template <typename V>
MF_INLINE V splat(Elem<V> s) {
  return V{} + s;
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

// math::exp (csrc/scalar_math.h) on whole vectors: the same reduction, polynomial, two-factor scaling and
// constants, so results below the normal range come out as subnormals or 0 and above it as +inf; exp(-inf) = 0,
// NaN stays NaN. Measured against a wider exp: at most 0.91 ulp in float and 0.87 in double with FMA (AVX2,
// AVX-512), 1.2 / 1.1 without.
template <typename V>
MF_INLINE V exp(const V& x) {
  using T = Elem<V>;
  using C = math::ExpConstants<T>;
  using I = IVec<T, sizeof(V)>;
  const V t = vmin(splat<V>(C::hi), vmax(splat<V>(C::lo), x));  // NaN passes through both
  const V magic = splat<V>(C::round_magic);
  const V kr = t * C::log2e + magic;  // k = round(t log2 e) sits in the low mantissa bits of kr
  const V k = kr - magic;
  const V r = (t - k * C::ln2_hi) - k * C::ln2_lo;
  const V p = T(1) + math::expm1_poly<T>(r);
  const I ki = (I)(kr) - (I)(magic);
  const I half = ki >> 1;
  const I b1 = (half + C::bias) << C::mantissa_bits;
  const I b2 = (ki - half + C::bias) << C::mantissa_bits;
  return p * (V)(b1) * (V)(b2);
}

// math::log on whole vectors (fdlibm / musl method, the polynomial of math::log1p_reduced): x = 2^k m with m in
// [sqrt(1/2), sqrt(2)), then log(1 + (m - 1)) + k ln 2; at most 0.8 ulp measured (relative error 1.5e-16 in
// double). Subnormals are scaled up first; log(0) = -inf, log(x < 0) = NaN, log(inf) = inf, NaN stays NaN.
template <typename V>
MF_INLINE V log(const V& x_in) {
  using T = Elem<V>;
  using E = math::ExpConstants<T>;
  using C = math::LogConstants<T>;
  using Int = typename E::Bits;
  using I = IVec<T, sizeof(V)>;
  constexpr Int one = Int(E::bias) << E::mantissa_bits;
  constexpr Int mant = (Int(1) << E::mantissa_bits) - 1;
  const V x = x_in < C::min_normal ? x_in * C::subnormal_scale : x_in;
  I ix = (I)(x) + (one - C::sqrt_half_bits);
  const I k =
      (ix >> E::mantissa_bits) - (x_in < C::min_normal ? I{} + (E::bias + C::subnormal_scale_log2) : I{} + E::bias);
  ix = (ix & mant) + C::sqrt_half_bits;
  const V f = (V)(ix)-T(1);
  const V r = math::log1p_reduced<T>(f, f / (f + T(2)), __builtin_convertvector(k, V));
  const V inf = splat<V>(T(__builtin_inf()));
  const V finite_or_nan = x_in < inf ? r : x_in;  // log(inf) = inf, NaN stays
  return x_in > T(0) ? finite_or_nan : (x_in == T(0) ? -inf : splat<V>(T(__builtin_nan(""))));
}

// The LSTM gate functions on whole vectors. sigmoid as math::sigmoid (csrc/scalar_math.h): from e = exp(-|v|),
// 1 / (1 + e) for v >= 0 and e / (1 + e) below (one division: e times the reciprocal), so it stays accurate where it
// is tiny; tanh(v) = sign(v) (1 - exp(-2|v|)) / (1 + exp(-2|v|)). NaN stays NaN.
template <typename V>
MF_INLINE V sigmoid(const V& v) {
  using T = Elem<V>;
  const V e = exp(v < T(0) ? v : -v);
  const V d = T(1) / (T(1) + e);
  return v >= T(0) ? d : e * d;  // NaN takes the second branch and stays NaN
}
template <typename V>
MF_INLINE V tanh(const V& v) {
  using T = Elem<V>;
  const V e = exp(T(-2) * (v < T(0) ? -v : v));
  const V t = (T(1) - e) / (T(1) + e);
  return v < T(0) ? -t : t;
}

}  // namespace simd

// x[j] = log(x[j]) for j < n with B-byte vectors (simd::log: full range, at most 0.8 ulp). Call it with the B of
// the target it is compiled in (see above).
template <int B, typename T>
MF_INLINE void log_inplace(T* x, int64_t n) {
  using V = simd::Vec<T, B>;
  constexpr int W = simd::lanes<V>();
  int64_t j = 0;
  for (; j + W <= n; j += W) simd::store(x + j, simd::log(simd::load<V>(x + j)));
  if (j < n) {
    T tail[W];
    for (int i = 0; i < W; ++i) tail[i] = j + i < n ? x[j + i] : T(1);
    simd::store(tail, simd::log(simd::load<V>(tail)));
    for (int64_t i = 0; j + i < n; ++i) x[j + i] = tail[i];
  }
}

}  // namespace melnet_fast
#pragma GCC diagnostic pop
