// Fused CPU Gaussian-mixture NLL: forward, and a backward that recomputes the posteriors in the same pass
// that writes all four gradients (nothing but the inputs is kept between the two).
//
// Elements go in groups of one vector (16 floats / 8 doubles with AVX-512, 8 / 4 with AVX2, 4 / 2 otherwise):
// the group's [n, K] parameters are transposed (in-register tiles) into K rows of one vector each, so every
// exp / log and every sum or max over components is a vector operation across the group's elements (simd:: in
// vec_math.h). Per element and component: three exps (softmax, 1 / sigma, posterior), each computed once; one
// log per element in the forward, none in the backward. The element loops are compiled for AVX-512, AVX2 and
// the baseline, each at its own vector width, and simd::cpu_level() picks one at run time.
//
// With d_k = logit_k - max logit, b_k = d_k - z_k^2 / 2 - log_sigma_k and z_k = (x - mu_k) exp(-log_sigma_k):
//   nll = -(logsumexp_k b_k - logsumexp_k d_k - log sqrt(2 pi))
//       = log sqrt(2 pi) - max b - log(sum_k e^(b_k - max b) / sum_k e^(d_k))
// posterior w_k = e^(b_k - max b) / sum e^(b - max b), pi_k = e^(d_k) / sum e^d, and the gradients (times g):
//   d/dx = sum_k w_k z_k / sigma_k, d/dmu_k = -w_k z_k / sigma_k, d/dlog_sigma_k = w_k (1 - z_k^2),
//   d/dlogit_k = pi_k - w_k.
// Subtracting the maxima keeps every exp argument <= 0 (logits 1e4 apart, z^2 up to 1e30 stay finite); a weight
// that underflows to exactly 0 zeroes its z terms, so an infinite z never meets a zero weight (0 * inf).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "common.h"
#include "vec_math.h"

// 32 / 64-byte vectors are passed between functions that are always inlined: no call with that ABI exists.
#pragma GCC diagnostic ignored "-Wpsabi"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace melnet_fast {
namespace {

template <typename T>
struct GmmPointers {
  const T* x;
  const T* mu;
  const T* ls;
  const T* logit;
  const T* grad;  // backward only
  T* nll;         // forward only
  T* gx;          // backward only, with gmu, gls, glogit
  T* gmu;
  T* gls;
  T* glogit;
  int64_t M, K;
};

// Two-source shuffle with constant lane indices (GCC's __builtin_shuffle; clang spells it differently; the
// clang branch is untested).
#if defined(__clang__)
#define MF_SHUFFLE(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else
#define MF_SHUFFLE(a, b, ...) __builtin_shuffle(a, b, I{__VA_ARGS__})
#endif

// In-register transpose of an N x N tile, N = lanes of Vt (8 x 8 float or 4 x 4 double in 32-byte vectors,
// 4 x 4 float or 2 x 2 double in 16-byte ones): r[i][c] -> r[c][i]. The shuffles are the unpack / shufps /
// vperm2f128 patterns of AVX (and their SSE counterparts), which every target turns into single instructions.
template <typename Vt>
MF_INLINE void transpose_tile(Vt* r) {
  using T = simd::Elem<Vt>;
  using I = simd::IVec<T, sizeof(Vt)>;
  constexpr int N = simd::lanes<Vt>();
  if constexpr (N == 8) {
    Vt t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
      t[i] = MF_SHUFFLE(r[i], r[i + 1], 0, 8, 1, 9, 4, 12, 5, 13);
      t[i + 1] = MF_SHUFFLE(r[i], r[i + 1], 2, 10, 3, 11, 6, 14, 7, 15);
    }
    for (int i = 0; i < 8; i += 4)
      for (int h = 0; h < 2; ++h) {
        u[i + 2 * h] = MF_SHUFFLE(t[i + h], t[i + h + 2], 0, 1, 8, 9, 4, 5, 12, 13);
        u[i + 2 * h + 1] = MF_SHUFFLE(t[i + h], t[i + h + 2], 2, 3, 10, 11, 6, 7, 14, 15);
      }
    for (int c = 0; c < 4; ++c) {
      r[c] = MF_SHUFFLE(u[c], u[c + 4], 0, 1, 2, 3, 8, 9, 10, 11);
      r[c + 4] = MF_SHUFFLE(u[c], u[c + 4], 4, 5, 6, 7, 12, 13, 14, 15);
    }
  } else if constexpr (N == 4 && sizeof(Vt) == 32) {  // double: in-lane unpacks, then 128-bit halves
    const Vt t0 = MF_SHUFFLE(r[0], r[1], 0, 4, 2, 6), t1 = MF_SHUFFLE(r[0], r[1], 1, 5, 3, 7);
    const Vt t2 = MF_SHUFFLE(r[2], r[3], 0, 4, 2, 6), t3 = MF_SHUFFLE(r[2], r[3], 1, 5, 3, 7);
    r[0] = MF_SHUFFLE(t0, t2, 0, 1, 4, 5);
    r[1] = MF_SHUFFLE(t1, t3, 0, 1, 4, 5);
    r[2] = MF_SHUFFLE(t0, t2, 2, 3, 6, 7);
    r[3] = MF_SHUFFLE(t1, t3, 2, 3, 6, 7);
  } else if constexpr (N == 4) {
    const Vt t0 = MF_SHUFFLE(r[0], r[1], 0, 4, 1, 5), t1 = MF_SHUFFLE(r[0], r[1], 2, 6, 3, 7);
    const Vt t2 = MF_SHUFFLE(r[2], r[3], 0, 4, 1, 5), t3 = MF_SHUFFLE(r[2], r[3], 2, 6, 3, 7);
    r[0] = MF_SHUFFLE(t0, t2, 0, 1, 4, 5);
    r[1] = MF_SHUFFLE(t0, t2, 2, 3, 6, 7);
    r[2] = MF_SHUFFLE(t1, t3, 0, 1, 4, 5);
    r[3] = MF_SHUFFLE(t1, t3, 2, 3, 6, 7);
  } else {
    static_assert(N == 2, "tile of 2, 4 or 8 lanes");
    const Vt c0 = MF_SHUFFLE(r[0], r[1], 0, 2);
    r[1] = MF_SHUFFLE(r[0], r[1], 1, 3);
    r[0] = c0;
  }
}

// Tiles of at most 32 bytes: 8 x 8 floats cover K = 10 in two (overlapping) column tiles.
template <typename T, int B>
using Tile = simd::Vec<T, (B < 32 ? B : 32)>;

// rows [K][W] <- src [n][K] (n <= W elements), lanes past n filled with `pad`. A full group with K >= N goes
// through N x N tiles: column tiles at 0, N, 2N, ... and a last one at K - N that overlaps the one before.
template <int B, typename T>
MF_INLINE void to_rows(const T* src, int64_t K, int64_t n, T* rows, T pad) {
  using Vt = Tile<T, B>;
  constexpr int W = B / sizeof(T), N = simd::lanes<Vt>();
  if (n == W && K >= N) {
    for (int j0 = 0; j0 < W; j0 += N)
      for (int64_t k0 = 0; k0 < K; k0 += N) {
        const int64_t kt = std::min<int64_t>(k0, K - N);
        Vt r[N];
        for (int i = 0; i < N; ++i) r[i] = simd::load<Vt>(src + (j0 + i) * K + kt);
        transpose_tile(r);
        for (int c = 0; c < N; ++c) simd::store(rows + (kt + c) * W + j0, r[c]);
      }
  } else {
    for (int64_t k = 0; k < K; ++k)
      for (int j = 0; j < W; ++j) rows[k * W + j] = j < n ? src[j * K + k] : pad;
  }
}

// dst [n][K] <- rows [K][W] (the first n lanes); tiles as in to_rows.
template <int B, typename T>
MF_INLINE void from_rows(const T* rows, int64_t K, int64_t n, T* dst) {
  using Vt = Tile<T, B>;
  constexpr int W = B / sizeof(T), N = simd::lanes<Vt>();
  if (n == W && K >= N) {
    for (int j0 = 0; j0 < W; j0 += N)
      for (int64_t k0 = 0; k0 < K; k0 += N) {
        const int64_t kt = std::min<int64_t>(k0, K - N);
        Vt r[N];
        for (int c = 0; c < N; ++c) r[c] = simd::load<Vt>(rows + (kt + c) * W + j0);
        transpose_tile(r);
        for (int i = 0; i < N; ++i) simd::store(dst + (j0 + i) * K + kt, r[i]);
      }
  } else {
    for (int64_t j = 0; j < n; ++j)
      for (int64_t k = 0; k < K; ++k) dst[j * K + k] = rows[k * W + j];
  }
}

template <typename V>
MF_INLINE V load_part(const simd::Elem<V>* p, int64_t n, simd::Elem<V> pad) {
  constexpr int W = simd::lanes<V>();
  if (n == W) return simd::load<V>(p);
  simd::Elem<V> tmp[W];
  for (int j = 0; j < W; ++j) tmp[j] = j < n ? p[j] : pad;
  return simd::load<V>(tmp);
}

template <typename V>
MF_INLINE void store_part(simd::Elem<V>* p, const V& v, int64_t n) {
  constexpr int W = simd::lanes<V>();
  if (n == W) return simd::store(p, v);
  simd::Elem<V> tmp[W];
  simd::store(tmp, v);
  for (int64_t j = 0; j < n; ++j) p[j] = tmp[j];
}

// The shared part of forward and backward for one group of n <= W elements starting at e0. On return:
// L[k] = e^(d_k), S[k] = 1 / sigma_k, U[k] = z_k, B[k] = e^(b_k - max b) (rows of W), and
// sum_k e^(d_k), max_k b_k, sum_k e^(b_k - max b) in se, bmax, sa.
template <typename V>
MF_INLINE void mixture_rows(const GmmPointers<simd::Elem<V>>& p, int64_t e0, int64_t n, simd::Elem<V>* L,
                            simd::Elem<V>* S, simd::Elem<V>* U, simd::Elem<V>* B, V& se, V& bmax, V& sa) {
  using T = simd::Elem<V>;
  constexpr int W = simd::lanes<V>();
  const int64_t K = p.K;
  to_rows<sizeof(V)>(p.logit + e0 * K, K, n, L, T(0));
  to_rows<sizeof(V)>(p.ls + e0 * K, K, n, S, T(0));
  to_rows<sizeof(V)>(p.mu + e0 * K, K, n, U, T(0));
  const V x = load_part<V>(p.x + e0, n, T(0));
  V mx = simd::load<V>(L);
  for (int64_t k = 1; k < K; ++k) mx = simd::vmax(mx, simd::load<V>(L + k * W));
  se = simd::splat<V>(T(0));
  bmax = simd::splat<V>(-std::numeric_limits<T>::infinity());
  for (int64_t k = 0; k < K; ++k) {
    const V d = simd::load<V>(L + k * W) - mx;
    const V ls = simd::load<V>(S + k * W);
    const V inv_s = simd::exp(-ls);
    const V z = (x - simd::load<V>(U + k * W)) * inv_s;
    const V b = d - T(0.5) * z * z - ls;
    const V e = simd::exp(d);
    se += e;
    bmax = simd::vmax(bmax, b);
    simd::store(L + k * W, e);
    simd::store(S + k * W, inv_s);
    simd::store(U + k * W, z);
    simd::store(B + k * W, b);
  }
  sa = simd::splat<V>(T(0));
  for (int64_t k = 0; k < K; ++k) {
    const V q = simd::exp(simd::load<V>(B + k * W) - bmax);
    sa += q;
    simd::store(B + k * W, q);
  }
}

// Elements [e0, e1) in groups of one vector (W elements).
template <typename V>
MF_INLINE void fwd_elements(const GmmPointers<simd::Elem<V>>& p, int64_t e0, int64_t e1) {
  using T = simd::Elem<V>;
  constexpr int W = simd::lanes<V>();
  const int64_t K = p.K;
  std::vector<T> buf(4 * K * W);
  T* L = buf.data();
  T* S = L + K * W;
  T* U = S + K * W;
  T* B = U + K * W;
  for (int64_t e = e0; e < e1; e += W) {
    const int64_t n = std::min<int64_t>(W, e1 - e);
    V se, bmax, sa;
    mixture_rows(p, e, n, L, S, U, B, se, bmax, sa);
    const V nll = (T(math::kLogSqrt2Pi) - bmax) - simd::log(sa / se);
    // every component has density 0 (max b = -inf): nll = +inf, not inf - inf
    store_part(p.nll + e, bmax > -std::numeric_limits<T>::infinity() ? nll : -bmax, n);
  }
}

template <typename V>
MF_INLINE void bwd_elements(const GmmPointers<simd::Elem<V>>& p, int64_t e0, int64_t e1) {
  using T = simd::Elem<V>;
  constexpr int W = simd::lanes<V>();
  const int64_t K = p.K;
  std::vector<T> buf(4 * K * W);
  T* L = buf.data();
  T* S = L + K * W;
  T* U = S + K * W;
  T* B = U + K * W;
  const V zero = simd::splat<V>(T(0));
  for (int64_t e = e0; e < e1; e += W) {
    const int64_t n = std::min<int64_t>(W, e1 - e);
    V se, bmax, sa;
    mixture_rows(p, e, n, L, S, U, B, se, bmax, sa);
    const V gr = load_part<V>(p.grad + e, n, T(0));
    const V g_sa = gr / sa, g_se = gr / se;
    V dx = zero;
    for (int64_t k = 0; k < K; ++k) {
      const V q = simd::load<V>(B + k * W);
      const V z = simd::load<V>(U + k * W);
      const V inv_s = simd::load<V>(S + k * W);
      const V gw = q * g_sa;  // g w_k
      const V dz = q != zero ? gw * z * inv_s : zero;
      dx += dz;
      simd::store(U + k * W, -dz);                                           // d/dmu
      simd::store(S + k * W, q != zero ? gw * (T(1) - z * z) : zero);       // d/dlog_sigma
      simd::store(L + k * W, simd::load<V>(L + k * W) * g_se - gw);         // d/dlogit = g (pi - w)
    }
    store_part(p.gx + e, dx, n);
    from_rows<sizeof(V)>(U, K, n, p.gmu + e * K);
    from_rows<sizeof(V)>(S, K, n, p.gls + e * K);
    from_rows<sizeof(V)>(L, K, n, p.glogit + e * K);
  }
}

// The element loops at the vector width of each target (see vec_math.h), chosen at run time.
template <typename T>
MELNET_FAST_TARGET_V4 void fwd_v4(const GmmPointers<T>& p, int64_t e0, int64_t e1) {
  fwd_elements<simd::Vec<T, 64>>(p, e0, e1);
}
template <typename T>
MELNET_FAST_TARGET_V3 void fwd_v3(const GmmPointers<T>& p, int64_t e0, int64_t e1) {
  fwd_elements<simd::Vec<T, 32>>(p, e0, e1);
}
template <typename T>
void fwd_base(const GmmPointers<T>& p, int64_t e0, int64_t e1) {
  fwd_elements<simd::Vec<T, 16>>(p, e0, e1);
}
template <typename T>
MELNET_FAST_TARGET_V4 void bwd_v4(const GmmPointers<T>& p, int64_t e0, int64_t e1) {
  bwd_elements<simd::Vec<T, 64>>(p, e0, e1);
}
template <typename T>
MELNET_FAST_TARGET_V3 void bwd_v3(const GmmPointers<T>& p, int64_t e0, int64_t e1) {
  bwd_elements<simd::Vec<T, 32>>(p, e0, e1);
}
template <typename T>
void bwd_base(const GmmPointers<T>& p, int64_t e0, int64_t e1) {
  bwd_elements<simd::Vec<T, 16>>(p, e0, e1);
}

// Runs fn(p, e0, e1) over all elements in parallel chunks of about 1024, each a multiple of 64 elements (whole
// vectors at every width) except the last.
template <typename T>
void run_parallel(const GmmPointers<T>& p, void (*fn)(const GmmPointers<T>&, int64_t, int64_t)) {
  constexpr int64_t kBlock = 64;
  at::parallel_for(0, (p.M + kBlock - 1) / kBlock, 16,
                   [&](int64_t b0, int64_t b1) { fn(p, b0 * kBlock, std::min(b1 * kBlock, p.M)); });
}

template <typename T>
void run_fwd(const GmmPointers<T>& p) {
  run_parallel(p, simd::for_level(&fwd_v4<T>, &fwd_v3<T>, &fwd_base<T>));
}

template <typename T>
void run_bwd(const GmmPointers<T>& p) {
  run_parallel(p, simd::for_level(&bwd_v4<T>, &bwd_v3<T>, &bwd_base<T>));
}

at::Tensor gmm_nll_fwd_cpu(const at::Tensor& x_in, const at::Tensor& mu_in, const at::Tensor& ls_in,
                           const at::Tensor& lp_in) {
  const auto x = x_in.contiguous();
  const auto mu = mu_in.contiguous();
  const auto ls = ls_in.contiguous();
  const auto logit = lp_in.contiguous();
  const int64_t K = mu.size(-1);
  const int64_t M = x.numel();
  auto out = new_output(x.sizes(), x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "gmm_nll_fwd_cpu", [&] {
    GmmPointers<scalar_t> p{x.data_ptr<scalar_t>(),
                            mu.data_ptr<scalar_t>(),
                            ls.data_ptr<scalar_t>(),
                            logit.data_ptr<scalar_t>(),
                            nullptr,
                            out.data_ptr<scalar_t>(),
                            nullptr,
                            nullptr,
                            nullptr,
                            nullptr,
                            M,
                            K};
    run_fwd(p);
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> gmm_nll_bwd_cpu(const at::Tensor& grad_in,
                                                                           const at::Tensor& x_in,
                                                                           const at::Tensor& mu_in,
                                                                           const at::Tensor& ls_in,
                                                                           const at::Tensor& lp_in) {
  const auto grad = grad_in.contiguous();
  const auto x = x_in.contiguous();
  const auto mu = mu_in.contiguous();
  const auto ls = ls_in.contiguous();
  const auto logit = lp_in.contiguous();
  const int64_t K = mu.size(-1);
  const int64_t M = x.numel();
  auto gx = new_output(x.sizes(), x.options());
  auto gmu = new_output(mu.sizes(), x.options());
  auto gls = new_output(mu.sizes(), x.options());
  auto glp = new_output(mu.sizes(), x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "gmm_nll_bwd_cpu", [&] {
    GmmPointers<scalar_t> p{x.data_ptr<scalar_t>(),
                            mu.data_ptr<scalar_t>(),
                            ls.data_ptr<scalar_t>(),
                            logit.data_ptr<scalar_t>(),
                            grad.data_ptr<scalar_t>(),
                            nullptr,
                            gx.data_ptr<scalar_t>(),
                            gmu.data_ptr<scalar_t>(),
                            gls.data_ptr<scalar_t>(),
                            glp.data_ptr<scalar_t>(),
                            M,
                            K};
    run_bwd(p);
  });
  return {gx, gmu, gls, glp};
}

}  // namespace

TORCH_LIBRARY_IMPL(melnet_fast, CPU, m) {
  m.impl("gmm_nll_fwd", &gmm_nll_fwd_cpu);
  m.impl("gmm_nll_bwd", &gmm_nll_bwd_cpu);
}

}  // namespace melnet_fast
