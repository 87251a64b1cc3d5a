// The per-frame step of the centralized stack and text attention for the CPU sampler (centralized_step_cpu.h).
// Its products and LSTM updates are compiled per instruction set like the per-element loop (one wrapper per target,
// picked by simd::cpu_level()): in baseline code the step cost a quarter of a tts_small frame.
#include "centralized_step_cpu.h"

#include <algorithm>
#include <limits>

#include "lstm_cell_cpu.h"
#include "sampler_layout.h"
#include "scalar_math.h"
#include "small_gemm.h"

namespace melnet_fast {
namespace {

// The flat list's order: csrc/sampler_layout.h, section centralized.
namespace cl = sampler_layout::centralized;
using Layer = cl::LayerEntry;
using Attention = cl::AttentionEntry;
using namespace cl;  // the entry names (kWih, kWindowW, ...)

template <typename T>
MF_INLINE const T* ptr(const CentralizedInputs& in, int64_t idx) {
  return in.weights[idx].data_ptr<T>();
}

template <typename T>
MF_INLINE const T* layer(const CentralizedInputs& in, int64_t l, Layer k) {
  return ptr<T>(in, cl::layer_index(l, k));
}

template <typename T>
MF_INLINE const T* attention(const CentralizedInputs& in, Attention k) {
  return ptr<T>(in, cl::attention_index(in.n_layers, k));
}

}  // namespace

CentralizedInputs CentralizedInputs::prepare(at::TensorList weights, int64_t n_layers, int64_t attention_layer,
                                             const std::optional<at::Tensor>& memory,
                                             const std::optional<at::Tensor>& text_lengths,
                                             std::optional<double> stop_threshold, const at::Tensor& like) {
  const int64_t base = cl::kInputCount + cl::kLayerCount * n_layers;
  const int64_t n = static_cast<int64_t>(weights.size());
  TORCH_CHECK(n == base || n == base + cl::kAttentionCount, "sample_tier_centralized: expected ", base,
              " (no text) or ", base + cl::kAttentionCount,
              " (text) centralized weight tensors for n_layers=", n_layers, ", got ", n);
  TORCH_CHECK(memory.has_value() == (n == base + cl::kAttentionCount) && memory.has_value() == text_lengths.has_value(),
              "sample_tier_centralized: memory and text_lengths must be given exactly when the centralized weights "
              "hold the attention part");
  TORCH_CHECK(attention_layer >= 0 && attention_layer < n_layers,
              "sample_tier_centralized: attention_layer must "
              "lie in [0, ",
              n_layers, "), got ", attention_layer);
  CentralizedInputs in;
  in.n_layers = n_layers;
  in.attention_layer = attention_layer;
  in.D = weights[0].size(0);
  in.F = weights[0].size(1);
  for (const auto& w : weights) {
    TORCH_CHECK(w.scalar_type() == like.scalar_type() && w.device() == like.device(),
                "sample_tier_centralized: centralized weights must have the data's dtype and device");
    in.weights.push_back(w.dim() >= 2 ? w.transpose(-1, -2).contiguous() : w.contiguous());
  }
  if (memory.has_value()) {
    in.memory = memory->contiguous();
    in.text_lengths = text_lengths->to(at::kLong).contiguous();
    TORCH_CHECK(in.memory.dim() == 3 && in.memory.size(0) == like.size(0) && in.memory.size(2) == in.D &&
                    in.memory.scalar_type() == like.scalar_type(),
                "sample_tier_centralized: memory must be [B, U, D] of the data's dtype");
    in.U = in.memory.size(1);
    const int64_t* len = in.text_lengths.data_ptr<int64_t>();
    for (int64_t b = 0; b < in.text_lengths.numel(); ++b) {
      TORCH_CHECK(len[b] >= 1 && len[b] <= in.U, "sample_tier_centralized: text_lengths must lie in [1, U=", in.U,
                  "], got ", len[b]);
    }
    in.K = weights[base + kWindowB].size(0) / 3;
    in.stop_threshold = stop_threshold;
  }
  return in;
}

template <typename T>
CentralizedStep<T>::CentralizedStep(const CentralizedInputs& in, int64_t b, T* alignment, int64_t n_prime)
    : in(in), n_prime(n_prime), alignment(alignment) {
  const int64_t L = in.n_layers, D = in.D;
  h.resize(L * D);
  c.resize(L * D);
  for (int64_t l = 0; l < L; ++l) {
    std::copy(layer<T>(in, l, kH0), layer<T>(in, l, kH0) + D, &h[l * D]);
    std::copy(layer<T>(in, l, kC0), layer<T>(in, l, kC0) + D, &c[l * D]);
  }
  hc.resize(D);
  gates.resize(4 * D);
  if (in.K > 0) {
    memory = in.memory.data_ptr<T>() + b * in.U * D;
    length = in.text_lengths.data_ptr<int64_t>()[b];
    att_h.assign(attention<T>(in, kAH0), attention<T>(in, kAH0) + D);
    att_c.assign(attention<T>(in, kAC0), attention<T>(in, kAC0) + D);
    att_in.assign(2 * D, T(0));  // [query ; last context]: the context starts at zero
    kappa.assign(in.K, T(0));
    window.resize(3 * in.K);
    cdf.resize((in.U + 1) * in.K);
    phi.resize(in.U);
  }
}

namespace {

// One step of the Gaussian-mixture attention (ops/gmm_attention/reference.py): the attention RNN reads
// [query ; last context], the window's positions advance, and the new context is the window's weighted sum of
// the memory. Writes s.phi [U] (zero on padding) and s.beyond (the mass past the end of the text).
template <int VB, typename T>
MF_INLINE void attend(CentralizedStep<T>& s, const T* query) {
  const CentralizedInputs& in = s.in;
  const int64_t D = in.D, K = in.K, U = in.U;
  std::copy(query, query + D, s.att_in.begin());
  matvec<VB>(attention<T>(in, kAWih), s.att_in.data(), attention<T>(in, kABias), 4 * D, 2 * D, s.gates.data());
  matvec<VB>(attention<T>(in, kAWhh), s.att_h.data(), static_cast<const T*>(nullptr), 4 * D, D, s.gates.data(), true);
  lstm_cell_fwd<VB>(s.gates.data(), s.att_h.data(), s.att_c.data(), s.att_h.data(), static_cast<T*>(nullptr),
                    static_cast<T*>(nullptr), D);
  T* p = s.window.data();  // (position steps, log widths, weight logits)
  matvec<VB>(attention<T>(in, kWindowW), s.att_h.data(), attention<T>(in, kWindowB), 3 * K, D, p);
  T mx = -std::numeric_limits<T>::infinity();
  for (int64_t k = 0; k < K; ++k) mx = std::max(mx, p[2 * K + k]);
  T sum = 0;
  for (int64_t k = 0; k < K; ++k) sum += (p[2 * K + k] = math::exp(p[2 * K + k] - mx));
  for (int64_t k = 0; k < K; ++k) {
    s.kappa[k] += math::exp(p[k]);
    p[K + k] = math::exp(-p[K + k]);  // inverse width
    p[2 * K + k] /= sum;             // alpha
  }
  const T* inv_width = p + K;
  const T* alpha = p + 2 * K;
  for (int64_t u = 0; u <= s.length; ++u)
    for (int64_t k = 0; k < K; ++k) s.cdf[u * K + k] = math::sigmoid((T(u) - s.kappa[k]) * inv_width[k]);
  T* context = &s.att_in[D];
  std::fill(context, context + D, T(0));
  for (int64_t u = 0; u < U; ++u) {
    T mass = 0;
    if (u < s.length) {
      for (int64_t k = 0; k < K; ++k) mass += (s.cdf[(u + 1) * K + k] - s.cdf[u * K + k]) * alpha[k];
      for (int64_t d = 0; d < D; ++d) context[d] += mass * s.memory[u * D + d];
    }
    s.phi[u] = mass;
  }
  T reached = 0;
  for (int64_t k = 0; k < K; ++k) reached += alpha[k] * s.cdf[s.length * K + k];
  s.beyond = T(1) - reached;
}

template <int VB, typename T>
MF_INLINE bool frame_impl(CentralizedStep<T>& s, int64_t i, const T* prev, T* ht_layers) {
  const CentralizedInputs& in = s.in;
  const int64_t L = in.n_layers, D = in.D, F = in.F;
  T* hc = s.hc.data();
  matvec<VB>(ptr<T>(in, 0), prev, ptr<T>(in, 1), D, F, hc);
  for (int64_t level = 0; level <= L; ++level) {
    if (level == in.attention_layer && in.K > 0) {
      attend<VB>(s, hc);
      matvec<VB>(attention<T>(in, kContextW), &s.att_in[D], attention<T>(in, kContextB), D, D, hc, true);
    }
    if (level > 0) {  // broadcast over frequency
      T* out = ht_layers + (level - 1) * F * D;
      for (int64_t j = 0; j < F; ++j)
        for (int64_t d = 0; d < D; ++d) out[j * D + d] += hc[d];
    }
    if (level < L) {
      T *h = &s.h[level * D], *c = &s.c[level * D];
      matvec<VB>(layer<T>(in, level, kWih), hc, layer<T>(in, level, kBias), 4 * D, D, s.gates.data());
      matvec<VB>(layer<T>(in, level, kWhh), h, static_cast<const T*>(nullptr), 4 * D, D, s.gates.data(), true);
      lstm_cell_fwd<VB>(s.gates.data(), h, c, h, static_cast<T*>(nullptr), static_cast<T*>(nullptr), D);
      matvec<VB>(layer<T>(in, level, kProjW), h, layer<T>(in, level, kProjB), D, D, hc, true);
    }
  }
  if (in.K == 0) return true;
  if (in.stop_threshold.has_value() && i >= std::max<int64_t>(s.n_prime, 1) &&
      s.beyond > static_cast<T>(*in.stop_threshold)) {
    return false;  // the row ends before this frame: its alignment row stays zero
  }
  std::copy(s.phi.begin(), s.phi.end(), s.alignment + i * in.U);
  return true;
}

// The step of each target.
template <typename T>
MELNET_FAST_TARGET_V4 bool frame_v4(CentralizedStep<T>& s, int64_t i, const T* prev, T* ht) {
  return frame_impl<64>(s, i, prev, ht);
}
template <typename T>
MELNET_FAST_TARGET_V3 bool frame_v3(CentralizedStep<T>& s, int64_t i, const T* prev, T* ht) {
  return frame_impl<32>(s, i, prev, ht);
}
template <typename T>
bool frame_v1(CentralizedStep<T>& s, int64_t i, const T* prev, T* ht) {
  return frame_impl<16>(s, i, prev, ht);
}

}  // namespace

template <typename T>
bool CentralizedStep<T>::frame(int64_t i, const T* prev, T* ht_layers) {
  return simd::for_level(&frame_v4<T>, &frame_v3<T>, &frame_v1<T>)(*this, i, prev, ht_layers);
}

template struct CentralizedStep<float>;
template struct CentralizedStep<double>;

}  // namespace melnet_fast
