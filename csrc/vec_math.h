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
  static constexpr float round_magic = 12582912.0f;  // 1.5 * 2^23
  static constexpr int bias = 127, shift = 23, degree = 7;
};
template <>
struct ExpConsts<double> {
  using Int = int64_t;
  static constexpr double lo = -708.0, hi = 709.0, log2e = 1.4426950408889634074;
  static constexpr double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
  static constexpr double round_magic = 6755399441055744.0;  // 1.5 * 2^52
  static constexpr int bias = 1023, shift = 52, degree = 13;
};

template <typename T>
struct PointwiseScratch {
  std::vector<T> arg, scale;
  std::vector<typename ExpConsts<T>::Int> bits;
  explicit PointwiseScratch(int64_t n) : arg(n), scale(n), bits(n) {}
};

// e^r = 1 + r (1 + r/2 (1 + r/3 (...))) to degree D, unrolled at compile time so the caller's loop vectorises.
template <typename T, int K, int D>
MF_INLINE T taylor_exp(T r) {
  if constexpr (K > D) {
    return T(1);
  } else {
    return T(1) + r * (T(1) / T(K)) * taylor_exp<T, K + 1, D>(r);
  }
}

// x[j] = exp(x[j]) for j < n.
template <typename T>
MF_INLINE void exp_inplace(T* x, int64_t n, PointwiseScratch<T>& s) {
  using C = ExpConsts<T>;
  using Int = typename C::Int;
  T* scale = s.scale.data();
  Int* bits = s.bits.data();
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) {
    // Ternaries, not std::min / std::max: those take references and keep GCC from vectorising the loop.
    const T v = x[j];
    const T t = v < T(C::lo) ? T(C::lo) : (v > T(C::hi) ? T(C::hi) : v);
    // Round to nearest by adding and removing 1.5 * 2^mantissa (std::floor is a call GCC will not vectorise).
    const T k = (t * T(C::log2e) + T(C::round_magic)) - T(C::round_magic);
    const T r = (t - k * T(C::ln2_hi)) - k * T(C::ln2_lo);
    x[j] = taylor_exp<T, 1, C::degree>(r);
    bits[j] = (static_cast<Int>(k) + C::bias) << C::shift;
  }
  __builtin_memcpy(scale, bits, n * sizeof(T));  // reinterpret the exponent bits as the 2^k factors
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) x[j] *= scale[j];
}

// The LSTM pointwise update of one row from pre-activation gates pre = a + b + bias (b, bias may be null), gates
// (i, f, g, o):
// act [4H] receives the activated gates, (h, c) [H] are updated in place.
// sigmoid(v) = 1 / (1 + exp(-v)), tanh(v) = sign(v) (1 - exp(-2|v|)) / (1 + exp(-2|v|)).
template <typename T>
MF_INLINE void lstm_cell_pointwise(const T* a, const T* b, T* act, T* h, T* c, int64_t H, PointwiseScratch<T>& s,
                                   const T* bias = nullptr) {
  T* e = s.arg.data();
  const int64_t G = 4 * H;
#pragma omp simd
  for (int64_t j = 0; j < G; ++j) {
    const T v = (b ? a[j] + b[j] : a[j]) + (bias ? bias[j] : T(0));
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
#include <cstdlib>
#include <type_traits>
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

template <typename T>
struct VecTraits;
template <>
struct VecTraits<float> {
  using Int = int32_t;
  // exp: arguments clamped to [lo, hi], which still underflow to 0 / overflow to inf; round-to-integer constant
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

// Vec<T, B>: B bytes of T; IVec<T, B>: integers of T's size (the bits of a Vec, by a cast).
template <typename T, int B>
struct VecTypes {
  typedef T type __attribute__((vector_size(B), aligned(sizeof(T))));
  typedef typename VecTraits<T>::Int itype __attribute__((vector_size(B), aligned(sizeof(T))));
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

// exp over the whole range: x = k ln2 + r (Cody-Waite, |r| <= ln2 / 2), a Taylor polynomial of r (degree 7 in
// float, 13 in double), times 2^k applied as two normal factors 2^(k/2) 2^(k - k/2), so results below the normal
// range come out as subnormals or 0 and above it as +inf. exp(-inf) = 0, NaN stays NaN. Measured against a
// wider exp: at most 0.91 ulp in float and 0.87 in double with FMA (AVX2, AVX-512), 1.2 / 1.1 without.
template <typename V>
MF_INLINE V exp(const V& x) {
  using T = Elem<V>;
  using C = VecTraits<T>;
  using I = IVec<T, sizeof(V)>;
  const V t = vmin(splat<V>(T(C::exp_hi)), vmax(splat<V>(T(C::exp_lo)), x));  // NaN passes through both
  const V magic = splat<V>(T(C::round_magic));
  const V kr = t * T(C::log2e) + magic;  // k = round(t log2 e) sits in the low mantissa bits of kr
  const V k = kr - magic;
  const V r = (t - k * T(C::ln2_hi)) - k * T(C::ln2_lo);
  T inv_fact[C::exp_degree + 1];
  inv_fact[0] = T(1);
  for (int d = 1; d <= C::exp_degree; ++d) inv_fact[d] = inv_fact[d - 1] / T(d);
  V p = splat<V>(inv_fact[C::exp_degree]);
  for (int d = C::exp_degree - 1; d >= 0; --d) p = p * r + inv_fact[d];
  const I ki = (I)(kr) - (I)(magic);
  const I half = ki >> 1;
  const I b1 = (half + C::bias) << C::shift;
  const I b2 = (ki - half + C::bias) << C::shift;
  return p * (V)(b1) * (V)(b2);
}

// log(1 + f) + dk ln 2 for f in [sqrt(1/2) - 1, sqrt(2) - 1): s = f / (2 + f),
// log(1 + f) = f - f^2/2 + s (f^2/2 + R(s^2)) with the minimax R of fdlibm.
template <typename V>
MF_INLINE V log1p_reduced(const V& f, const V& dk) {
  using T = Elem<V>;
  const V s = f / (f + T(2));
  const V z = s * s;
  const V w = z * z;
  const V hfsq = T(0.5) * f * f;
  if constexpr (sizeof(T) == 4) {
    const V t1 = w * (0.40000972152f + w * 0.24279078841f);
    const V t2 = z * (0.66666662693f + w * 0.28498786688f);
    return s * (hfsq + (t2 + t1)) + dk * 9.0580006145e-06f - hfsq + f + dk * 6.9313812256e-01f;
  } else {
    const V t1 = w * (3.999999999940941908e-01 + w * (2.222219843214978396e-01 + w * 1.531383769920937332e-01));
    const V t2 = z * (6.666666666666735130e-01 +
                      w * (2.857142874366239149e-01 + w * (1.818357216161805012e-01 + w * 1.479819860511658591e-01)));
    return s * (hfsq + (t2 + t1)) + dk * 1.90821492927058770002e-10 - hfsq + f + dk * 6.93147180369123816490e-01;
  }
}

// log over the whole range (fdlibm / musl method): x = 2^k m with m in [sqrt(1/2), sqrt(2)), then
// log1p_reduced(m - 1, k); at most 0.8 ulp measured (relative error 1.5e-16 in double). Subnormals are scaled
// up first; log(0) = -inf, log(x < 0) = NaN, log(inf) = inf, NaN stays NaN.
template <typename V>
MF_INLINE V log(const V& x_in) {
  using T = Elem<V>;
  using C = VecTraits<T>;
  using Int = typename C::Int;
  using I = IVec<T, sizeof(V)>;
  constexpr bool f32 = sizeof(T) == 4;
  const T min_normal = f32 ? T(1.17549435e-38f) : T(2.2250738585072014e-308);
  const T up = f32 ? T(33554432.0f) : T(18014398509481984.0);  // 2^25, 2^54
  constexpr int up_exp = f32 ? 25 : 54;
  // sqrt(1/2) in the top bits: the mantissa is folded into [sqrt(1/2), sqrt(2)) around it
  constexpr Int sqrt_half = f32 ? Int(0x3f3504f3) : Int(0x3fe6a09e) << 32;
  constexpr Int one = Int(C::bias) << C::shift;
  constexpr Int mant = (Int(1) << C::shift) - 1;
  const V x = x_in < min_normal ? x_in * up : x_in;
  I ix = (I)(x) + (one - sqrt_half);
  const I k = (ix >> C::shift) - (x_in < min_normal ? I{} + (C::bias + up_exp) : I{} + C::bias);
  ix = (ix & mant) + sqrt_half;
  const V r = log1p_reduced((V)(ix)-T(1), __builtin_convertvector(k, V));
  const V inf = splat<V>(T(__builtin_inf()));
  const V finite_or_nan = x_in < inf ? r : x_in;  // log(inf) = inf, NaN stays
  return x_in > T(0) ? finite_or_nan : (x_in == T(0) ? -inf : splat<V>(T(__builtin_nan(""))));
}

// The LSTM gate functions on whole vectors, in the forms of lstm_cell_pointwise above:
// sigmoid(v) = 1 / (1 + exp(-v)), tanh(v) = sign(v) (1 - exp(-2|v|)) / (1 + exp(-2|v|)); NaN stays NaN.
template <typename V>
MF_INLINE V sigmoid(const V& v) {
  using T = Elem<V>;
  return T(1) / (T(1) + exp(-v));
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
