// Schemas of every compiled op and the Python module melnet_fast._C. Implementations register per device
// in their own files (TORCH_LIBRARY_IMPL), so each source compiles alone and in parallel.
#include <torch/extension.h>
#include <torch/library.h>

#include "common.h"
#include "vec_math.h"

TORCH_LIBRARY(melnet_fast, m) {
  // directions: 0 = t+, 1 = t-, 2 = f+, 3 = f-. save: keep gates and cell states for backward.
  m.def("lstm_sweep_2d_fwd(Tensor x, Tensor w_ih, Tensor w_hh, Tensor bias, Tensor h0, Tensor c0, "
        "int[] directions, bool save) -> (Tensor, Tensor, Tensor)");
  m.def("lstm_sweep_2d_bwd(Tensor grad_y, Tensor x, Tensor w_ih, Tensor w_hh, Tensor h0, Tensor c0, "
        "Tensor y, Tensor gates, Tensor cell, int[] directions) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def("gmm_nll_fwd(Tensor x, Tensor mu, Tensor log_sigma, Tensor logit_pi) -> Tensor");
  m.def("gmm_nll_bwd(Tensor grad, Tensor x, Tensor mu, Tensor log_sigma, Tensor logit_pi) "
        "-> (Tensor, Tensor, Tensor, Tensor)");
  // One tier of ancestral sampling with cached state; weights in the layout of ops/tier_sampling/weights.py.
  // Drawn values are kept in [x_min, x_max] (NaN -> x_max), the rule of ops/gmm/naive.py keep_in_range.
  m.def("sample_tier(Tensor x_init, Tensor cz_t, Tensor cz_f, Tensor u, Tensor eps, Tensor[] weights, "
        "int n_layers, int n_mixtures, float temperature, int n_prime, float x_min, float x_max) -> (Tensor, Tensor)");
  // The same with the per-frame step of a centralized stack (and text attention); centralized weights in the
  // layout of ops/tier_sampling/centralized_weights.py. -> (x, log_density, alignment [B, T, U], lengths [B]).
  m.def("sample_tier_centralized(Tensor x_init, Tensor cz_t, Tensor cz_f, Tensor u, Tensor eps, Tensor[] weights, "
        "int n_layers, int n_mixtures, float temperature, int n_prime, float x_min, float x_max, "
        "Tensor[] centralized_weights, int attention_layer, Tensor? memory, Tensor? text_lengths, "
        "float? stop_threshold) -> (Tensor, Tensor, Tensor, Tensor)");
}

#ifdef MELNET_FAST_WITH_CUDA
bool melnet_fast_cuda_built();  // defined in csrc/cuda/registration.cu
#endif

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "melnet_fast compiled kernels; the ops are registered under torch.ops.melnet_fast";
  m.def(
      "set_poison_outputs", [](bool on) { melnet_fast::poison_outputs_flag().store(on); },
      "Fill every output buffer with NaN before kernels write it (for tests).");
  m.def("built_with_cuda", []() {
#ifdef MELNET_FAST_WITH_CUDA
    return melnet_fast_cuda_built();
#else
    return false;
#endif
  });
  m.def(
      "cpu_levels",
      []() {
#ifdef MELNET_FAST_TARGET_CLONES
        std::vector<int> compiled{4, 3, 1};
#else
        std::vector<int> compiled{1};
#endif
        return std::make_pair(compiled, melnet_fast::simd::cpu_level());
      },
      "(levels the CPU kernels are compiled for, the level this host runs): 4 = x86-64-v4 (AVX-512), "
      "3 = x86-64-v3 (AVX2 + FMA), 1 = baseline");
}
