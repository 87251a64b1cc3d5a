// The CUDA step kernels of the 2D LSTM sweep as ops: melnet_fast::lstm_sweep_fwd_step / lstm_sweep_bwd_step launch
// the fused kernels of lstm_step.cuh for one step s, reading and writing the caller's buffers (the first design);
// melnet_fast::lstm_sweep_fwd_epilogue / _bwd_epilogue launch the epilogues of lstm_epilogue.cuh (the second
// design, whose host runs the step's recurrent products as GEMMs first: melnet_fast/ops/lstm_sweep/gemm_steps.py). The
// host around them (input projections, the step loop, the gradient GEMMs, dh0, dc0) is
// melnet_fast/ops/lstm_sweep/gpu_host.py, the one host of the GPU backends, which is also what runs
// melnet_fast::lstm_sweep_2d_fwd / _bwd on CUDA tensors.
//
// Buffers (N = B*T*F positions, G = 4H; storage float32, bfloat16 or float16, one dtype for all but the float32
// state): pre [B, T, F, R*G], y / grad_y [B, T, F, R*H], w_hh [R, G, H], h0 / c0 [R, H], gates [R, B, T, F, G]
// (empty when the forward does not save), cell [R, B, T, F, H] float32, c_run / dc_run [R, lines_max, H] float32,
// dgates [B, T, F, R*G]; all contiguous.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <climits>
#include <tuple>
#include <vector>

#include "cuda/lstm_epilogue.cuh"
#include "cuda/lstm_narrow.cuh"
#include "cuda/lstm_step.cuh"
#include "sweep_geometry.h"

namespace melnet_fast {
namespace {

using sweep::Geometry;

// Checks a buffer: on the device of `ref`, of dtype `dtype`, contiguous, of the given shape.
void check_buffer(const char* op, const char* name, const at::Tensor& t, const at::Tensor& ref, at::ScalarType dtype,
                  at::IntArrayRef shape) {
  TORCH_CHECK(t.is_cuda() && t.device() == ref.device(), op, ": ", name, " must be a CUDA tensor on ", ref.device(),
              ", got one on ", t.device());
  TORCH_CHECK(t.scalar_type() == dtype, op, ": ", name, " must have dtype ", dtype, ", got ", t.scalar_type());
  TORCH_CHECK(t.sizes() == shape, op, ": ", name, " must have shape ", shape, ", got ", t.sizes());
  TORCH_CHECK(t.is_contiguous(), op, ": ", name, " must be contiguous");
}

// The geometry of the step ops' arguments: B, T, F from y (or grad_y) [B, T, F, R*H], R and H from w_hh [R, 4H, H]
// (or c0 [R, H], named `what`).
Geometry check_geometry(const char* op, const at::Tensor& y, const at::Tensor& w, const char* what,
                        at::IntArrayRef directions, int64_t step) {
  const bool is_w = w.dim() == 3;
  TORCH_CHECK(y.dim() == 4 && (is_w || w.dim() == 2), op, ": y must be [B, T, F, R*H] and ", what,
              is_w ? " [R, 4H, H]" : " [R, H]");
  const auto dt = y.scalar_type();
  TORCH_CHECK(dt == at::kFloat || dt == at::kBFloat16 || dt == at::kHalf, op,
              ": storage must be float32, bfloat16 or float16, got ", dt);
  const int64_t R = w.size(0), H = is_w ? w.size(2) : w.size(1);
  TORCH_CHECK(R >= 1 && R <= sweep::kMaxDirections && static_cast<int64_t>(directions.size()) == R, op, ": ", what,
              " holds ", R, " directions and directions has ", directions.size(), " codes (1 to ",
              sweep::kMaxDirections, ")");
  TORCH_CHECK(y.size(3) == R * H, op, ": y must have R*H = ", R * H, " channels, got ", y.size(3));
  TORCH_CHECK(y.size(1) < INT_MAX && y.size(2) < INT_MAX && 4 * H < INT_MAX / 2, op, ": T, F or H too large");
  for (int64_t r = 0; r < R; ++r) {
    TORCH_CHECK(sweep::valid_code(directions[r]), op, ": directions[", r, "] must be 0..3, got ", directions[r]);
  }
  const std::vector<int64_t> codes(directions.begin(), directions.end());
  const Geometry geo = sweep::make_geometry(y.size(0), y.size(1), y.size(2), H, codes.data(), static_cast<int>(R));
  TORCH_CHECK(step >= 0 && step < sweep::sweep_steps(geo), op, ": step must be in [0, ", sweep::sweep_steps(geo),
              "), got ", step);
  return geo;
}

// The buffers shared by the forward ops of a step (step kernel, epilogue, narrow phase): y, pre and the running
// cell state, and with save the gates and cells kept for the backward.
void check_forward_buffers(const char* op, const Geometry& geo, const at::Tensor& y, const at::Tensor& pre,
                           const at::Tensor& c_run, const at::Tensor& gates, const at::Tensor& cell, bool save) {
  const int64_t B = y.size(0), T = y.size(1), F = y.size(2), R = geo.R, H = geo.H, G = 4 * H;
  const auto dt = y.scalar_type();
  check_buffer(op, "y", y, y, dt, {B, T, F, R * H});
  check_buffer(op, "pre", pre, y, dt, {B, T, F, R * G});
  check_buffer(op, "c_run", c_run, y, at::kFloat, {R, sweep::max_lines(geo), H});
  if (save) {
    check_buffer(op, "gates", gates, y, dt, {R, B, T, F, G});
    check_buffer(op, "cell", cell, y, at::kFloat, {R, B, T, F, H});
  }
}

// The buffers shared by the backward ops of a step: grad_y, the kept gates and cells, dgates and the running cell
// gradient.
void check_backward_buffers(const char* op, const Geometry& geo, const at::Tensor& grad_y, const at::Tensor& gates,
                            const at::Tensor& cell, const at::Tensor& dgates, const at::Tensor& dc_run) {
  const int64_t B = grad_y.size(0), T = grad_y.size(1), F = grad_y.size(2), R = geo.R, H = geo.H, G = 4 * H;
  const auto dt = grad_y.scalar_type();
  check_buffer(op, "grad_y", grad_y, grad_y, dt, {B, T, F, R * H});
  check_buffer(op, "gates", gates, grad_y, dt, {R, B, T, F, G});
  check_buffer(op, "cell", cell, grad_y, at::kFloat, {R, B, T, F, H});
  check_buffer(op, "dgates", dgates, grad_y, dt, {B, T, F, R * G});
  check_buffer(op, "dc_run", dc_run, grad_y, at::kFloat, {R, sweep::max_lines(geo), H});
}

template <typename Fn>
void dispatch_storage(at::ScalarType dt, Fn&& fn) {
  switch (dt) {
    case at::kFloat:
      fn(float{});
      break;
    case at::kBFloat16:
      fn(__nv_bfloat16{});
      break;
    case at::kHalf:
      fn(__half{});
      break;
    default:
      TORCH_CHECK(false, "lstm_sweep (CUDA): unsupported dtype ", dt);
  }
}

template <typename T>
T* ptr(const at::Tensor& t) {
  return reinterpret_cast<T*>(t.data_ptr());
}

dim3 step_grid(const Geometry& geo, int64_t step, int units_per_block) {
  return dim3(static_cast<unsigned>(sweep_cuda::line_tiles(geo, step)),
              static_cast<unsigned>((geo.H + units_per_block - 1) / units_per_block), static_cast<unsigned>(geo.R));
}

dim3 epilogue_grid(const Geometry& geo, int64_t step) {
  return dim3(static_cast<unsigned>(sweep_cuda::epilogue_line_tiles(geo, step)),
              static_cast<unsigned>((geo.H + sweep_cuda::kEpilogueUnits - 1) / sweep_cuda::kEpilogueUnits),
              static_cast<unsigned>(geo.R));
}

void lstm_sweep_fwd_step_cuda(const at::Tensor& pre, const at::Tensor& w_hh, const at::Tensor& h0, const at::Tensor& c0,
                              const at::Tensor& y, const at::Tensor& c_run, const at::Tensor& gates,
                              const at::Tensor& cell, at::IntArrayRef directions, int64_t step, bool save) {
  constexpr const char* op = "lstm_sweep_fwd_step (CUDA)";
  const Geometry geo = check_geometry(op, y, w_hh, "w_hh", directions, step);
  const int64_t R = geo.R, H = geo.H;
  const auto dt = y.scalar_type();
  check_forward_buffers(op, geo, y, pre, c_run, gates, cell, save);
  check_buffer(op, "w_hh", w_hh, y, dt, {R, 4 * H, H});
  check_buffer(op, "h0", h0, y, dt, {R, H});
  check_buffer(op, "c0", c0, y, dt, {R, H});
  if (geo.N == 0 || H == 0) return;
  const c10::cuda::CUDAGuard guard(y.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  dispatch_storage(dt, [&](auto tag) {
    using T_ = decltype(tag);
    sweep_cuda::FwdParams<T_> p;
    p.pre = ptr<const T_>(pre);
    p.w_hh = ptr<const T_>(w_hh);
    p.h0 = ptr<const T_>(h0);
    p.c0 = ptr<const T_>(c0);
    p.y = ptr<T_>(y);
    p.c_run = ptr<float>(c_run);
    p.gates = save ? ptr<T_>(gates) : nullptr;
    p.cell = save ? ptr<float>(cell) : nullptr;
    p.lines_max = c_run.size(1);
    p.geo = geo;
    p.s = static_cast<int>(step);
    sweep_cuda::lstm_fwd_step_kernel<T_>
        <<<step_grid(geo, step, sweep_cuda::kFwdUnits), sweep_cuda::kThreads, 0, stream>>>(p);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void lstm_sweep_bwd_step_cuda(const at::Tensor& grad_y, const at::Tensor& w_hh, const at::Tensor& c0,
                              const at::Tensor& gates, const at::Tensor& cell, const at::Tensor& dgates,
                              const at::Tensor& dc_run, at::IntArrayRef directions, int64_t step) {
  constexpr const char* op = "lstm_sweep_bwd_step (CUDA)";
  const Geometry geo = check_geometry(op, grad_y, w_hh, "w_hh", directions, step);
  const int64_t R = geo.R, H = geo.H;
  const auto dt = grad_y.scalar_type();
  check_backward_buffers(op, geo, grad_y, gates, cell, dgates, dc_run);
  check_buffer(op, "w_hh", w_hh, grad_y, dt, {R, 4 * H, H});
  check_buffer(op, "c0", c0, grad_y, dt, {R, H});
  if (geo.N == 0 || H == 0) return;
  const c10::cuda::CUDAGuard guard(grad_y.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  dispatch_storage(dt, [&](auto tag) {
    using T_ = decltype(tag);
    sweep_cuda::BwdParams<T_> p;
    p.grad_y = ptr<const T_>(grad_y);
    p.w_hh = ptr<const T_>(w_hh);
    p.gates = ptr<const T_>(gates);
    p.cell = ptr<const float>(cell);
    p.c0 = ptr<const T_>(c0);
    p.dgates = ptr<T_>(dgates);
    p.dc_run = ptr<float>(dc_run);
    p.lines_max = dc_run.size(1);
    p.geo = geo;
    p.s = static_cast<int>(step);
    sweep_cuda::lstm_bwd_step_kernel<T_>
        <<<step_grid(geo, step, sweep_cuda::kBwdUnits), sweep_cuda::kThreads, 0, stream>>>(p);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

// The recurrent products of an epilogue op: per direction r, a float32 CUDA tensor with `cols` columns and lines_r
// rows (or, when one_row_ok, a single row that every line shares) where the direction is active and reads one,
// else an empty tensor. Returns the data pointers and row strides.
void check_products(const char* op, at::TensorList rec, const Geometry& geo, int64_t step, int64_t cols,
                    bool one_row_ok, const at::Tensor& ref, const float* (&ptrs)[sweep::kMaxDirections],
                    int64_t (&ld)[sweep::kMaxDirections], bool backward) {
  TORCH_CHECK(static_cast<int64_t>(rec.size()) == geo.R, op, ": rec must hold one tensor per direction (", geo.R,
              "), got ", rec.size());
  for (int r = 0; r < sweep::kMaxDirections; ++r) {
    ptrs[r] = nullptr;
    ld[r] = 0;
  }
  for (int r = 0; r < geo.R; ++r) {
    const sweep::Dir& d = geo.dir[r];
    const bool reads = step < d.len && !(backward && step == d.len - 1);
    const at::Tensor& t = rec[r];
    if (!reads) {
      TORCH_CHECK(t.numel() == 0, op, ": rec[", r, "] must be empty (direction ", r, " reads none at step ", step, ")");
      continue;
    }
    const bool one_row = one_row_ok && t.dim() == 2 && t.size(0) == 1;
    check_buffer(op, "rec[r]", t, ref, at::kFloat, {one_row ? 1 : d.lines, cols});
    ptrs[r] = t.data_ptr<float>();
    ld[r] = one_row ? 0 : cols;
  }
}

void lstm_sweep_fwd_epilogue_cuda(at::TensorList rec, const at::Tensor& pre, const at::Tensor& c0, const at::Tensor& y,
                                  const at::Tensor& c_run, const at::Tensor& gates, const at::Tensor& cell,
                                  at::IntArrayRef directions, int64_t step, bool save) {
  constexpr const char* op = "lstm_sweep_fwd_epilogue (CUDA)";
  const Geometry geo = check_geometry(op, y, c0, "c0", directions, step);
  const int64_t R = geo.R, H = geo.H, G = 4 * H;
  const auto dt = y.scalar_type();
  check_forward_buffers(op, geo, y, pre, c_run, gates, cell, save);
  check_buffer(op, "c0", c0, y, dt, {R, H});
  const float* ptrs[sweep::kMaxDirections];
  int64_t ld[sweep::kMaxDirections];
  check_products(op, rec, geo, step, G, /*one_row_ok=*/step == 0, y, ptrs, ld, /*backward=*/false);
  if (geo.N == 0 || H == 0) return;
  const c10::cuda::CUDAGuard guard(y.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  dispatch_storage(dt, [&](auto tag) {
    using T_ = decltype(tag);
    sweep_cuda::EpilogueFwdParams<T_> p;
    for (int r = 0; r < sweep::kMaxDirections; ++r) {
      p.rec[r] = ptrs[r];
      p.rec_ld[r] = ld[r];
    }
    p.pre = ptr<const T_>(pre);
    p.c0 = ptr<const T_>(c0);
    p.y = ptr<T_>(y);
    p.c_run = ptr<float>(c_run);
    p.gates = save ? ptr<T_>(gates) : nullptr;
    p.cell = save ? ptr<float>(cell) : nullptr;
    p.lines_max = c_run.size(1);
    p.geo = geo;
    p.s = static_cast<int>(step);
    sweep_cuda::lstm_fwd_epilogue_kernel<T_><<<epilogue_grid(geo, step), sweep_cuda::kEpilogueThreads, 0, stream>>>(p);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void lstm_sweep_bwd_epilogue_cuda(at::TensorList rec, const at::Tensor& grad_y, const at::Tensor& c0,
                                  const at::Tensor& gates, const at::Tensor& cell, const at::Tensor& dgates,
                                  const at::Tensor& dc_run, at::IntArrayRef directions, int64_t step) {
  constexpr const char* op = "lstm_sweep_bwd_epilogue (CUDA)";
  const Geometry geo = check_geometry(op, grad_y, c0, "c0", directions, step);
  const int64_t R = geo.R, H = geo.H;
  const auto dt = grad_y.scalar_type();
  check_backward_buffers(op, geo, grad_y, gates, cell, dgates, dc_run);
  check_buffer(op, "c0", c0, grad_y, dt, {R, H});
  const float* ptrs[sweep::kMaxDirections];
  int64_t ld[sweep::kMaxDirections];
  check_products(op, rec, geo, step, H, /*one_row_ok=*/false, grad_y, ptrs, ld, /*backward=*/true);
  if (geo.N == 0 || H == 0) return;
  const c10::cuda::CUDAGuard guard(grad_y.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  dispatch_storage(dt, [&](auto tag) {
    using T_ = decltype(tag);
    sweep_cuda::EpilogueBwdParams<T_> p;
    for (int r = 0; r < sweep::kMaxDirections; ++r) p.rec[r] = ptrs[r];
    p.grad_y = ptr<const T_>(grad_y);
    p.gates = ptr<const T_>(gates);
    p.cell = ptr<const float>(cell);
    p.c0 = ptr<const T_>(c0);
    p.dgates = ptr<T_>(dgates);
    p.dc_run = ptr<float>(dc_run);
    p.lines_max = dc_run.size(1);
    p.geo = geo;
    p.s = static_cast<int>(step);
    sweep_cuda::lstm_bwd_epilogue_kernel<T_><<<epilogue_grid(geo, step), sweep_cuda::kEpilogueThreads, 0, stream>>>(p);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

// ---- The narrow phase (lstm_narrow.cuh): one cooperative launch (so that every block is resident, as the flag
// waits between blocks require) for the steps [s_begin, s_end), the shipped tile kNarrowLines x kNarrowUnits.
template <typename T_>
void* narrow_kernel(bool backward) {
  using namespace sweep_cuda;
  return backward ? reinterpret_cast<void*>(&lstm_bwd_narrow_kernel<T_, kNarrowLines, kNarrowUnits>)
                  : reinterpret_cast<void*>(&lstm_fwd_narrow_kernel<T_, kNarrowLines, kNarrowUnits>);
}

template <typename T_>
int64_t narrow_smem_bytes(int64_t H, bool backward) {
  return sweep_cuda::NarrowSmem<T_, sweep_cuda::kNarrowLines, sweep_cuda::kNarrowUnits>(static_cast<int>(H), backward)
      .bytes();
}

// Resident blocks of one narrow kernel on the current device (0 when its shared memory exceeds the device's).
template <typename T_>
int64_t narrow_resident_blocks(int64_t H, bool backward) {
  const int device = c10::cuda::current_device();
  int max_smem = 0, sms = 0, per_sm = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&max_smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  const int64_t bytes = narrow_smem_bytes<T_>(H, backward);
  if (bytes > max_smem) return 0;
  void* kernel = narrow_kernel<T_>(backward);
  C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
  C10_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, sweep_cuda::kNarrowThreads,
                                                               static_cast<size_t>(bytes)));
  return static_cast<int64_t>(per_sm) * sms;
}

std::tuple<int64_t, int64_t, int64_t> lstm_sweep_narrow_capacity_cuda(at::ScalarType dtype, int64_t H) {
  int64_t blocks = 0;
  dispatch_storage(dtype, [&](auto tag) {
    using T_ = decltype(tag);
    blocks = std::min(narrow_resident_blocks<T_>(H, false), narrow_resident_blocks<T_>(H, true));
  });
  return {blocks, sweep_cuda::kNarrowLines, sweep_cuda::kNarrowUnits};
}

// Checks the phase (1 <= s_begin < s_end <= steps, only one axis's directions active in it, each to its end) and the
// counters; fills the list of active directions and returns the launch grid.
dim3 check_narrow(const char* op, const Geometry& geo, int64_t s_begin, int64_t s_end, const at::Tensor& arrivals,
                  const at::Tensor& ref, int (&active)[sweep::kMaxDirections]) {
  TORCH_CHECK(1 <= s_begin && s_begin < s_end && s_end <= sweep::sweep_steps(geo), op, ": the phase [", s_begin, ", ",
              s_end, ") must lie in [1, ", sweep::sweep_steps(geo), "]");
  int axis = -1, n_active = 0;
  for (int r = 0; r < geo.R; ++r) {
    if (geo.dir[r].len <= s_begin) continue;
    TORCH_CHECK(axis < 0 || axis == geo.dir[r].along_t, op, ": directions of both axes are active from step ", s_begin,
                " (the narrow phase runs one axis's directions)");
    TORCH_CHECK(geo.dir[r].len >= s_end, op, ": direction ", r, " ends at step ", geo.dir[r].len, " inside the phase");
    axis = geo.dir[r].along_t;
    active[n_active++] = r;
  }
  const int64_t line_blocks =
      (sweep::active_lines(geo, s_begin) + sweep_cuda::kNarrowLines - 1) / sweep_cuda::kNarrowLines;
  check_buffer(op, "arrivals", arrivals, ref, at::kInt, {geo.R, line_blocks});
  return dim3(static_cast<unsigned>(line_blocks),
              static_cast<unsigned>((geo.H + sweep_cuda::kNarrowUnits - 1) / sweep_cuda::kNarrowUnits),
              static_cast<unsigned>(n_active));
}

// Fills the fields both narrow kernels share (the phase, the running state `run`: c_run or dc_run, the counters, the
// geometry) and makes the cooperative launch, after checking that every block can be resident.
template <typename T_>
void launch_narrow(const char* op, bool backward, dim3 grid, sweep_cuda::NarrowParams<T_> p, const Geometry& geo,
                   const int (&active)[sweep::kMaxDirections], int64_t s_begin, int64_t s_end, const at::Tensor& run,
                   const at::Tensor& arrivals, cudaStream_t stream) {
  p.c_run = ptr<float>(run);
  p.lines_max = run.size(1);
  p.arrivals = ptr<unsigned>(arrivals);
  p.s_begin = static_cast<int>(s_begin);
  p.s_end = static_cast<int>(s_end);
  p.line_blocks = static_cast<int>(grid.x);
  std::copy(active, active + sweep::kMaxDirections, p.active);
  p.geo = geo;
  const int64_t bytes = narrow_smem_bytes<T_>(geo.H, backward);
  const int64_t resident = narrow_resident_blocks<T_>(geo.H, backward);
  const int64_t blocks = static_cast<int64_t>(grid.x) * grid.y * grid.z;
  TORCH_CHECK(blocks <= resident, op, ": ", blocks, " blocks of the persistent kernel but only ", resident,
              " can be resident on this device (the host must run these steps as wide steps)");
  C10_CUDA_CHECK(cudaMemsetAsync(p.arrivals, 0, arrivals.numel() * sizeof(unsigned), stream));
  void* args[] = {&p};
  C10_CUDA_CHECK(cudaLaunchCooperativeKernel(narrow_kernel<T_>(backward), grid, dim3(sweep_cuda::kNarrowThreads), args,
                                             static_cast<size_t>(bytes), stream));
}

void lstm_sweep_fwd_narrow_cuda(const at::Tensor& pre, const at::Tensor& w_hh, const at::Tensor& y,
                                const at::Tensor& c_run, const at::Tensor& gates, const at::Tensor& cell,
                                const at::Tensor& arrivals, at::IntArrayRef directions, int64_t s_begin, int64_t s_end,
                                bool save) {
  constexpr const char* op = "lstm_sweep_fwd_narrow (CUDA)";
  const Geometry geo = check_geometry(op, y, w_hh, "w_hh", directions, s_begin);
  const int64_t R = geo.R, H = geo.H;
  const auto dt = y.scalar_type();
  check_forward_buffers(op, geo, y, pre, c_run, gates, cell, save);
  check_buffer(op, "w_hh", w_hh, y, dt, {R, 4 * H, H});
  int active[sweep::kMaxDirections] = {};
  const dim3 grid = check_narrow(op, geo, s_begin, s_end, arrivals, y, active);
  if (geo.N == 0 || H == 0) return;
  const c10::cuda::CUDAGuard guard(y.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  dispatch_storage(dt, [&](auto tag) {
    using T_ = decltype(tag);
    sweep_cuda::NarrowParams<T_> p{};
    p.pre = ptr<const T_>(pre);
    p.w_hh = ptr<const T_>(w_hh);
    p.y = ptr<T_>(y);
    p.gates = save ? ptr<T_>(gates) : nullptr;
    p.cell = save ? ptr<float>(cell) : nullptr;
    launch_narrow<T_>(op, false, grid, p, geo, active, s_begin, s_end, c_run, arrivals, stream);
  });
}

void lstm_sweep_bwd_narrow_cuda(const at::Tensor& grad_y, const at::Tensor& w_hh, const at::Tensor& gates,
                                const at::Tensor& cell, const at::Tensor& dgates, const at::Tensor& dc_run,
                                const at::Tensor& arrivals, at::IntArrayRef directions, int64_t s_begin,
                                int64_t s_end) {
  constexpr const char* op = "lstm_sweep_bwd_narrow (CUDA)";
  const Geometry geo = check_geometry(op, grad_y, w_hh, "w_hh", directions, s_begin);
  const int64_t R = geo.R, H = geo.H;
  const auto dt = grad_y.scalar_type();
  check_backward_buffers(op, geo, grad_y, gates, cell, dgates, dc_run);
  check_buffer(op, "w_hh", w_hh, grad_y, dt, {R, 4 * H, H});
  int active[sweep::kMaxDirections] = {};
  const dim3 grid = check_narrow(op, geo, s_begin, s_end, arrivals, grad_y, active);
  if (geo.N == 0 || H == 0) return;
  const c10::cuda::CUDAGuard guard(grad_y.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  dispatch_storage(dt, [&](auto tag) {
    using T_ = decltype(tag);
    sweep_cuda::NarrowParams<T_> p{};
    p.grad_y = ptr<const T_>(grad_y);
    p.w_hh = ptr<const T_>(w_hh);
    p.gates_in = ptr<const T_>(gates);
    p.cell_in = ptr<const float>(cell);
    p.dgates = ptr<T_>(dgates);
    launch_narrow<T_>(op, true, grid, p, geo, active, s_begin, s_end, dc_run, arrivals, stream);
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(melnet_fast, CUDA, m) {
  m.impl("lstm_sweep_fwd_step", &lstm_sweep_fwd_step_cuda);
  m.impl("lstm_sweep_bwd_step", &lstm_sweep_bwd_step_cuda);
  m.impl("lstm_sweep_fwd_epilogue", &lstm_sweep_fwd_epilogue_cuda);
  m.impl("lstm_sweep_bwd_epilogue", &lstm_sweep_bwd_epilogue_cuda);
  m.impl("lstm_sweep_fwd_narrow", &lstm_sweep_fwd_narrow_cuda);
  m.impl("lstm_sweep_bwd_narrow", &lstm_sweep_bwd_narrow_cuda);
}

// No tensor argument: dispatched without a device key (it queries the current CUDA device).
TORCH_LIBRARY_IMPL(melnet_fast, CompositeExplicitAutograd, m) {
  m.impl("lstm_sweep_narrow_capacity", &lstm_sweep_narrow_capacity_cuda);
}

}  // namespace melnet_fast
