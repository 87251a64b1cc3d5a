// Schemas of every compiled op and the Python module melnet_fast._C. Implementations register per device
// in their own files (TORCH_LIBRARY_IMPL), so each source compiles alone and in parallel.
#include <torch/extension.h>
#include <torch/library.h>

#include <string>
#include <vector>

#include "common.h"
#include "gemm.h"
#include "sampler_layout.h"
#include "sweep_geometry.h"
#include "vec_math.h"

TORCH_LIBRARY(melnet_fast, m) {
  // directions: 0 = t+, 1 = t-, 2 = f+, 3 = f-. save: keep gates and cell states for backward.
  m.def("lstm_sweep_2d_fwd(Tensor x, Tensor w_ih, Tensor w_hh, Tensor bias, Tensor h0, Tensor c0, "
        "int[] directions, bool save) -> (Tensor, Tensor, Tensor)");
  // With one direction, h0 / c0 may be per line [1, lines, H]; dh_last / dc_last [1, lines, H] are the gradients
  // reaching each line's last h and c from beyond the grid (the segmented recompute's spans).
  m.def("lstm_sweep_2d_bwd(Tensor grad_y, Tensor x, Tensor w_ih, Tensor w_hh, Tensor h0, Tensor c0, "
        "Tensor y, Tensor gates, Tensor cell, int[] directions, Tensor? dh_last=None, Tensor? dc_last=None) "
        "-> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
  // One step of the GPU sweep's fused kernels (csrc/cuda/lstm_sweep_2d.cu), writing the caller's buffers; the host
  // that loops over the steps is melnet_fast/ops/lstm_sweep/gpu_host.py.
  m.def("lstm_sweep_fwd_step(Tensor pre, Tensor w_hh, Tensor h0, Tensor c0, Tensor(a!) y, Tensor(b!) c_run, "
        "Tensor(c!) gates, Tensor(d!) cell, int[] directions, int step, bool save) -> ()");
  m.def("lstm_sweep_bwd_step(Tensor grad_y, Tensor w_hh, Tensor c0, Tensor gates, Tensor cell, Tensor(a!) dgates, "
        "Tensor(b!) dc_run, int[] directions, int step) -> ()");
  // One step's epilogue of the second GPU sweep design (csrc/cuda/lstm_epilogue.cuh): rec holds, per direction,
  // the step's recurrent product computed by the host's GEMMs (melnet_fast/ops/lstm_sweep/gemm_steps.py).
  m.def("lstm_sweep_fwd_epilogue(Tensor[] rec, Tensor pre, Tensor c0, Tensor(a!) y, Tensor(b!) c_run, "
        "Tensor(c!) gates, Tensor(d!) cell, int[] directions, int step, bool save) -> ()");
  m.def("lstm_sweep_bwd_epilogue(Tensor[] rec, Tensor grad_y, Tensor c0, Tensor gates, Tensor cell, "
        "Tensor(a!) dgates, Tensor(b!) dc_run, int[] directions, int step) -> ()");
  // The narrow phase of the second design (csrc/cuda/lstm_narrow.cuh): one persistent launch for steps
  // [s_begin, s_end), blocks synchronised by the arrival counters `arrivals` [R, line_blocks] (zeroed by the op).
  m.def("lstm_sweep_fwd_narrow(Tensor pre, Tensor w_hh, Tensor(a!) y, Tensor(b!) c_run, Tensor(c!) gates, "
        "Tensor(d!) cell, Tensor(e!) arrivals, int[] directions, int s_begin, int s_end, bool save) -> ()");
  m.def("lstm_sweep_bwd_narrow(Tensor grad_y, Tensor w_hh, Tensor gates, Tensor cell, Tensor(a!) dgates, "
        "Tensor(b!) dc_run, Tensor(c!) arrivals, int[] directions, int s_begin, int s_end) -> ()");
  // Blocks of the narrow phase's kernels that can be resident at once on the current device for this storage
  // dtype and H (the persistent launch needs them all): -> (blocks, lines per block, units per block).
  m.def("lstm_sweep_narrow_capacity(ScalarType dtype, int H) -> (int, int, int)");
  m.def("gmm_nll_fwd(Tensor x, Tensor mu, Tensor log_sigma, Tensor logit_pi) -> Tensor");
  m.def("gmm_nll_bwd(Tensor grad, Tensor x, Tensor mu, Tensor log_sigma, Tensor logit_pi) "
        "-> (Tensor, Tensor, Tensor, Tensor)");
  // A benchmark probe (csrc/cuda/grid_barrier.cu): one cooperative launch passing `barriers` grid-wide barriers.
  m.def("grid_barrier_probe(Tensor(a!) counter, int blocks, int barriers) -> ()");
  // One tier of ancestral sampling with cached state; weights in the order of csrc/sampler_layout.h.
  // Drawn values are kept in [x_min, x_max] (NaN -> x_max): math::keep_in_range of csrc/scalar_math.h.
  m.def("sample_tier(Tensor x_init, Tensor cz_t, Tensor cz_f, Tensor u, Tensor eps, Tensor[] weights, "
        "int n_layers, int n_mixtures, float temperature, int n_prime, float x_min, float x_max) -> (Tensor, Tensor)");
  // The second design of the CUDA sampler (csrc/cuda/sample_tier_flags_kernel.cuh), CUDA only: weights the folded
  // list (csrc/sampler_layout.h: Layout(n_layers, true)).
  m.def("sample_tier_flags(Tensor x_init, Tensor cz_t, Tensor cz_f, Tensor u, Tensor eps, Tensor[] weights, "
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

namespace {

// The sampler's weight list for n_layers layers (csrc/sampler_layout.h; folded: with the folded sections), one
// dict per tensor in list order: index, section, key, layer (the copy in the layer and folded sections, else
// None), name, kind and shape as (coef, unit) pairs.
pybind11::list sampler_layout(int64_t n_layers, bool folded) {
  namespace sl = melnet_fast::sampler_layout;
  TORCH_CHECK(n_layers >= 1, "sampler_layout: n_layers must be >= 1, got ", n_layers);
  static const char* kKinds[] = {"matrix", "vector", "state"};
  static const char* kUnits[] = {"1", "D", "K"};
  const sl::Layout layout(n_layers, folded);
  pybind11::list out;
  for (int64_t idx = 0; idx < layout.size(); ++idx) {
    const auto place = layout.locate(idx);
    const sl::Entry& e = layout.entry(idx);
    std::string name = e.name;
    for (const auto& [key, value] :
         {std::pair<std::string, int64_t>{"{l}", place.copy}, {"{l+1}", place.copy + 1}, {"{L-1}", n_layers - 1}}) {
      const auto at = name.find(key);
      if (at != std::string::npos) name.replace(at, key.size(), std::to_string(value));
    }
    pybind11::list shape;
    for (int q = 0; q < e.rank; ++q) shape.append(pybind11::make_tuple(int(e.shape[q].coef), kUnits[e.shape[q].unit]));
    pybind11::dict row;
    row["index"] = idx;
    row["section"] = sl::kSections[place.section].name;
    row["key"] = e.key;
    const bool per_layer = place.section == sl::kLayers || place.section == sl::kFolded;
    row["layer"] = per_layer ? pybind11::object(pybind11::int_(place.copy)) : pybind11::none();
    row["name"] = name;
    row["kind"] = kKinds[e.kind];
    row["shape"] = shape;
    out.append(row);
  }
  return out;
}

// The entry counts of the centralized (text) block's list (csrc/sampler_layout.h, section centralized), for the
// Python mirror in melnet_fast/ops/tier_sampling/centralized_weights.py.
pybind11::dict centralized_layout() {
  namespace cl = melnet_fast::sampler_layout::centralized;
  pybind11::dict out;
  out["inputs"] = int(cl::kInputCount);
  out["per_layer"] = int(cl::kLayerCount);
  out["attention"] = int(cl::kAttentionCount);
  return out;
}

// The sweep geometry's step rule and line counts (csrc/sweep_geometry.h), for the test that pins the Python host's
// mirror to them: (steps, [lines of each direction]).
pybind11::tuple sweep_geometry(const std::vector<int64_t>& codes, int64_t B, int64_t T, int64_t F) {
  TORCH_CHECK(!codes.empty() && codes.size() <= melnet_fast::sweep::kMaxDirections, "sweep_geometry: 1 to ",
              melnet_fast::sweep::kMaxDirections, " codes");
  for (int64_t c : codes) TORCH_CHECK(melnet_fast::sweep::valid_code(c), "sweep_geometry: bad code ", c);
  const auto g = melnet_fast::sweep::make_geometry(B, T, F, 1, codes.data(), static_cast<int>(codes.size()));
  pybind11::list lines;
  for (size_t r = 0; r < codes.size(); ++r) lines.append(g.dir[r].lines);
  return pybind11::make_tuple(melnet_fast::sweep::sweep_steps(g), lines);
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "melnet_fast compiled kernels; the ops are registered under torch.ops.melnet_fast";
  m.def(
      "set_poison_outputs", [](bool on) { melnet_fast::poison_outputs_flag().store(on); },
      "Fill every output buffer with NaN before kernels write it (for tests).");
  m.def(
      "poison_outputs", []() { return melnet_fast::poison_outputs_flag().load(); },
      "Whether output buffers are filled with NaN first (set_poison_outputs).");
  m.def("sampler_layout", &sampler_layout, pybind11::arg("n_layers"), pybind11::arg("folded") = false,
        "The tier samplers' weight list for n_layers layers (csrc/sampler_layout.h), one dict per tensor.");
  m.def("centralized_layout", &centralized_layout,
        "Entry counts of the centralized block's weight list: inputs, per_layer, attention (csrc/sampler_layout.h).");
  m.def("sweep_geometry", &sweep_geometry, pybind11::arg("codes"), pybind11::arg("B"), pybind11::arg("T"),
        pybind11::arg("F"), "(steps, lines per direction) of a 2D LSTM sweep (csrc/sweep_geometry.h).");
  m.def("built_with_cuda", []() {
#ifdef MELNET_FAST_WITH_CUDA
    return melnet_fast_cuda_built();
#else
    return false;
#endif
  });
  m.def(
      "gemm_into",
      [](const at::Tensor& a, const at::Tensor& b, at::Tensor& out) {
        TORCH_CHECK(a.dim() == 2 && b.dim() == 2 && out.dim() == 2 && a.size(1) == b.size(0) &&
                        out.size(0) == a.size(0) && out.size(1) == b.size(1) && out.is_contiguous() &&
                        a.device().is_cpu(),
                    "gemm_into: expected CPU a [M, K], b [K, N] and a contiguous out [M, N]");
        melnet_fast::gemm_into(a, b, out);
      },
      "out = a @ b through the library path of the CPU kernels' large products (csrc/gemm.h); benchmarks time it "
      "as the machine's limit.");
  m.def(
      "gemm_library", []() { return std::string(melnet_fast::dnnl_matmul() ? "oneDNN" : "at::mm"); },
      "The library gemm_into runs float32 products through.");
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
