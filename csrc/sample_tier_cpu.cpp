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
constexpr double kLogSqrt2Pi = 0.91893853320467274178;

template <typename T>
inline T sigmoid(T v) {
  return T(1) / (T(1) + std::exp(-v));
}

// out[r] = b[r] + sum_k w[r, k] * v[k] for r < rows (w row-major [rows, n]); accumulates into out when add.
template <typename T>
inline void matvec(const T* w, const T* v, const T* b, int64_t rows, int64_t n, T* out, bool add = false) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* wr = w + r * n;
    T acc = 0;
#pragma omp simd reduction(+ : acc)
    for (int64_t k = 0; k < n; ++k) acc += wr[k] * v[k];
    out[r] = (add ? out[r] : T(0)) + (b ? b[r] : T(0)) + acc;
  }
}

// One LSTM cell step in place on (h, c) [D]; gates [4D] is scratch. Gates (i, f, g, o) as nn.LSTM.
template <typename T>
inline void cell(const T* w_ih, const T* w_hh, const T* bias, const T* in, T* h, T* c, int64_t D, T* gates) {
  matvec(w_ih, in, bias, 4 * D, D, gates);
  matvec(w_hh, h, static_cast<const T*>(nullptr), 4 * D, D, gates, true);
  for (int64_t j = 0; j < D; ++j) {
    const T i = sigmoid(gates[j]), f = sigmoid(gates[D + j]), g = std::tanh(gates[2 * D + j]);
    const T o = sigmoid(gates[3 * D + j]);
    c[j] = f * c[j] + i * g;
    h[j] = o * std::tanh(c[j]);
  }
}

template <typename T>
struct LayerW {
  const T *t_w_ih, *t_w_hh, *t_bias, *t_h0, *t_c0, *t_proj_w, *t_proj_b;
  const T *f_w_ih, *f_w_hh, *f_bias, *f_h0, *f_c0, *f_proj_w, *f_proj_b;
};

template <typename T>
void sample_one(int64_t b, const at::Tensor& x, const at::Tensor& cz_t, const at::Tensor& cz_f,
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
  std::vector<T> ht(F * D), feats(F * 3 * D), fh(D), fc(D), gates(G), hf(D), tmp(D), theta(3 * K), probs(K);
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
      for (int64_t j = 0; j < F; ++j) {  // time LSTM: one step per channel
        T* h = &t_h[(l * F + j) * D];
        T* c = &t_c[(l * F + j) * D];
        cell(lay.t_w_ih, lay.t_w_hh, lay.t_bias, &ht[j * D], h, c, D, gates.data());
        std::copy(h, h + D, &feats[j * 3 * D]);
      }
      for (int64_t r = 1; r <= 2; ++r) {  // frequency LSTMs, forward (r=1) and backward (r=2), over the frame
        std::copy(lay.t_h0 + r * D, lay.t_h0 + (r + 1) * D, fh.begin());
        std::copy(lay.t_c0 + r * D, lay.t_c0 + (r + 1) * D, fc.begin());
        for (int64_t s = 0; s < F; ++s) {
          const int64_t j = r == 1 ? s : F - 1 - s;
          cell(lay.t_w_ih + r * G * D, lay.t_w_hh + r * G * D, lay.t_bias + r * G, &ht[j * D], fh.data(),
               fc.data(), D, gates.data());
          std::copy(fh.begin(), fh.end(), &feats[j * 3 * D + r * D]);
        }
      }
      for (int64_t j = 0; j < F; ++j) {  // projection and residual
        matvec(lay.t_proj_w, &feats[j * 3 * D], lay.t_proj_b, D, 3 * D, &ht[j * D], true);
      }
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
        cell(lay.f_w_ih, lay.f_w_hh, lay.f_bias, tmp.data(), &f_h[l * D], &f_c[l * D], D, gates.data());
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
  std::vector<at::Tensor> w;
  for (const auto& t : weights_in) w.push_back(t.contiguous());
  auto log_density = new_output({B}, x_init.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "sample_tier_cpu", [&] {
    scalar_t* ld = log_density.data_ptr<scalar_t>();
    at::parallel_for(0, B, 1, [&](int64_t lo, int64_t hi) {
      for (int64_t b = lo; b < hi; ++b) {
        sample_one<scalar_t>(b, x, cz_t, cz_f, u, eps, w, n_layers, n_mixtures, temperature, n_prime, ld + b);
      }
    });
  });
  return {x, log_density};
}

}  // namespace

TORCH_LIBRARY_IMPL(melnet_fast, CPU, m) { m.impl("sample_tier", &sample_tier_cpu); }

}  // namespace melnet_fast
