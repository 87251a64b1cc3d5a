// CUDA sampler of one MelNet tier with cached state: melnet_fast::sample_tier on CUDA tensors (schema in
// csrc/bindings.cpp; semantics = the reference melnet_fast/ops/tier_sampling/reference.py, the same as the CPU kernel
// csrc/sample_tier_cpu.cpp), and melnet_fast::sample_tier_flags, the second design (folded projections, flag
// waits, resident weight rows: its device code and design notes are csrc/cuda/sample_tier_flags_kernel.cuh; this
// file is its host too). The notes below are the first design's.
//
// One persistent cooperative kernel runs the whole tier: grid = SMs x the occupancy the kernel allows, so every
// block is resident and cooperative_groups' grid.sync() is a valid barrier between dependent phases. Each phase is
// a set of independent "tasks" spread over all warps of the grid (grid-stride over a numbering of the warps); a task
// computes a few output rows of a matrix-vector product (a warp-wide dot product per row, 16-byte weight loads)
// for a few input columns, and the fused pointwise work that only needs those rows. For an LSTM the task of hidden
// unit u computes its four gate rows u, D+u, 2D+u, 3D+u, so the cell update of u needs no further barrier.
// Tasks are numbered unit-major, so the warps of one block share weight rows (L1 reuse across columns / batch);
// single-column per-step phases at batch < 4 use a numbering that spreads their few tasks over all SMs instead.
//
// Per frame i (grid barriers marked [B]):
//   [B] (i > 0: frame i-1's draws are written)
//   P0  xt = x[i-1] * xt_w + xt_b + cz_t[i]                                                       [B]
//   per layer l (input in = xt for l = 0, else htl[l-1]):
//     P1  time LSTM step of every (b, j) from its cached state, fused cell update (writes th_new, tc), and the
//         input pre-activations of the two frequency sweeps sgx = W_ih in + bias                   [B]
//     P2  F steps s of the sweeps, forward (j = s) and backward (j = F-1-s) together, each direction on its own
//         half of the tasks: gates = sgx + W_hh h_prev, cell update (writes sh, sc)              [B] per step
//     P3  htl[l] = in + W_proj [th_new | sh_fwd | sh_bwd] + b                                         [B]
//   if i >= n_prime:
//     Pb  base0 = xf_b + cz_f[i] + htl[0] (the part of layer 0's input that does not depend on the draws) [B]
//     per channel j, per layer l:
//       C   frequency-delayed cell: gates = W_ih (hf + htl[l][j]) + W_hh h_prev + bias, cell update    [B]
//           (at l = 0 the input is base0 + x[i, j-1] * xf_w, hf is not stored)
//       Pf  hf = hf_old + W_proj h + b (hf_old at l = 0: x[i, j-1] xf_w + xf_b + cz_f[i, j])           [B]
//     head + draw: every block computes theta = W_head hf + b and the draw itself (identical code and inputs
//     give bitwise identical results), so the drawn value is in every block's shared memory with no barrier;
//     block 0 writes x and accumulates the log density.
// Barriers per frame: 2 + L (F + 2), plus 1 + 2 L F when the frame is drawn.
//
// Memory: all state is float32 in one scratch allocation per call (layout in Scratch below). Buffers read by other
// blocks in the same phase that they are updated in are double-buffered: the time LSTM's h by frame parity, the
// frequency-delayed LSTM's h by channel parity. Cell states and hf are updated in place by their single owner.
// Weights (float32 / bfloat16 / float16) are only read, through the read-only path, and stay in L2 across steps.
//
// Occupancy (nvcc 13.0, sm_90, -Xptxas -v): 188-228 registers (the flags design: 227-254), no spills, so one
// 256-thread block per SM and a grid of #SMs blocks (132 on H100 SXM / H200). Weight rows are read in one place
// (sampler_cuda::warp_dot); the flags design keeps the per-element working set in shared memory there.
// MELNET_FAST_SAMPLER_MAX_BLOCKS caps the grid (cheaper barriers, fewer warps).
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cooperative_groups.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

#include "common.h"
#include "cuda/sample_tier_flags_kernel.cuh"

namespace melnet_fast {
namespace {

using namespace sampler_cuda;

// ------------------------------------------------------------------------------------------------ host

// The shape weights[idx] must have (csrc/sampler_layout.h).
std::vector<int64_t> expected_shape(const sl::Layout& layout, int64_t idx, int64_t D, int64_t K) {
  const sl::Entry& e = layout.entry(idx);
  std::vector<int64_t> shape;
  for (int q = 0; q < e.rank; ++q) shape.push_back(sl::dim_size(e.shape[q], D, K));
  return shape;
}

bool is_sampler_dtype(at::ScalarType t) { return t == at::kFloat || t == at::kBFloat16 || t == at::kHalf; }

// Optional cap on the number of blocks (MELNET_FAST_SAMPLER_MAX_BLOCKS): fewer blocks make each grid barrier
// cheaper at the cost of fewer warps per phase; a tuning knob for benchmarks (and the tests check that the result
// does not depend on it). Unset or invalid: SMs x occupancy.
int max_blocks_cap() {
  const char* v = std::getenv("MELNET_FAST_SAMPLER_MAX_BLOCKS");
  if (v == nullptr) return std::numeric_limits<int>::max();
  const int n = std::atoi(v);
  return n > 0 ? n : std::numeric_limits<int>::max();
}

// A non-negative integer from the environment, or `fallback` when unset or invalid.
int64_t env_count(const char* name, int64_t fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  const long long n = std::strtoll(v, &end, 10);
  return end != v && *end == '\0' && n >= 0 ? n : fallback;
}

template <typename WT>
void launch(Params p, int64_t dyn_smem, const c10::cuda::CUDAStream& stream, int device) {
  const void* kernel = reinterpret_cast<const void*>(&sample_tier_kernel<WT>);
  int coop = 0, sms = 0, per_sm = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&coop, cudaDevAttrCooperativeLaunch, device));
  TORCH_CHECK(coop, "sample_tier: the cuda sampler needs cooperative kernel launches, which device ", device,
              " does not support; use the reference backend");
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  C10_CUDA_CHECK(
      cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, static_cast<size_t>(dyn_smem)));
  TORCH_CHECK(per_sm >= 1, "sample_tier: the cuda sampler's kernel cannot be resident on device ", device, " (",
              kThreads, " threads, ", dyn_smem, " bytes of dynamic shared memory per block)");
  // Every block must be resident at once for grid.sync(): at most the occupancy limit per SM on every SM.
  const int grid = std::min(sms * per_sm, max_blocks_cap());
  void* args[] = {&p};
  C10_CUDA_CHECK(cudaLaunchCooperativeKernel(kernel, dim3(grid), dim3(kThreads), args, static_cast<size_t>(dyn_smem),
                                             stream.stream()));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// The flags design's launch: every block resident (a cooperative launch guarantees it; the kernel itself uses no
// grid barrier, its flag waits need all blocks running), one per SM at most (the resident weight rows take the
// shared memory), each owning ceil(D / grid) hidden units (at least 2 blocks); the frequency sweeps' W_hh rows of
// the current layer (MELNET_FAST_SAMPLER_SWEEP_ROWS=0: read from global memory) and as many layers' cell rows as fit
// in shared memory (capped by MELNET_FAST_SAMPLER_RESIDENT_LAYERS), the rest of the frequency-delayed weights (packed
// contiguously by the caller, window_from .. window_end) in an L2 persisting access-policy window for the launch.
template <typename WT>
void launch_flags(FlagParams q, int64_t B, int64_t K, const c10::cuda::CUDAStream& stream, int device,
                  const char* packed, const std::vector<int64_t>& layer_offsets) {
  const void* kernel = reinterpret_cast<const void*>(&sample_tier_flags_kernel<WT>);
  int coop = 0, sms = 0, optin = 0, per_sm = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&coop, cudaDevAttrCooperativeLaunch, device));
  TORCH_CHECK(coop, "sample_tier: the cuda sampler needs cooperative kernel launches, which device ", device,
              " does not support; use the reference backend");
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  cudaFuncAttributes attr{};
  C10_CUDA_CHECK(cudaFuncGetAttributes(&attr, kernel));
  const int64_t theta_bytes = flag_theta_floats(B, K) * static_cast<int64_t>(sizeof(float));
  const int64_t L = q.p.L, D = q.p.D;
  // At least 2 blocks: the two frequency sweeps run on the two halves of the grid.
  int grid = static_cast<int>(std::max<int64_t>(2, std::min<int64_t>(sms, max_blocks_cap())));
  const int64_t units = (D + grid - 1) / grid;
  const int64_t layer_bytes = flag_layer_bytes(units, D, sizeof(WT));
  int64_t room = static_cast<int64_t>(optin) - static_cast<int64_t>(attr.sharedSizeBytes) - theta_bytes;
  TORCH_CHECK(room >= 0, "sample_tier: the flags sampler's head needs ", theta_bytes,
              " bytes of shared memory per block (n_mixtures=", K, "), more than device ", device, " has");
  // The sweep rows first (read F times per frame and layer), then as many layers' cell rows as fit.
  const int64_t sweep_units = flag_sweep_units(D, grid);
  const int64_t sweep_bytes = flag_sweep_bytes(sweep_units, D, sizeof(WT));
  const bool sweep_rows = sweep_bytes <= room && env_count("MELNET_FAST_SAMPLER_SWEEP_ROWS", 1) != 0;
  if (sweep_rows) room -= sweep_bytes;
  const int64_t resident = std::min<int64_t>(
      {L, room / std::max<int64_t>(layer_bytes, 1), env_count("MELNET_FAST_SAMPLER_RESIDENT_LAYERS", L)});
  const int64_t dyn_smem = theta_bytes + resident * layer_bytes + (sweep_rows ? sweep_bytes : 0);
  C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(dyn_smem)));
  C10_CUDA_CHECK(
      cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, static_cast<size_t>(dyn_smem)));
  TORCH_CHECK(per_sm >= 1 && grid <= sms * per_sm, "sample_tier: the flags sampler's ", grid,
              " blocks cannot all be resident on device ", device, " (", kThreads, " threads, ", dyn_smem,
              " bytes of dynamic shared memory per block)");
  q.units_per_block = static_cast<int>(units);
  q.resident_layers = static_cast<int>(resident);
  q.theta_floats = static_cast<int>(flag_theta_floats(B, K));
  q.sweep_units = sweep_rows ? static_cast<int>(sweep_units) : 0;

  // L2 persisting window over the non-resident layers' packed weights (skipped where the device has none).
  int max_persist = 0, max_window = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&max_persist, cudaDevAttrMaxPersistingL2CacheSize, device));
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&max_window, cudaDevAttrMaxAccessPolicyWindowSize, device));
  const int64_t window_bytes = layer_offsets.back() - layer_offsets[resident];
  const bool window =
      max_persist > 0 && max_window > 0 && window_bytes > 0 && env_count("MELNET_FAST_SAMPLER_L2_WINDOW", 1) != 0;
  size_t old_limit = 0;
  if (window) {
    C10_CUDA_CHECK(cudaDeviceGetLimit(&old_limit, cudaLimitPersistingL2CacheSize));
    const int64_t bytes = std::min<int64_t>(window_bytes, max_window);
    const int64_t limit = std::min<int64_t>(bytes, max_persist);
    C10_CUDA_CHECK(cudaDeviceSetLimit(cudaLimitPersistingL2CacheSize, static_cast<size_t>(limit)));
    cudaStreamAttrValue v{};
    v.accessPolicyWindow.base_ptr = const_cast<char*>(packed + layer_offsets[resident]);
    v.accessPolicyWindow.num_bytes = static_cast<size_t>(bytes);
    v.accessPolicyWindow.hitRatio = static_cast<float>(static_cast<double>(limit) / static_cast<double>(bytes));
    v.accessPolicyWindow.hitProp = cudaAccessPropertyPersisting;
    v.accessPolicyWindow.missProp = cudaAccessPropertyStreaming;
    C10_CUDA_CHECK(cudaStreamSetAttribute(stream.stream(), cudaStreamAttributeAccessPolicyWindow, &v));
  }
  void* args[] = {&q};
  C10_CUDA_CHECK(cudaLaunchCooperativeKernel(kernel, dim3(grid), dim3(kThreads), args, static_cast<size_t>(dyn_smem),
                                             stream.stream()));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  if (window) {  // the stream and the device's L2 as they were
    cudaStreamAttrValue v{};
    v.accessPolicyWindow.num_bytes = 0;
    C10_CUDA_CHECK(cudaStreamSetAttribute(stream.stream(), cudaStreamAttributeAccessPolicyWindow, &v));
    C10_CUDA_CHECK(cudaCtxResetPersistingL2Cache());
    C10_CUDA_CHECK(cudaDeviceSetLimit(cudaLimitPersistingL2CacheSize, old_limit));
  }
}

std::tuple<at::Tensor, at::Tensor> sample_tier_cuda_impl(bool flags_design, const at::Tensor& x_init,
                                                         const at::Tensor& cz_t_in, const at::Tensor& cz_f_in,
                                                         const at::Tensor& u_in, const at::Tensor& eps_in,
                                                         at::TensorList weights_in, int64_t n_layers,
                                                         int64_t n_mixtures, double temperature, int64_t n_prime,
                                                         double x_min, double x_max) {
  // ---- argument checks (the Python op checks the same; direct callers of torch.ops get them here)
  TORCH_CHECK(n_layers >= 1, "sample_tier: n_layers must be >= 1, got ", n_layers);
  TORCH_CHECK(n_mixtures >= 1, "sample_tier: n_mixtures must be >= 1, got ", n_mixtures);
  TORCH_CHECK(3 * n_mixtures <= kHeadSmemFloats,
              "sample_tier: the cuda sampler takes n_mixtures <= ", kHeadSmemFloats / 3, ", got ", n_mixtures);
  TORCH_CHECK(!flags_design || flag_batch_rows(n_mixtures) >= 1,
              "sample_tier: the flags variant of the cuda sampler "
              "takes n_mixtures <= ",
              kHeadSmemFloats / 6, ", got ", n_mixtures);
  const int64_t L = n_layers, K = n_mixtures;
  const sl::Layout layout(L, flags_design);  // the flags design takes the folded list
  const int64_t n_weights = layout.size();
  TORCH_CHECK(static_cast<int64_t>(weights_in.size()) == n_weights, "sample_tier: weights must hold ", n_weights,
              " tensors for n_layers=", L, flags_design ? " (the folded list)" : "", ", got ", weights_in.size());
  TORCH_CHECK(x_init.dim() == 3, "sample_tier: x_init must be [B, T, F], got shape ", x_init.sizes());
  TORCH_CHECK(weights_in[0].dim() == 2, "sample_tier: weights[0] must be [D, 1], got shape ", weights_in[0].sizes());
  const int64_t B = x_init.size(0), T = x_init.size(1), F = x_init.size(2), D = weights_in[0].size(0);
  TORCH_CHECK(D >= 1, "sample_tier: the hidden size (weights[0].shape[0]) must be >= 1");
  const struct {
    const char* name;
    const at::Tensor& t;
    std::vector<int64_t> shape;
  } data[] = {{"cz_t", cz_t_in, {B, T, F, D}},
              {"cz_f", cz_f_in, {B, T, F, D}},
              {"u", u_in, {B, T, F}},
              {"eps", eps_in, {B, T, F}}};
  TORCH_CHECK(x_init.is_cuda(), "sample_tier: x_init must be a CUDA tensor for the cuda sampler, got ",
              x_init.device());
  TORCH_CHECK(is_sampler_dtype(x_init.scalar_type()), "sample_tier: x_init must be float32, bfloat16 or float16, got ",
              x_init.scalar_type());
  for (const auto& a : data) {
    TORCH_CHECK(a.t.sizes() == at::IntArrayRef(a.shape), "sample_tier: ", a.name, " must have shape ",
                at::IntArrayRef(a.shape), ", got ", a.t.sizes());
    TORCH_CHECK(a.t.device() == x_init.device(), "sample_tier: ", a.name, " is on ", a.t.device(), " but x_init is on ",
                x_init.device());
    TORCH_CHECK(a.t.scalar_type() == x_init.scalar_type(), "sample_tier: ", a.name, " has dtype ", a.t.scalar_type(),
                " but x_init has ", x_init.scalar_type());
  }
  const at::ScalarType wtype = weights_in[0].scalar_type();
  TORCH_CHECK(is_sampler_dtype(wtype), "sample_tier: weights must be float32, bfloat16 or float16, got ", wtype);
  for (int64_t idx = 0; idx < static_cast<int64_t>(weights_in.size()); ++idx) {
    const at::Tensor& w = weights_in[idx];
    const auto shape = expected_shape(layout, idx, D, K);
    TORCH_CHECK(w.sizes() == at::IntArrayRef(shape), "sample_tier: weights[", idx, "] (", layout.entry(idx).name,
                ") must have shape ", at::IntArrayRef(shape), " (hidden ", D, ", K=", K, "), got ", w.sizes());
    TORCH_CHECK(w.device() == x_init.device(), "sample_tier: weights[", idx, "] is on ", w.device(),
                " but x_init is on ", x_init.device());
    TORCH_CHECK(w.scalar_type() == wtype, "sample_tier: weights[", idx, "] has dtype ", w.scalar_type(),
                " but weights[0] has ", wtype, " (all weights must share one dtype)");
  }
  TORCH_CHECK(std::isfinite(temperature) && temperature >= 0,
              "sample_tier: temperature must be a finite number >= 0, got ", temperature);
  TORCH_CHECK(n_prime >= 0 && n_prime <= T, "sample_tier: n_prime must be in [0, ", T, "], got ", n_prime);
  TORCH_CHECK(std::isfinite(x_min) && std::isfinite(x_max) && x_min < x_max,
              "sample_tier: the value range must be finite with x_min < x_max, got [", x_min, ", ", x_max, "]");
  // Kernel indices: sizes up to the int range, offsets in int64.
  TORCH_CHECK(std::max({T, F, 4 * D}) <= std::numeric_limits<int>::max() / kMaxBatch,
              "sample_tier: sizes too large for the cuda sampler (T=", T, ", F=", F, ", D=", D, ")");

  c10::cuda::CUDAGuard guard(x_init.device());
  const auto stream = c10::cuda::getCurrentCUDAStream();
  const auto fopts = x_init.options().dtype(at::kFloat);

  // ---- outputs (float32 inside; cast back to x_init's dtype at the end)
  at::Tensor x = new_output(x_init.sizes(), fopts);
  x.copy_(x_init);
  at::Tensor log_density = new_output({B}, fopts);
  if (B == 0 || T == 0 || F == 0) {
    log_density.zero_();
    return {x.to(x_init.scalar_type()), log_density.to(x_init.scalar_type())};
  }
  const at::Tensor cz_t = cz_t_in.to(at::kFloat).contiguous();
  const at::Tensor cz_f = cz_f_in.to(at::kFloat).contiguous();
  const at::Tensor u = u_in.to(at::kFloat).contiguous();
  const at::Tensor eps = eps_in.to(at::kFloat).contiguous();

  // ---- weights: contiguous, their addresses in a device table; the vector path when everything is aligned.
  // The flags design packs the frequency-delayed matrices and the head into one buffer, layer after layer, so
  // that the layers not resident in shared memory form one range for its L2 persisting window.
  std::vector<at::Tensor> w;
  w.reserve(weights_in.size());
  for (const auto& t : weights_in) w.push_back(t.contiguous());
  at::Tensor packed;
  std::vector<int64_t> layer_offsets;  // byte offset of layer k's matrices in packed; the last entry: its end
  if (flags_design) {
    std::vector<std::vector<int64_t>> order(L + 1);  // per layer (the head last): indices into w
    for (int64_t k = 0; k < L; ++k) {
      order[k] = {layout.layer(k, sl::kFWih), layout.layer(k, sl::kFWhh), layout.layer(k, sl::kFProjW)};
      if (k > 0) order[k].push_back(layout.folded(k - 1, sl::kFoldW));
    }
    order[L] = {layout.head(sl::kHeadW), layout.folded_head(sl::kHeadFoldW)};
    int64_t elems = 0;
    for (const auto& part : order) {
      for (int64_t idx : part) elems += w[idx].numel();
    }
    packed = at::empty({elems}, w[0].options());
    int64_t at_elem = 0;
    for (const auto& part : order) {
      layer_offsets.push_back(at_elem * static_cast<int64_t>(at::elementSize(wtype)));
      for (int64_t idx : part) {
        at::Tensor dst = packed.narrow(0, at_elem, w[idx].numel());
        dst.copy_(w[idx].view({-1}));
        at_elem += w[idx].numel();
        w[idx] = dst.view(w[idx].sizes());  // 16-byte aligned: every matrix holds a multiple of D x 8 elements
      }
    }
    layer_offsets.push_back(at_elem * static_cast<int64_t>(at::elementSize(wtype)));
  }
  const int64_t vec_n = 16 / static_cast<int64_t>(at::elementSize(wtype));
  bool vec = D % vec_n == 0;
  at::Tensor table = at::empty({static_cast<int64_t>(w.size())}, at::TensorOptions().dtype(at::kLong));
  int64_t* entries = table.data_ptr<int64_t>();
  for (size_t idx = 0; idx < w.size(); ++idx) {
    const auto addr = reinterpret_cast<uintptr_t>(w[idx].data_ptr());
    vec = vec && addr % 16 == 0;
    entries[idx] = static_cast<int64_t>(addr);
  }
  table = table.to(x_init.device());

  // ---- scratch: one allocation, sized for one launch of up to Bc rows
  const int64_t Bc = std::min<int64_t>(B, flags_design ? flag_batch_rows(K) : kMaxBatch);
  const Scratch so(Bc, F, D, L);
  const FlagScratch fo(so.total, Bc, F, D, L);
  at::Tensor scratch = at::empty({flags_design ? fo.total : so.total}, fopts);
  at::Tensor arrivals = at::zeros({3}, x_init.options().dtype(at::kInt));  // FlagParams::arrivals
  if (poison_outputs_flag().load(std::memory_order_relaxed)) {
    scratch.fill_(std::numeric_limits<float>::quiet_NaN());  // reads of state nobody wrote show up as NaN
  }
  auto view = [&](int64_t off, at::IntArrayRef sizes) {
    int64_t n = 1;
    for (auto s : sizes) n *= s;
    return scratch.narrow(0, off, n).view(sizes);
  };
  float* base = scratch.data_ptr<float>();
  // Constant float32 copies of the small weights (copy_ converts the dtype).
  view(so.xfw, {D}).copy_(w[layout.input(sl::kXfW)].view({D}));
  for (int64_t l = 0; l < L; ++l) {
    view(so.swh0, {L, 2, D}).select(0, l).copy_(w[layout.layer(l, sl::kTH0)].narrow(0, 1, 2));
    view(so.swc0, {L, 2, D}).select(0, l).copy_(w[layout.layer(l, sl::kTC0)].narrow(0, 1, 2));
    view(so.fh0, {L, D}).select(0, l).copy_(w[layout.layer(l, sl::kFH0)][0]);
    view(so.fc0, {L, D}).select(0, l).copy_(w[layout.layer(l, sl::kFC0)][0]);
  }

  const int64_t head_rows = std::max<int64_t>(1, std::min<int64_t>(Bc, kHeadSmemFloats / (3 * K)));
  const int64_t dyn_smem = head_rows * 3 * K * static_cast<int64_t>(sizeof(float));

  for (int64_t b0 = 0; b0 < B; b0 += Bc) {
    const int64_t nb = std::min<int64_t>(Bc, B - b0);
    // Time LSTM state of every (b, j) starts at its trainable h0 / c0 (direction 0); parity 0 is frame 0's input.
    for (int64_t l = 0; l < L; ++l) {
      const auto& h0 = w[layout.layer(l, sl::kTH0)];
      const auto& c0 = w[layout.layer(l, sl::kTC0)];
      // Laid out with nb rows, as the kernel indexes them (p.B = nb).
      view(so.th, {2, L, nb, F, D}).select(0, 0).select(0, l).copy_(h0[0].view({1, 1, D}).expand({nb, F, D}));
      view(so.tc, {L, nb, F, D}).select(0, l).copy_(c0[0].view({1, 1, D}).expand({nb, F, D}));
    }
    Params p;
    p.B = static_cast<int>(nb);
    p.T = static_cast<int>(T);
    p.F = static_cast<int>(F);
    p.D = static_cast<int>(D);
    p.L = static_cast<int>(L);
    p.K = static_cast<int>(K);
    p.n_prime = static_cast<int>(n_prime);
    p.head_rows = static_cast<int>(std::min(head_rows, nb));
    p.tau = static_cast<float>(temperature);
    p.x_min = static_cast<float>(x_min);
    p.x_max = static_cast<float>(x_max);
    p.vec = vec;
    p.wtab = reinterpret_cast<const unsigned long long*>(table.data_ptr<int64_t>());
    p.cz_t = cz_t.data_ptr<float>() + b0 * T * F * D;
    p.cz_f = cz_f.data_ptr<float>() + b0 * T * F * D;
    p.u = u.data_ptr<float>() + b0 * T * F;
    p.eps = eps.data_ptr<float>() + b0 * T * F;
    p.x = x.data_ptr<float>() + b0 * T * F;
    p.log_density = log_density.data_ptr<float>() + b0;
    // The state buffers are laid out for Bc rows; a chunk of nb <= Bc rows uses them with its own B = nb
    // (the kernel indexes every buffer with p.B, so the first nb-row-sized part of each is used).
    so.bind(p, base);
    const int device = x_init.device().index();
    if (flags_design) {
      FlagParams q;
      q.p = p;
      fo.bind(q, base);
      arrivals.zero_();  // the counter starts at zero for every launch
      q.arrivals = reinterpret_cast<unsigned*>(arrivals.data_ptr<int>());
      const char* packed_bytes = static_cast<const char*>(packed.data_ptr());
      switch (wtype) {
        case at::kFloat:
          launch_flags<float>(q, nb, K, stream, device, packed_bytes, layer_offsets);
          break;
        case at::kBFloat16:
          launch_flags<__nv_bfloat16>(q, nb, K, stream, device, packed_bytes, layer_offsets);
          break;
        case at::kHalf:
          launch_flags<__half>(q, nb, K, stream, device, packed_bytes, layer_offsets);
          break;
        default:
          TORCH_CHECK(false, "sample_tier: unreachable weight dtype ", wtype);
      }
      continue;
    }
    switch (wtype) {
      case at::kFloat:
        launch<float>(p, dyn_smem, stream, device);
        break;
      case at::kBFloat16:
        launch<__nv_bfloat16>(p, dyn_smem, stream, device);
        break;
      case at::kHalf:
        launch<__half>(p, dyn_smem, stream, device);
        break;
      default:
        TORCH_CHECK(false, "sample_tier: unreachable weight dtype ", wtype);
    }
  }
  return {x.to(x_init.scalar_type()), log_density.to(x_init.scalar_type())};
}

#define MF_SAMPLE_TIER_ARGS                                                                                    \
  const at::Tensor &x_init, const at::Tensor &cz_t, const at::Tensor &cz_f, const at::Tensor &u,               \
      const at::Tensor &eps, at::TensorList weights, int64_t n_layers, int64_t n_mixtures, double temperature, \
      int64_t n_prime, double x_min, double x_max

std::tuple<at::Tensor, at::Tensor> sample_tier_cuda(MF_SAMPLE_TIER_ARGS) {
  return sample_tier_cuda_impl(false, x_init, cz_t, cz_f, u, eps, weights, n_layers, n_mixtures, temperature, n_prime,
                               x_min, x_max);
}

std::tuple<at::Tensor, at::Tensor> sample_tier_flags_cuda(MF_SAMPLE_TIER_ARGS) {
  return sample_tier_cuda_impl(true, x_init, cz_t, cz_f, u, eps, weights, n_layers, n_mixtures, temperature, n_prime,
                               x_min, x_max);
}
#undef MF_SAMPLE_TIER_ARGS

}  // namespace

TORCH_LIBRARY_IMPL(melnet_fast, CUDA, m) {
  m.impl("sample_tier", &sample_tier_cuda);
  m.impl("sample_tier_flags", &sample_tier_flags_cuda);
}

}  // namespace melnet_fast
