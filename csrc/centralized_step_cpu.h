// The per-frame step of a tier with a centralized stack (and text attention) for the CPU sampler: once before
// each frame's per-element work it advances the centralized stack by one frame and, with text, the attention,
// and adds the stack's output of every level to the frequency-delayed stack's inputs of that frame. The
// semantics are those of melnet_fast/ops/tier_sampling/centralized_step.py (weights in the layout of
// centralized_weights.py), with the stop rule of reference.py's sampler.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <optional>
#include <vector>

namespace melnet_fast {

// The centralized weights and text of a whole batch, checked and laid out once per call of the sampler.
struct CentralizedInputs {
  std::vector<at::Tensor> weights;  // the flat list, matrices transposed to [in, out] (read as axpys)
  at::Tensor memory;                // [B, U, D] encoded texts (undefined without text)
  at::Tensor text_lengths;          // [B] int64 (undefined without text)
  int64_t n_layers = 0, attention_layer = 0, D = 0, F = 0, K = 0, U = 0;  // K: attention mixtures, 0 = no text
  std::optional<double> stop_threshold;

  static CentralizedInputs prepare(at::TensorList weights, int64_t n_layers, int64_t attention_layer,
                                   const std::optional<at::Tensor>& memory,
                                   const std::optional<at::Tensor>& text_lengths, std::optional<double> stop_threshold,
                                   const at::Tensor& like);
};

// The state of one batch row between frames. frame() runs the step of the CPU's target (AVX-512 / AVX2 / baseline,
// like the per-element loop), which reads the members directly.
template <typename T>
struct CentralizedStep {
  // alignment: this row's [T, U] rows of the output (nullptr without text).
  CentralizedStep(const CentralizedInputs& in, int64_t b, T* alignment, int64_t n_prime);

  // Frame i from the previous frame prev [F] (zeros before the first): adds h^c[l + 1] to ht_layers[l, j, :] for
  // every layer l and channel j (ht_layers [L, F, D]) and writes the frame's attention weights. Returns false
  // when the row stops at this frame (its attention mass past the end of the text exceeds the threshold).
  bool frame(int64_t i, const T* prev, T* ht_layers);

  const CentralizedInputs& in;
  const T* memory = nullptr;  // this row's [U, D]
  int64_t length = 0, n_prime = 0;
  T* alignment;
  T beyond = 0;
  std::vector<T> h, c, hc, gates, phi;                      // stack state [L, D] each; running sum; scratch
  std::vector<T> att_h, att_c, att_in, kappa, window, cdf;  // attention state ([query ; last context]) and scratch
};

extern template struct CentralizedStep<float>;
extern template struct CentralizedStep<double>;

}  // namespace melnet_fast
