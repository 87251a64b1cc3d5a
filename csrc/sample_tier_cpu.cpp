// CPU sampler of one MelNet tier with cached state: the per-frame work and the per-element loop (every layer
// of the frequency-delayed stack, the head and the draw) in C++, no Python per element.
//
// Batch elements are independent, so each runs its whole tier in one thread (OpenMP over the batch); inside,
// plain loops over contiguous rows of the weights (small matrix-vector products at batch 1, where BLAS calls
// cost more than they save). The semantics are those of melnet_fast/ops/tier_sampling/reference.py.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <optional>
#include <vector>

#include "centralized_step_cpu.h"
#include "common.h"
#include "mixture_draw.h"
#include "sampler_layout.h"
#include "small_gemm.h"
#include "vec_math.h"

namespace melnet_fast {
namespace {

namespace sl = sampler_layout;

// The LSTM pointwise update of (h, c) [D] from pre-activation gates [4D] (overwritten by the activations).
template <typename T>
MF_INLINE void lstm_pointwise(T* gates, T* h, T* c, int64_t D, PointwiseScratch<T>& s) {
  lstm_cell_pointwise(gates, static_cast<const T*>(nullptr), gates, h, c, D, s);
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

// One of the three LSTMs of a time-delayed layer for the current frame: r = 0 the time LSTM (one step for
// every channel at once, state carried across frames), r = 1 / 2 the forward / backward frequency LSTM over
// the frame. Each reads ht [F, D] and writes its third of feats [F, 3D].
template <typename T>
struct TimeLayerArgs {
  const T *w_ih, *w_hh, *bias, *h0, *c0, *ht;
  T *t_h, *t_c, *gates, *sweep_h, *sweep_c, *feats;
  PointwiseScratch<T>* scratch;
  int64_t F, D;
};

template <typename T>
MF_INLINE void time_layer_lstm_impl(const TimeLayerArgs<T>& a, int64_t r) {
  const int64_t F = a.F, D = a.D, G = 4 * D;
  // Input terms of every channel first; only the recurrent term of the sweeps stays sequential.
  matmat(a.w_ih + r * G * D, a.ht, F, D, a.bias + r * G, G, D, a.gates, G);
  if (r == 0) {
    matmat(a.w_hh, a.t_h, F, D, static_cast<const T*>(nullptr), G, D, a.gates, G, true);
    for (int64_t j = 0; j < F; ++j) {
      T* h = a.t_h + j * D;
      lstm_pointwise(a.gates + j * G, h, a.t_c + j * D, D, *a.scratch);
      std::copy(h, h + D, a.feats + j * 3 * D);
    }
    return;
  }
  std::copy(a.h0 + r * D, a.h0 + (r + 1) * D, a.sweep_h);
  std::copy(a.c0 + r * D, a.c0 + (r + 1) * D, a.sweep_c);
  for (int64_t s = 0; s < F; ++s) {
    const int64_t j = r == 1 ? s : F - 1 - s;
    T* g = a.gates + j * G;
    matvec(a.w_hh + r * G * D, a.sweep_h, static_cast<const T*>(nullptr), G, D, g, true);
    lstm_pointwise(g, a.sweep_h, a.sweep_c, D, *a.scratch);
    std::copy(a.sweep_h, a.sweep_h + D, a.feats + j * 3 * D + r * D);
  }
}

MELNET_FAST_CPU_CLONES void time_layer_lstm(const TimeLayerArgs<float>& a, int64_t r) { time_layer_lstm_impl(a, r); }
MELNET_FAST_CPU_CLONES void time_layer_lstm(const TimeLayerArgs<double>& a, int64_t r) { time_layer_lstm_impl(a, r); }

template <typename T>
struct LayerW {
  const T *t_w_ih, *t_w_hh, *t_bias, *t_h0, *t_c0, *t_proj_w, *t_proj_b;
  const T *f_w_ih, *f_w_hh, *f_bias, *f_h0, *f_c0, *f_proj_w, *f_proj_b;
};

template <typename T>
__attribute__((always_inline)) inline void sample_one(int64_t b, const at::Tensor& x, const at::Tensor& cz_t,
                                                      const at::Tensor& cz_f, const at::Tensor& u,
                                                      const at::Tensor& eps, const std::vector<at::Tensor>& w,
                                                      int64_t L, int64_t K, double temperature, int64_t n_prime,
                                                      double x_min, double x_max, T* log_density,
                                                      CentralizedStep<T>* centralized, int64_t* length) {
  const int64_t T_ = x.size(1), F = x.size(2), D = cz_t.size(3);
  const int64_t G = 4 * D;
  T* xb = x.data_ptr<T>() + b * T_ * F;
  const T* czt = cz_t.data_ptr<T>() + b * T_ * F * D;
  const T* czf = cz_f.data_ptr<T>() + b * T_ * F * D;
  const T* ub = u.data_ptr<T>() + b * T_ * F;
  const T* eb = eps.data_ptr<T>() + b * T_ * F;
  const sl::Layout layout(L);
  auto ptr = [&](int64_t idx) { return w[idx].data_ptr<T>(); };
  const T* xt_w = ptr(layout.input(sl::kXtW));
  const T* xt_b = ptr(layout.input(sl::kXtB));
  const T* xf_w = ptr(layout.input(sl::kXfW));
  const T* xf_b = ptr(layout.input(sl::kXfB));
  std::vector<LayerW<T>> lw(L);
  for (int64_t l = 0; l < L; ++l) {
    auto lay = [&](sl::LayerEntry e) { return ptr(layout.layer(l, e)); };
    lw[l] = {lay(sl::kTWih),   lay(sl::kTWhh),   lay(sl::kTBias),  lay(sl::kTH0),   lay(sl::kTC0),
             lay(sl::kTProjW), lay(sl::kTProjB), lay(sl::kFWih),   lay(sl::kFWhh),  lay(sl::kFBias),
             lay(sl::kFH0),    lay(sl::kFC0),    lay(sl::kFProjW), lay(sl::kFProjB)};
  }
  const T* head_w = ptr(layout.head(sl::kHeadW));
  const T* head_b = ptr(layout.head(sl::kHeadB));

  // Caches: time LSTM (h, c) per layer and channel; the time-delayed stack's output per layer for this frame.
  std::vector<T> t_h(L * F * D), t_c(L * F * D), ht_layers(L * F * D), f_h(L * D), f_c(L * D);
  PointwiseScratch<T> scratch(4 * D);
  std::vector<PointwiseScratch<T>> scratch3(3, PointwiseScratch<T>(4 * D));
#ifdef _OPENMP
  // Only worth a fork/join per layer and frame when each LSTM has real work (measured: D = 8 loses, 64 wins).
  const bool inner_threads = !omp_in_parallel() && at::get_num_threads() > 1 && D >= 32;
#else
  const bool inner_threads = false;
#endif
  std::vector<T> ht(F * D), feats(F * 3 * D), fgates(3 * F * G), sweep_h(3 * D), sweep_c(3 * D), gates(G), hf(D),
      tmp(D), theta(3 * K);
  for (int64_t l = 0; l < L; ++l) {
    for (int64_t j = 0; j < F; ++j) {
      std::copy(lw[l].t_h0, lw[l].t_h0 + D, &t_h[(l * F + j) * D]);
      std::copy(lw[l].t_c0, lw[l].t_c0 + D, &t_c[(l * F + j) * D]);
    }
  }
  const T tau = static_cast<T>(temperature);
  const T lo = static_cast<T>(x_min), hi = static_cast<T>(x_max);
  T logd = 0;
  const std::vector<T> zeros(F, T(0));

  for (int64_t i = 0; i < T_; ++i) {
    // Time-delayed stack, layer 0: the previous frame (zeros before the first) plus conditioning.
    for (int64_t j = 0; j < F; ++j) {
      const T prev = i > 0 ? xb[(i - 1) * F + j] : T(0);
      for (int64_t d = 0; d < D; ++d) ht[j * D + d] = prev * xt_w[d] + xt_b[d] + czt[(i * F + j) * D + d];
    }
    for (int64_t l = 0; l < L; ++l) {
      const LayerW<T>& lay = lw[l];
      // The three LSTMs of the layer write disjoint thirds of feats. At batch 1 they run on two threads (the
      // outer loop over the batch is then serial); otherwise one after the other.
#pragma omp parallel for num_threads(2) schedule(static, 1) if (inner_threads)
      for (int64_t r = 0; r < 3; ++r) {
        // A call, not inline code: the body of an OpenMP loop is outlined without the target clone's ISA.
        time_layer_lstm(TimeLayerArgs<T>{lay.t_w_ih, lay.t_w_hh, lay.t_bias, lay.t_h0, lay.t_c0, ht.data(),
                                         &t_h[l * F * D], &t_c[l * F * D], &fgates[r * F * G], &sweep_h[r * D],
                                         &sweep_c[r * D], feats.data(), &scratch3[r], F, D},
                        r);
      }
      // Projection and residual.
      matmat(lay.t_proj_w, feats.data(), F, 3 * D, lay.t_proj_b, D, 3 * D, ht.data(), D, true);
      std::copy(ht.begin(), ht.end(), &ht_layers[l * F * D]);
    }
    if (centralized != nullptr) {  // the per-frame step of a text model: its terms join ht_layers; it may stop
      if (!centralized->frame(i, i > 0 ? xb + (i - 1) * F : zeros.data(), ht_layers.data())) {
        *length = i;
        break;
      }
    }
    if (i < n_prime) continue;  // primed frame: only the time-delayed caches advance

    // Frequency-delayed stack, channel by channel; its state restarts at every frame.
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
      const Drawn<T> dr = draw_mixture(theta.data(), static_cast<int>(K), tau, ub[i * F + j], eb[i * F + j], lo, hi);
      xb[i * F + j] = dr.value;
      logd += dr.log_density;
    }
  }
  *log_density = logd;
  std::fill(xb + *length * F, xb + T_ * F, T(0));  // frames after a stop are zeros
}

#define MELNET_FAST_SAMPLE_ONE(NAME, T)                                                                              \
  MELNET_FAST_CPU_CLONES void NAME(int64_t b, const at::Tensor& x, const at::Tensor& cz_t, const at::Tensor& cz_f,   \
                                   const at::Tensor& u, const at::Tensor& eps, const std::vector<at::Tensor>& w,     \
                                   int64_t L, int64_t K, double temperature, int64_t n_prime, double x_min,          \
                                   double x_max, T* log_density, CentralizedStep<T>* centralized, int64_t* length) { \
    sample_one<T>(b, x, cz_t, cz_f, u, eps, w, L, K, temperature, n_prime, x_min, x_max, log_density, centralized,   \
                  length);                                                                                           \
  }
MELNET_FAST_SAMPLE_ONE(sample_one_dispatch, float)
MELNET_FAST_SAMPLE_ONE(sample_one_dispatch, double)

// Both ops: `centralized` is null for a tier without a centralized stack. Returns (x, log_density, alignment
// [B, T, U] (U = 0 without text), lengths [B]).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> sample(const at::Tensor& x_init, const at::Tensor& cz_t_in,
                                                                  const at::Tensor& cz_f_in, const at::Tensor& u_in,
                                                                  const at::Tensor& eps_in, at::TensorList weights_in,
                                                                  int64_t n_layers, int64_t n_mixtures,
                                                                  double temperature, int64_t n_prime, double x_min,
                                                                  double x_max, const CentralizedInputs* centralized) {
  const sl::Layout layout(n_layers);
  TORCH_CHECK(static_cast<int64_t>(weights_in.size()) == layout.size(), "sample_tier: expected ", layout.size(),
              " weight tensors, got ", weights_in.size());
  const int64_t B = x_init.size(0), T_ = x_init.size(1);
  auto x = new_output(x_init.sizes(), x_init.options());
  x.copy_(x_init);
  const auto cz_t = cz_t_in.contiguous();
  const auto cz_f = cz_f_in.contiguous();
  const auto u = u_in.contiguous();
  const auto eps = eps_in.contiguous();
  // Matrices are transposed once here (the last two dimensions) so that the kernels read them as axpys.
  std::vector<at::Tensor> w;
  for (int64_t idx = 0; idx < layout.size(); ++idx) {
    const auto& t = weights_in[idx];
    w.push_back(layout.entry(idx).kind == sl::kMatrix ? t.transpose(-1, -2).contiguous() : t.contiguous());
  }
  auto log_density = new_output({B}, x_init.options());
  const int64_t U = centralized != nullptr ? centralized->U : 0;
  auto alignment = at::zeros({B, T_, U}, x_init.options());
  auto lengths = at::full({B}, T_, x_init.options().dtype(at::kLong));
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "sample_tier_cpu", [&] {
    scalar_t* ld = log_density.data_ptr<scalar_t>();
    int64_t* len = lengths.data_ptr<int64_t>();
    at::parallel_for(0, B, 1, [&](int64_t lo, int64_t hi) {
      for (int64_t b = lo; b < hi; ++b) {
        std::optional<CentralizedStep<scalar_t>> step;
        if (centralized != nullptr) step.emplace(*centralized, b, alignment.data_ptr<scalar_t>() + b * T_ * U, n_prime);
        sample_one_dispatch(b, x, cz_t, cz_f, u, eps, w, n_layers, n_mixtures, temperature, n_prime, x_min, x_max,
                            ld + b, step ? &*step : nullptr, len + b);
      }
    });
  });
  return {x, log_density, alignment, lengths};
}

std::tuple<at::Tensor, at::Tensor> sample_tier_cpu(const at::Tensor& x_init, const at::Tensor& cz_t,
                                                   const at::Tensor& cz_f, const at::Tensor& u, const at::Tensor& eps,
                                                   at::TensorList weights, int64_t n_layers, int64_t n_mixtures,
                                                   double temperature, int64_t n_prime, double x_min, double x_max) {
  auto out =
      sample(x_init, cz_t, cz_f, u, eps, weights, n_layers, n_mixtures, temperature, n_prime, x_min, x_max, nullptr);
  return {std::get<0>(out), std::get<1>(out)};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> sample_tier_centralized_cpu(
    const at::Tensor& x_init, const at::Tensor& cz_t, const at::Tensor& cz_f, const at::Tensor& u,
    const at::Tensor& eps, at::TensorList weights, int64_t n_layers, int64_t n_mixtures, double temperature,
    int64_t n_prime, double x_min, double x_max, at::TensorList centralized_weights, int64_t attention_layer,
    const std::optional<at::Tensor>& memory, const std::optional<at::Tensor>& text_lengths,
    std::optional<double> stop_threshold) {
  const auto centralized = CentralizedInputs::prepare(centralized_weights, n_layers, attention_layer, memory,
                                                      text_lengths, stop_threshold, x_init);
  return sample(x_init, cz_t, cz_f, u, eps, weights, n_layers, n_mixtures, temperature, n_prime, x_min, x_max,
                &centralized);
}

}  // namespace

TORCH_LIBRARY_IMPL(melnet_fast, CPU, m) {
  m.impl("sample_tier", &sample_tier_cpu);
  m.impl("sample_tier_centralized", &sample_tier_centralized_cpu);
}

}  // namespace melnet_fast
