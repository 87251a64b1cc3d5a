// CPU sampler of one MelNet tier with cached state: the per-frame work and the per-element loop (every layer
// of the frequency-delayed stack, the head and the draw) in C++, no Python per element.
//
// Batch rows are independent: each thread samples one contiguous group of rows, all of them together, so that
// every per-element product is a register-blocked product over the group's rows (small_gemm.h: matmat) and each
// weight is loaded once for several rows; at batch 1 (one row) the time-delayed layer's three LSTMs run on two
// threads instead. The LSTM cell is the sweep's (lstm_cell_cpu.h). Compiled for AVX-512, AVX2 and the baseline, one
// wrapper per target, picked at run time by simd::cpu_level(). The semantics are those of
// melnet_fast/ops/tier_sampling/reference.py.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <memory>
#include <optional>
#include <vector>

#include "centralized_step_cpu.h"
#include "common.h"
#include "lstm_cell_cpu.h"
#include "mixture_draw.h"
#include "sampler_layout.h"
#include "small_gemm.h"
#include "vec_math.h"

namespace melnet_fast {
namespace {

namespace sl = sampler_layout;

// One of the three LSTMs of a time-delayed layer for the current frame of M batch rows: r = 0 the time LSTM (one
// step for every row and channel at once, state carried across frames; here its rows [n0, n1) of the M * F, which
// are independent), r = 1 / 2 the forward / backward frequency LSTM over the frame (the M rows' sweeps advance
// together, one product over the rows per step; n0, n1 unused). Each reads ht [M, F, D] and writes its third of
// feats [M, F, 3D].
template <typename T>
struct TimeLayerArgs {
  const T *w_ih, *w_hh, *bias, *h0, *c0, *ht;
  T *t_h, *t_c, *gates, *sweep_h, *sweep_c, *feats;  // t_h, t_c, gates: [M * F] rows; sweep_h, sweep_c: [M] rows
  int64_t M, F, D;
};

template <int VB, typename T>
MF_INLINE void time_layer_lstm(const TimeLayerArgs<T>& a, int64_t r, int64_t n0, int64_t n1) {
  const int64_t M = a.M, F = a.F, D = a.D, G = 4 * D, rows = M * F;
  if (r == 0) {
    matmat<VB>(a.w_ih, a.ht + n0 * D, n1 - n0, D, a.bias, G, D, a.gates + n0 * G, G);
    matmat<VB>(a.w_hh, a.t_h + n0 * D, n1 - n0, D, static_cast<const T*>(nullptr), G, D, a.gates + n0 * G, G, true);
    for (int64_t n = n0; n < n1; ++n)
      lstm_cell_fwd<VB>(a.gates + n * G, a.t_h + n * D, a.t_c + n * D, a.feats + n * 3 * D, static_cast<T*>(nullptr),
                        static_cast<T*>(nullptr), D);
    return;
  }
  // Input terms of every channel first; only the recurrent term of the sweep stays sequential.
  matmat<VB>(a.w_ih + r * G * D, a.ht, rows, D, a.bias + r * G, G, D, a.gates, G);
  for (int64_t m = 0; m < M; ++m) {
    std::copy(a.h0 + r * D, a.h0 + (r + 1) * D, a.sweep_h + m * D);
    std::copy(a.c0 + r * D, a.c0 + (r + 1) * D, a.sweep_c + m * D);
  }
  for (int64_t s = 0; s < F; ++s) {
    const int64_t j = r == 1 ? s : F - 1 - s;
    // Row m's gates of channel j sit at gates[(m * F + j) * G]: a product over the M rows with stride F * G.
    matmat<VB>(a.w_hh + r * G * D, a.sweep_h, M, D, static_cast<const T*>(nullptr), G, D, a.gates + j * G, F * G, true);
    for (int64_t m = 0; m < M; ++m)
      lstm_cell_fwd<VB>(a.gates + (m * F + j) * G, a.sweep_h + m * D, a.sweep_c + m * D,
                        a.feats + (m * F + j) * 3 * D + r * D, static_cast<T*>(nullptr), static_cast<T*>(nullptr), D);
  }
}

template <typename T>
struct LayerW {
  const T *t_w_ih, *t_w_hh, *t_bias, *t_h0, *t_c0, *t_proj_w, *t_proj_b;
  const T *f_w_ih, *f_w_hh, *f_bias, *f_h0, *f_c0, *f_proj_w, *f_proj_b;
};

// The tensors of one call and the batch rows [b0, b0 + M) that one thread samples together. Rows are independent;
// running them together turns every per-element matrix-vector product into a product over the M rows, so each
// weight is loaded once for several rows (at batch 1 the sampler is bound by streaming the weights from cache).
template <typename T>
struct SampleRows {
  const at::Tensor &x, &cz_t, &cz_f, &u, &eps;
  const std::vector<at::Tensor>& w;
  int64_t L, K;
  double temperature;
  int64_t n_prime;
  double x_min, x_max;
  int64_t b0, M;
  T* log_density;                      // [M], this group's entries
  CentralizedStep<T>* const* centralized;  // M steps, or null for a tier without a centralized stack
  int64_t* length;                     // [M]
};

// time_layer: the target's time_layer_lstm<VB> as a function of its own (see the call).
template <int VB, typename T>
MF_INLINE void sample_rows(const SampleRows<T>& a,
                           void (*time_layer)(const TimeLayerArgs<T>&, int64_t, int64_t, int64_t)) {
  const int64_t T_ = a.x.size(1), F = a.x.size(2), D = a.cz_t.size(3), L = a.L, K = a.K, M = a.M;
  const int64_t G = 4 * D;
  auto rows = [&](const at::Tensor& t, int64_t per_row) { return t.data_ptr<T>() + a.b0 * per_row; };
  T* xb = rows(a.x, T_ * F);  // row m, frame i, channel j at xb[(m * T_ + i) * F + j]
  const T* czt = rows(a.cz_t, T_ * F * D);
  const T* czf = rows(a.cz_f, T_ * F * D);
  const T* ub = rows(a.u, T_ * F);
  const T* eb = rows(a.eps, T_ * F);
  const sl::Layout layout(L);
  auto ptr = [&](int64_t idx) -> const T* {
    const at::Tensor& t = a.w[idx];
    return t.data_ptr<T>();
  };
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

  // Caches: time LSTM (h, c) per layer, row and channel [L, M * F, D]; the time-delayed stack's output of this
  // frame per row and layer [M, L, F, D] (a row's [L, F, D] block is what its centralized step adds to).
  std::vector<T> t_h(L * M * F * D), t_c(L * M * F * D), ht_layers(M * L * F * D), f_h(L * M * D), f_c(L * M * D);
#ifdef _OPENMP
  // Only worth a fork/join per layer and frame when each LSTM has real work (measured: D = 8 loses, 64 wins).
  const bool inner_threads = !omp_in_parallel() && at::get_num_threads() > 1 && D >= 32;
#else
  const bool inner_threads = false;
#endif
  std::vector<T> ht(M * F * D), feats(M * F * 3 * D), fgates(3 * M * F * G), sweep_h(3 * M * D), sweep_c(3 * M * D),
      gates(M * G), hf(M * D), tmp(M * D), theta(M * 3 * K);
  for (int64_t l = 0; l < L; ++l) {
    for (int64_t n = 0; n < M * F; ++n) {
      std::copy(lw[l].t_h0, lw[l].t_h0 + D, &t_h[(l * M * F + n) * D]);
      std::copy(lw[l].t_c0, lw[l].t_c0 + D, &t_c[(l * M * F + n) * D]);
    }
  }
  const T tau = static_cast<T>(a.temperature);
  const T lo = static_cast<T>(a.x_min), hi = static_cast<T>(a.x_max);
  std::vector<T> logd(M, T(0));
  std::vector<char> active(M, 1);  // false once a row has stopped (text models): it is then only carried along
  int64_t n_active = M;
  const std::vector<T> zeros(F, T(0));

  for (int64_t i = 0; i < T_ && n_active > 0; ++i) {
    // Time-delayed stack, layer 0: the previous frame (zeros before the first) plus conditioning.
    for (int64_t m = 0; m < M; ++m)
      for (int64_t j = 0; j < F; ++j) {
        const T prev = i > 0 ? xb[(m * T_ + i - 1) * F + j] : T(0);
        const T* cz = czt + ((m * T_ + i) * F + j) * D;
        T* h = &ht[(m * F + j) * D];
        for (int64_t d = 0; d < D; ++d) h[d] = prev * xt_w[d] + xt_b[d] + cz[d];
      }
    for (int64_t l = 0; l < L; ++l) {
      const LayerW<T>& lay = lw[l];
      // The three LSTMs of the layer write disjoint thirds of feats. When one thread samples the whole batch
      // they run on two threads, one frequency LSTM (a sequential sweep) and half of the time LSTM's independent
      // rows each (tasks 0 and 2 on one thread, 1 and 3 on the other); otherwise one after the other.
      const int64_t rows = M * F, mid = rows / 2 - rows / 2 % 4;  // halves in whole blocks of 4 rows (matmat)
#pragma omp parallel for num_threads(2) schedule(static, 1) if (inner_threads)
      for (int64_t task = 0; task < 4; ++task) {
        const int64_t r = task < 2 ? task + 1 : 0;
        // A call, not inline code: the body of an OpenMP loop is outlined without the wrapper's target.
        time_layer(TimeLayerArgs<T>{lay.t_w_ih, lay.t_w_hh, lay.t_bias, lay.t_h0, lay.t_c0, ht.data(),
                                    &t_h[l * M * F * D], &t_c[l * M * F * D], &fgates[r * M * F * G],
                                    &sweep_h[r * M * D], &sweep_c[r * M * D], feats.data(), M, F, D},
                   r, task == 3 ? mid : 0, task == 2 ? mid : rows);
      }
      // Projection and residual.
      matmat<VB>(lay.t_proj_w, feats.data(), M * F, 3 * D, lay.t_proj_b, D, 3 * D, ht.data(), D, true);
      for (int64_t m = 0; m < M; ++m) std::copy(&ht[m * F * D], &ht[(m + 1) * F * D], &ht_layers[(m * L + l) * F * D]);
    }
    if (a.centralized != nullptr) {  // the per-frame step of a text model: its terms join ht_layers; it may stop
      for (int64_t m = 0; m < M; ++m) {
        if (!active[m]) continue;
        if (!a.centralized[m]->frame(i, i > 0 ? xb + (m * T_ + i - 1) * F : zeros.data(), &ht_layers[m * L * F * D])) {
          a.length[m] = i;
          active[m] = 0;
          --n_active;
        }
      }
    }
    if (i < a.n_prime || n_active == 0) continue;  // primed frame: only the time-delayed caches advance

    // Frequency-delayed stack, channel by channel; its state restarts at every frame.
    for (int64_t l = 0; l < L; ++l)
      for (int64_t m = 0; m < M; ++m) {
        std::copy(lw[l].f_h0, lw[l].f_h0 + D, &f_h[(l * M + m) * D]);
        std::copy(lw[l].f_c0, lw[l].f_c0 + D, &f_c[(l * M + m) * D]);
      }
    for (int64_t j = 0; j < F; ++j) {
      for (int64_t m = 0; m < M; ++m) {
        const T prev = j > 0 ? xb[(m * T_ + i) * F + j - 1] : T(0);
        const T* cz = czf + ((m * T_ + i) * F + j) * D;
        for (int64_t d = 0; d < D; ++d) hf[m * D + d] = prev * xf_w[d] + xf_b[d] + cz[d];
      }
      for (int64_t l = 0; l < L; ++l) {
        const LayerW<T>& lay = lw[l];
        for (int64_t m = 0; m < M; ++m) {
          const T* htl = &ht_layers[((m * L + l) * F + j) * D];
          for (int64_t d = 0; d < D; ++d) tmp[m * D + d] = hf[m * D + d] + htl[d];
        }
        T* h = &f_h[l * M * D];
        matmat<VB>(lay.f_w_ih, tmp.data(), M, D, lay.f_bias, G, D, gates.data(), G);
        matmat<VB>(lay.f_w_hh, h, M, D, static_cast<const T*>(nullptr), G, D, gates.data(), G, true);
        for (int64_t m = 0; m < M; ++m)
          lstm_cell_fwd<VB>(&gates[m * G], h + m * D, &f_c[(l * M + m) * D], h + m * D, static_cast<T*>(nullptr),
                            static_cast<T*>(nullptr), D);
        matmat<VB>(lay.f_proj_w, h, M, D, lay.f_proj_b, D, D, hf.data(), D, true);
      }
      matmat<VB>(head_w, hf.data(), M, D, head_b, 3 * K, D, theta.data(), 3 * K);
      for (int64_t m = 0; m < M; ++m) {
        if (!active[m]) continue;
        const int64_t at = (m * T_ + i) * F + j;
        const Drawn<T> dr = draw_mixture(&theta[m * 3 * K], static_cast<int>(K), tau, ub[at], eb[at], lo, hi);
        xb[at] = dr.value;
        logd[m] += dr.log_density;
      }
    }
  }
  for (int64_t m = 0; m < M; ++m) {
    a.log_density[m] = logd[m];
    std::fill(xb + (m * T_ + a.length[m]) * F, xb + (m + 1) * T_ * F, T(0));  // frames after a stop are zeros
  }
}

// The sampler of each target, and the one this CPU runs.
#define MELNET_FAST_SAMPLER(ATTR, SUFFIX, VB)                                                   \
  template <typename T>                                                                         \
  ATTR void time_layer_##SUFFIX(const TimeLayerArgs<T>& a, int64_t r, int64_t n0, int64_t n1) { \
    time_layer_lstm<VB>(a, r, n0, n1);                                                          \
  }                                                                                             \
  template <typename T>                                                                         \
  ATTR void sample_rows_##SUFFIX(const SampleRows<T>& a) {                                      \
    sample_rows<VB>(a, &time_layer_##SUFFIX<T>);                                                \
  }
MELNET_FAST_SAMPLER(MELNET_FAST_TARGET_V4, v4, 64)
MELNET_FAST_SAMPLER(MELNET_FAST_TARGET_V3, v3, 32)
MELNET_FAST_SAMPLER(, v1, 16)
#undef MELNET_FAST_SAMPLER

template <typename T>
void run_sample_rows(const SampleRows<T>& a) {
  simd::for_level(&sample_rows_v4<T>, &sample_rows_v3<T>, &sample_rows_v1<T>)(a);
}

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
    // Each thread samples one contiguous group of rows together (all of them on one thread).
    at::parallel_for(0, B, 1, [&](int64_t lo, int64_t hi) {
      std::vector<std::unique_ptr<CentralizedStep<scalar_t>>> steps;
      std::vector<CentralizedStep<scalar_t>*> step_ptrs;
      if (centralized != nullptr) {
        for (int64_t b = lo; b < hi; ++b) {
          steps.push_back(std::make_unique<CentralizedStep<scalar_t>>(
              *centralized, b, alignment.data_ptr<scalar_t>() + b * T_ * U, n_prime));
          step_ptrs.push_back(steps.back().get());
        }
      }
      run_sample_rows(SampleRows<scalar_t>{x, cz_t, cz_f, u, eps, w, n_layers, n_mixtures, temperature, n_prime, x_min,
                                           x_max, lo, hi - lo, ld + lo,
                                           centralized != nullptr ? step_ptrs.data() : nullptr, len + lo});
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
