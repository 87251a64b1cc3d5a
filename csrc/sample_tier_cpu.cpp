// CPU sampler of one MelNet tier with cached state: the per-frame work and the per-element loop (every layer
// of the frequency-delayed stack, the head and the draw) in C++, no Python per element.
//
// Batch elements are independent, so each runs its whole tier in one thread (OpenMP over the batch); inside,
// plain loops over contiguous rows of the weights (small matrix-vector products at batch 1, where BLAS calls
// cost more than they save). The semantics are those of melnet_fast/ops/tier_sampling/naive.py.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <limits>
#include <vector>

#include "common.h"

namespace melnet_fast {
namespace {

constexpr int64_t kPerLayer = 14;

// Everything the per-element loop calls is forced inline so that it is compiled inside each target clone
// below (a call to a separate function would run its default, SSE2-only, code).
#define MF_INLINE __attribute__((always_inline)) inline
constexpr double kLogSqrt2Pi = 0.91893853320467274178;

// exp for the LSTM gates, in passes over arrays that vectorise (libm's expf / tanhf are scalar calls and were a
// third of the sampler's time): Cody-Waite reduction x = n ln2 + r with |r| <= ln2 / 2, a Taylor polynomial of
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
  explicit PointwiseScratch(int64_t D) : arg(4 * D), scale(4 * D), bits(4 * D) {}
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

// The LSTM pointwise update of (h, c) [D] from pre-activation gates [4D] (i, f, g, o):
// sigmoid(v) = 1 / (1 + exp(-v)), tanh(v) = sign(v) (1 - exp(-2|v|)) / (1 + exp(-2|v|)).
template <typename T>
MF_INLINE void lstm_pointwise(const T* gates, T* h, T* c, int64_t D, PointwiseScratch<T>& s) {
  T* e = s.arg.data();
#pragma omp simd
  for (int64_t j = 0; j < 4 * D; ++j) e[j] = (j >= 2 * D && j < 3 * D) ? T(-2) * std::abs(gates[j]) : -gates[j];
  exp_inplace(e, 4 * D, s);
#pragma omp simd
  for (int64_t j = 0; j < D; ++j) {
    const T i = T(1) / (T(1) + e[j]), f = T(1) / (T(1) + e[D + j]), o = T(1) / (T(1) + e[3 * D + j]);
    const T ga = (T(1) - e[2 * D + j]) / (T(1) + e[2 * D + j]);
    const T g = gates[2 * D + j] < T(0) ? -ga : ga;
    const T cn = f * c[j] + i * g;
    c[j] = cn;
    h[j] = o;  // finished below, once tanh(c) is known
    e[j] = T(-2) * std::abs(cn);
  }
  exp_inplace(e, D, s);
#pragma omp simd
  for (int64_t j = 0; j < D; ++j) {
    const T ta = (T(1) - e[j]) / (T(1) + e[j]);
    h[j] *= c[j] < T(0) ? -ta : ta;
  }
}

// A 64-byte vector of T (GCC vector extension): one zmm register in the AVX-512 clone, two ymm in the AVX2 one,
// four xmm in the default build, so the same source vectorises in every clone.
template <typename T>
struct Vec64 {
  typedef T type __attribute__((vector_size(64), aligned(sizeof(T))));
  static constexpr int lanes = 64 / sizeof(T);
};

// Register-blocked product over rows [r0, r0 + NV * lanes): acc[MB][NV] stays in vector registers across the
// whole k loop, so each weight vector is loaded once per MB inputs and no partial sum goes through memory.
template <typename T, int MB, int NV>
MF_INLINE void product_block(const T* wt, const T* V, int64_t ldv, int64_t rows, int64_t n, int64_t r0, T* out,
                             int64_t ldo) {
  using Vt = typename Vec64<T>::type;
  constexpr int W = Vec64<T>::lanes;
  Vt acc[MB][NV];
  for (int mm = 0; mm < MB; ++mm)
    for (int nv = 0; nv < NV; ++nv) __builtin_memcpy(&acc[mm][nv], out + mm * ldo + r0 + nv * W, sizeof(Vt));
  for (int64_t k = 0; k < n; ++k) {
    Vt w[NV];
    for (int nv = 0; nv < NV; ++nv) __builtin_memcpy(&w[nv], wt + k * rows + r0 + nv * W, sizeof(Vt));
    for (int mm = 0; mm < MB; ++mm) {
      const T v = V[mm * ldv + k];
      for (int nv = 0; nv < NV; ++nv) acc[mm][nv] += v * w[nv];
    }
  }
  for (int mm = 0; mm < MB; ++mm)
    for (int nv = 0; nv < NV; ++nv) __builtin_memcpy(out + mm * ldo + r0 + nv * W, &acc[mm][nv], sizeof(Vt));
}

// Rows [r0, rows) that do not fill a vector, in scalar code.
template <typename T>
MF_INLINE void product_tail(const T* wt, const T* V, int64_t M, int64_t ldv, int64_t rows, int64_t n, int64_t r0,
                            T* out, int64_t ldo) {
  for (int64_t m = 0; m < M; ++m)
    for (int64_t r = r0; r < rows; ++r) {
      T acc = out[m * ldo + r];
      for (int64_t k = 0; k < n; ++k) acc += V[m * ldv + k] * wt[k * rows + r];
      out[m * ldo + r] = acc;
    }
}

// OUT[m, r] (+)= b[r] + sum_k wt[k, r] * V[m, k] for M vectors (leading dimensions ldv, ldo), from the
// transposed weights wt [n, rows]; accumulates into OUT when add.
template <typename T>
MF_INLINE void matmat(const T* wt, const T* V, int64_t M, int64_t ldv, const T* b, int64_t rows, int64_t n, T* out,
                      int64_t ldo, bool add = false) {
  for (int64_t m = 0; m < M; ++m) {
    T* o = out + m * ldo;
    if (!add) std::fill(o, o + rows, T(0));
    if (b) {
      for (int64_t r = 0; r < rows; ++r) o[r] += b[r];
    }
  }
  constexpr int W = Vec64<T>::lanes;
  const int64_t r_vec = rows - rows % W;  // rows covered by whole vectors
  int64_t m = 0;
  for (; m + 4 <= M; m += 4) {  // four inputs x two vectors of rows: eight independent accumulators
    int64_t r0 = 0;
    for (; r0 + 2 * W <= rows; r0 += 2 * W) product_block<T, 4, 2>(wt, V + m * ldv, ldv, rows, n, r0, out + m * ldo, ldo);
    for (; r0 + W <= rows; r0 += W) product_block<T, 4, 1>(wt, V + m * ldv, ldv, rows, n, r0, out + m * ldo, ldo);
  }
  for (; m < M; ++m) {  // one input x four vectors of rows, so that the FMA chains overlap
    int64_t r0 = 0;
    for (; r0 + 4 * W <= rows; r0 += 4 * W) product_block<T, 1, 4>(wt, V + m * ldv, ldv, rows, n, r0, out + m * ldo, ldo);
    for (; r0 + W <= rows; r0 += W) product_block<T, 1, 1>(wt, V + m * ldv, ldv, rows, n, r0, out + m * ldo, ldo);
  }
  if (r_vec < rows) product_tail(wt, V, M, ldv, rows, n, r_vec, out, ldo);
}

// out[r] (+)= b[r] + sum_k w[r, k] * v[k]: one vector.
template <typename T>
MF_INLINE void matvec(const T* wt, const T* v, const T* b, int64_t rows, int64_t n, T* out, bool add = false) {
  matmat(wt, v, 1, n, b, rows, n, out, rows, add);
}

// One LSTM cell step in place on (h, c) [D]; gates [4D] is scratch. Gates (i, f, g, o) as nn.LSTM; the
// weights come transposed ([D, 4D]).
template <typename T>
MF_INLINE void cell(const T* w_ih, const T* w_hh, const T* bias, const T* in, T* h, T* c, int64_t D, T* gates,
                    PointwiseScratch<T>& scratch) {
  matvec(w_ih, in, bias, 4 * D, D, gates);
  matvec(w_hh, h, static_cast<const T*>(nullptr), 4 * D, D, gates, true);
  lstm_pointwise(gates, h, c, D, scratch);
}

template <typename T>
struct LayerW {
  const T *t_w_ih, *t_w_hh, *t_bias, *t_h0, *t_c0, *t_proj_w, *t_proj_b;
  const T *f_w_ih, *f_w_hh, *f_bias, *f_h0, *f_c0, *f_proj_w, *f_proj_b;
};

template <typename T>
__attribute__((always_inline)) inline void sample_one(int64_t b, const at::Tensor& x, const at::Tensor& cz_t, const at::Tensor& cz_f,
                const at::Tensor& u, const at::Tensor& eps, const std::vector<at::Tensor>& w, int64_t L, int64_t K,
                double temperature, int64_t n_prime, T* log_density) {
  const int64_t T_ = x.size(1), F = x.size(2), D = cz_t.size(3);
  const int64_t G = 4 * D;
  T* xb = x.data_ptr<T>() + b * T_ * F;
  const T* czt = cz_t.data_ptr<T>() + b * T_ * F * D;
  const T* czf = cz_f.data_ptr<T>() + b * T_ * F * D;
  const T* ub = u.data_ptr<T>() + b * T_ * F;
  const T* eb = eps.data_ptr<T>() + b * T_ * F;
  const T* xt_w = w[0].data_ptr<T>();
  const T* xt_b = w[1].data_ptr<T>();
  const T* xf_w = w[2].data_ptr<T>();
  const T* xf_b = w[3].data_ptr<T>();
  std::vector<LayerW<T>> lw(L);
  for (int64_t l = 0; l < L; ++l) {
    const at::Tensor* p = &w[4 + kPerLayer * l];
    lw[l] = {p[0].data_ptr<T>(), p[1].data_ptr<T>(), p[2].data_ptr<T>(),  p[3].data_ptr<T>(),  p[4].data_ptr<T>(),
             p[5].data_ptr<T>(), p[6].data_ptr<T>(), p[7].data_ptr<T>(),  p[8].data_ptr<T>(),  p[9].data_ptr<T>(),
             p[10].data_ptr<T>(), p[11].data_ptr<T>(), p[12].data_ptr<T>(), p[13].data_ptr<T>()};
  }
  const T* head_w = w[4 + kPerLayer * L].data_ptr<T>();
  const T* head_b = w[5 + kPerLayer * L].data_ptr<T>();

  // Caches: time LSTM (h, c) per layer and channel; the time-delayed stack's output per layer for this frame.
  std::vector<T> t_h(L * F * D), t_c(L * F * D), ht_layers(L * F * D);
  PointwiseScratch<T> scratch(D);
  std::vector<T> ht(F * D), feats(F * 3 * D), fgates(F * G), fh(D), fc(D), gates(G), hf(D), tmp(D), theta(3 * K), probs(K);
  for (int64_t l = 0; l < L; ++l) {
    for (int64_t j = 0; j < F; ++j) {
      std::copy(lw[l].t_h0, lw[l].t_h0 + D, &t_h[(l * F + j) * D]);
      std::copy(lw[l].t_c0, lw[l].t_c0 + D, &t_c[(l * F + j) * D]);
    }
  }
  const T tau = static_cast<T>(temperature);
  T logd = 0;

  for (int64_t i = 0; i < T_; ++i) {
    // Time-delayed stack, layer 0: the previous frame (zeros before the first) plus conditioning.
    for (int64_t j = 0; j < F; ++j) {
      const T prev = i > 0 ? xb[(i - 1) * F + j] : T(0);
      for (int64_t d = 0; d < D; ++d) ht[j * D + d] = prev * xt_w[d] + xt_b[d] + czt[(i * F + j) * D + d];
    }
    for (int64_t l = 0; l < L; ++l) {
      const LayerW<T>& lay = lw[l];
      // Time LSTM: one step for every channel at once.
      matmat(lay.t_w_ih, ht.data(), F, D, lay.t_bias, G, D, fgates.data(), G);
      matmat(lay.t_w_hh, &t_h[l * F * D], F, D, static_cast<const T*>(nullptr), G, D, fgates.data(), G, true);
      for (int64_t j = 0; j < F; ++j) {
        T* h = &t_h[(l * F + j) * D];
        lstm_pointwise(&fgates[j * G], h, &t_c[(l * F + j) * D], D, scratch);
        std::copy(h, h + D, &feats[j * 3 * D]);
      }
      for (int64_t r = 1; r <= 2; ++r) {  // frequency LSTMs, forward (r=1) and backward (r=2), over the frame
        // Input terms of the whole frame first; only the recurrent term stays in the sequential loop.
        matmat(lay.t_w_ih + r * G * D, ht.data(), F, D, lay.t_bias + r * G, G, D, fgates.data(), G);
        std::copy(lay.t_h0 + r * D, lay.t_h0 + (r + 1) * D, fh.begin());
        std::copy(lay.t_c0 + r * D, lay.t_c0 + (r + 1) * D, fc.begin());
        for (int64_t s = 0; s < F; ++s) {
          const int64_t j = r == 1 ? s : F - 1 - s;
          T* g = &fgates[j * G];
          matvec(lay.t_w_hh + r * G * D, fh.data(), static_cast<const T*>(nullptr), G, D, g, true);
          lstm_pointwise(g, fh.data(), fc.data(), D, scratch);
          std::copy(fh.begin(), fh.end(), &feats[j * 3 * D + r * D]);
        }
      }
      // Projection and residual.
      matmat(lay.t_proj_w, feats.data(), F, 3 * D, lay.t_proj_b, D, 3 * D, ht.data(), D, true);
      std::copy(ht.begin(), ht.end(), &ht_layers[l * F * D]);
    }
    if (i < n_prime) continue;  // primed frame: only the time-delayed caches advance

    // Frequency-delayed stack, channel by channel; its state restarts at every frame.
    std::vector<T> f_h(L * D), f_c(L * D);
    for (int64_t l = 0; l < L; ++l) {
      std::copy(lw[l].f_h0, lw[l].f_h0 + D, &f_h[l * D]);
      std::copy(lw[l].f_c0, lw[l].f_c0 + D, &f_c[l * D]);
    }
    for (int64_t j = 0; j < F; ++j) {
      const T prev = j > 0 ? xb[i * F + j - 1] : T(0);
      for (int64_t d = 0; d < D; ++d) hf[d] = prev * xf_w[d] + xf_b[d] + czf[(i * F + j) * D + d];
      for (int64_t l = 0; l < L; ++l) {
        const LayerW<T>& lay = lw[l];
        const T* htl = &ht_layers[(l * F + j) * D];
        for (int64_t d = 0; d < D; ++d) tmp[d] = hf[d] + htl[d];
        cell(lay.f_w_ih, lay.f_w_hh, lay.f_bias, tmp.data(), &f_h[l * D], &f_c[l * D], D, gates.data(), scratch);
        matvec(lay.f_proj_w, &f_h[l * D], lay.f_proj_b, D, D, hf.data(), true);
      }
      matvec(head_w, hf.data(), head_b, 3 * K, D, theta.data());
      const T* mu = theta.data();
      const T* ls = mu + K;
      const T* lp = mu + 2 * K;
      // Draw (the rule of gmm_sample_from_noise).
      int64_t k_sel = 0;
      T value;
      if (tau == T(0)) {
        for (int64_t k = 1; k < K; ++k)
          if (lp[k] > lp[k_sel]) k_sel = k;
        value = mu[k_sel];
      } else {
        T mx = -std::numeric_limits<T>::infinity();
        for (int64_t k = 0; k < K; ++k) mx = std::max(mx, lp[k] / tau);
        T sum = 0;
        for (int64_t k = 0; k < K; ++k) sum += (probs[k] = std::exp(lp[k] / tau - mx));
        T cdf = 0;
        const T uij = ub[i * F + j];
        int64_t below = 0;
        for (int64_t k = 0; k < K; ++k) {
          cdf += probs[k] / sum;
          below += cdf <= uij ? 1 : 0;
        }
        k_sel = std::min(below, K - 1);
        value = mu[k_sel] + tau * std::exp(ls[k_sel]) * eb[i * F + j];
      }
      xb[i * F + j] = value;
      // Log density of the drawn value under the untempered mixture.
      T lmx = -std::numeric_limits<T>::infinity();
      for (int64_t k = 0; k < K; ++k) lmx = std::max(lmx, lp[k]);
      T lse = 0;
      for (int64_t k = 0; k < K; ++k) lse += std::exp(lp[k] - lmx);
      lse = lmx + std::log(lse);
      T amax = -std::numeric_limits<T>::infinity();
      for (int64_t k = 0; k < K; ++k) {
        const T z = (value - mu[k]) * std::exp(-ls[k]);
        probs[k] = lp[k] - lse - T(0.5) * z * z - ls[k] - T(kLogSqrt2Pi);
        amax = std::max(amax, probs[k]);
      }
      T sa = 0;
      for (int64_t k = 0; k < K; ++k) sa += std::exp(probs[k] - amax);
      logd += amax + std::log(sa);
    }
  }
  *log_density = logd;
}

// The per-element loop is bound by vector width: compile it for AVX-512 and AVX2 as well and pick at load time
// (GCC function multi-versioning), so the package still runs on any x86-64.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define MELNET_FAST_CPU_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define MELNET_FAST_CPU_CLONES
#endif

#define MELNET_FAST_SAMPLE_ONE(NAME, T)                                                                          \
  MELNET_FAST_CPU_CLONES void NAME(int64_t b, const at::Tensor& x, const at::Tensor& cz_t, const at::Tensor& cz_f, \
                                   const at::Tensor& u, const at::Tensor& eps, const std::vector<at::Tensor>& w,   \
                                   int64_t L, int64_t K, double temperature, int64_t n_prime, T* log_density) {    \
    sample_one<T>(b, x, cz_t, cz_f, u, eps, w, L, K, temperature, n_prime, log_density);                        \
  }
MELNET_FAST_SAMPLE_ONE(sample_one_dispatch, float)
MELNET_FAST_SAMPLE_ONE(sample_one_dispatch, double)

std::tuple<at::Tensor, at::Tensor> sample_tier_cpu(const at::Tensor& x_init, const at::Tensor& cz_t_in,
                                                   const at::Tensor& cz_f_in, const at::Tensor& u_in,
                                                   const at::Tensor& eps_in, at::TensorList weights_in,
                                                   int64_t n_layers, int64_t n_mixtures, double temperature,
                                                   int64_t n_prime) {
  TORCH_CHECK(static_cast<int64_t>(weights_in.size()) == 6 + kPerLayer * n_layers,
              "sample_tier: expected ", 6 + kPerLayer * n_layers, " weight tensors, got ", weights_in.size());
  const int64_t B = x_init.size(0);
  auto x = new_output(x_init.sizes(), x_init.options());
  x.copy_(x_init);
  const auto cz_t = cz_t_in.contiguous();
  const auto cz_f = cz_f_in.contiguous();
  const auto u = u_in.contiguous();
  const auto eps = eps_in.contiguous();
  // Matrices are transposed once here (the last two dimensions) so that the kernels read them as axpys.
  std::vector<at::Tensor> w;
  for (int64_t idx = 0; idx < static_cast<int64_t>(weights_in.size()); ++idx) {
    const int64_t in_layer = (idx - 4) % kPerLayer;
    const bool is_layer = idx >= 4 && idx < 4 + kPerLayer * n_layers;
    const bool matrix = (is_layer && (in_layer == 0 || in_layer == 1 || in_layer == 5 || in_layer == 7 ||
                                      in_layer == 8 || in_layer == 12)) ||
                        idx == 4 + kPerLayer * n_layers;  // LSTM weights, projections, head
    const auto& t = weights_in[idx];
    w.push_back(matrix ? t.transpose(-1, -2).contiguous() : t.contiguous());
  }
  auto log_density = new_output({B}, x_init.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "sample_tier_cpu", [&] {
    scalar_t* ld = log_density.data_ptr<scalar_t>();
    at::parallel_for(0, B, 1, [&](int64_t lo, int64_t hi) {
      for (int64_t b = lo; b < hi; ++b) {
        sample_one_dispatch(b, x, cz_t, cz_f, u, eps, w, n_layers, n_mixtures, temperature, n_prime, ld + b);
      }
    });
  });
  return {x, log_density};
}

}  // namespace

TORCH_LIBRARY_IMPL(melnet_fast, CPU, m) { m.impl("sample_tier", &sample_tier_cpu); }

}  // namespace melnet_fast
