// The per-frame step of the centralized stack and text attention for the CPU sampler (centralized_step_cpu.h).
// It runs once per frame next to F * L per-element cell steps, so it is plain code, not target-cloned.
#include "centralized_step_cpu.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "small_gemm.h"

namespace melnet_fast {
namespace {

// Offsets of the flat list (melnet_fast/ops/tier_sampling/centralized_weights.py: HEAD, PER_LAYER, ATTENTION).
constexpr int64_t kHead = 2, kPerLayer = 7, kAttention = 9;
enum Layer { kWih, kWhh, kBias, kH0, kC0, kProjW, kProjB };
enum Attention { kAWih, kAWhh, kABias, kAH0, kAC0, kWindowW, kWindowB, kContextW, kContextB };

template <typename T>
const T* ptr(const CentralizedInputs& in, int64_t idx) {
  return in.weights[idx].data_ptr<T>();
}

template <typename T>
const T* layer(const CentralizedInputs& in, int64_t l, Layer k) {
  return ptr<T>(in, kHead + kPerLayer * l + k);
}

template <typename T>
const T* attention(const CentralizedInputs& in, Attention k) {
  return ptr<T>(in, kHead + kPerLayer * in.n_layers + k);
}

template <typename T>
T sigmoid(T v) {
  return T(1) / (T(1) + std::exp(-v));
}

}  // namespace

CentralizedInputs CentralizedInputs::prepare(at::TensorList weights, int64_t n_layers, int64_t attention_layer,
                                             const std::optional<at::Tensor>& memory,
                                             const std::optional<at::Tensor>& text_lengths,
                                             std::optional<double> stop_threshold, const at::Tensor& like) {
  const int64_t base = kHead + kPerLayer * n_layers;
  const int64_t n = static_cast<int64_t>(weights.size());
  TORCH_CHECK(n == base || n == base + kAttention, "sample_tier_centralized: expected ", base, " (no text) or ",
              base + kAttention, " (text) centralized weight tensors for n_layers=", n_layers, ", got ", n);
  TORCH_CHECK(memory.has_value() == (n == base + kAttention) && memory.has_value() == text_lengths.has_value(),
              "sample_tier_centralized: memory and text_lengths must be given exactly when the centralized weights "
              "hold the attention part");
  TORCH_CHECK(attention_layer >= 0 && attention_layer < n_layers, "sample_tier_centralized: attention_layer must "
              "lie in [0, ", n_layers, "), got ", attention_layer);
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
    : in_(in), n_prime_(n_prime), alignment_(alignment), scratch_(4 * in.D) {
  const int64_t L = in.n_layers, D = in.D;
  h_.resize(L * D);
  c_.resize(L * D);
  for (int64_t l = 0; l < L; ++l) {
    std::copy(layer<T>(in, l, kH0), layer<T>(in, l, kH0) + D, &h_[l * D]);
    std::copy(layer<T>(in, l, kC0), layer<T>(in, l, kC0) + D, &c_[l * D]);
  }
  hc_.resize(D);
  tmp_.resize(D);
  gates_.resize(4 * D);
  if (in.K > 0) {
    memory_ = in.memory.data_ptr<T>() + b * in.U * D;
    length_ = in.text_lengths.data_ptr<int64_t>()[b];
    att_h_.assign(attention<T>(in, kAH0), attention<T>(in, kAH0) + D);
    att_c_.assign(attention<T>(in, kAC0), attention<T>(in, kAC0) + D);
    att_in_.assign(2 * D, T(0));  // [query ; last context]: the context starts at zero
    kappa_.assign(in.K, T(0));
    window_.resize(3 * in.K);
    cdf_.resize((in.U + 1) * in.K);
  }
}

template <typename T>
bool CentralizedStep<T>::frame(int64_t i, const T* prev, T* ht_layers) {
  const int64_t L = in_.n_layers, D = in_.D, F = in_.F;
  std::vector<T> phi(in_.K > 0 ? in_.U : 0);
  T* hc = hc_.data();
  matvec(ptr<T>(in_, 0), prev, ptr<T>(in_, 1), D, F, hc);
  for (int64_t level = 0; level <= L; ++level) {
    if (level == in_.attention_layer && in_.K > 0) {
      attend(hc, phi.data());
      matvec(attention<T>(in_, kContextW), &att_in_[D], attention<T>(in_, kContextB), D, D, hc, true);
    }
    if (level > 0) {  // broadcast over frequency
      T* out = ht_layers + (level - 1) * F * D;
      for (int64_t j = 0; j < F; ++j)
        for (int64_t d = 0; d < D; ++d) out[j * D + d] += hc[d];
    }
    if (level < L) {
      T *h = &h_[level * D], *c = &c_[level * D];
      matvec(layer<T>(in_, level, kWih), hc, layer<T>(in_, level, kBias), 4 * D, D, gates_.data());
      matvec(layer<T>(in_, level, kWhh), h, static_cast<const T*>(nullptr), 4 * D, D, gates_.data(), true);
      lstm_cell_pointwise(gates_.data(), static_cast<const T*>(nullptr), gates_.data(), h, c, D, scratch_);
      matvec(layer<T>(in_, level, kProjW), h, layer<T>(in_, level, kProjB), D, D, hc, true);
    }
  }
  if (in_.K == 0) return true;
  if (in_.stop_threshold.has_value() && i >= std::max<int64_t>(n_prime_, 1) &&
      beyond_ > static_cast<T>(*in_.stop_threshold)) {
    return false;  // the row ends before this frame: its alignment row stays zero
  }
  std::copy(phi.begin(), phi.end(), alignment_ + i * in_.U);
  return true;
}

// One step of the Gaussian-mixture attention (ops/gmm_attention/naive.py): the attention RNN reads
// [query ; last context], the window's positions advance, and the new context is the window's weighted sum of
// the memory. Writes phi [U] (zero on padding) and beyond_ (the mass past the end of the text).
template <typename T>
void CentralizedStep<T>::attend(const T* query, T* phi) {
  const int64_t D = in_.D, K = in_.K, U = in_.U;
  std::copy(query, query + D, att_in_.begin());
  matvec(attention<T>(in_, kAWih), att_in_.data(), attention<T>(in_, kABias), 4 * D, 2 * D, gates_.data());
  matvec(attention<T>(in_, kAWhh), att_h_.data(), static_cast<const T*>(nullptr), 4 * D, D, gates_.data(), true);
  lstm_cell_pointwise(gates_.data(), static_cast<const T*>(nullptr), gates_.data(), att_h_.data(), att_c_.data(), D,
                      scratch_);
  T* p = window_.data();  // (position steps, log widths, weight logits)
  matvec(attention<T>(in_, kWindowW), att_h_.data(), attention<T>(in_, kWindowB), 3 * K, D, p);
  T mx = -std::numeric_limits<T>::infinity();
  for (int64_t k = 0; k < K; ++k) mx = std::max(mx, p[2 * K + k]);
  T sum = 0;
  for (int64_t k = 0; k < K; ++k) sum += (p[2 * K + k] = std::exp(p[2 * K + k] - mx));
  for (int64_t k = 0; k < K; ++k) {
    kappa_[k] += std::exp(p[k]);
    p[K + k] = std::exp(-p[K + k]);  // inverse width
    p[2 * K + k] /= sum;             // alpha
  }
  const T* inv_width = p + K;
  const T* alpha = p + 2 * K;
  for (int64_t u = 0; u <= length_; ++u)
    for (int64_t k = 0; k < K; ++k) cdf_[u * K + k] = sigmoid((T(u) - kappa_[k]) * inv_width[k]);
  T* context = &att_in_[D];
  std::fill(context, context + D, T(0));
  for (int64_t u = 0; u < U; ++u) {
    T mass = 0;
    if (u < length_) {
      for (int64_t k = 0; k < K; ++k) mass += (cdf_[(u + 1) * K + k] - cdf_[u * K + k]) * alpha[k];
      for (int64_t d = 0; d < D; ++d) context[d] += mass * memory_[u * D + d];
    }
    phi[u] = mass;
  }
  T reached = 0;
  for (int64_t k = 0; k < K; ++k) reached += alpha[k] * cdf_[length_ * K + k];
  beyond_ = T(1) - reached;
}

template class CentralizedStep<float>;
template class CentralizedStep<double>;

}  // namespace melnet_fast
