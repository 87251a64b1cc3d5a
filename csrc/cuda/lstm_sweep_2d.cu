// CUDA 2D LSTM sweep, forward and backward: the host side of the algorithm of ops/lstm_sweep (the per-step
// kernels are in lstm_step.cuh).
//
// Forward: one cuBLAS GEMM for the input projections of every direction, then max(T, F) launches of the fused
// step kernel, each serving every direction still active. Backward: max(T, F) launches of the fused backward step
// (gate gradients into dgates [N, R*4H]), then the weight and input gradients as GEMMs over all positions with
// float32 accumulation (bfloat16 / float16 weight gradients are computed in float32 and cast at the end).
//
// Dtypes: float32, bfloat16, float16, one for all inputs. Outputs y and the saved gates in x's dtype; the saved
// cell state is always float32 here (cell_dtype below); every gradient in its input's dtype.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <climits>
#include <tuple>
#include <vector>

#include "../common.h"
#include "../sweep_host.h"
#include "lstm_step.cuh"

namespace melnet_fast {
namespace {

using sweep_cuda::Dir;
using sweep_cuda::Geometry;

// The saved cell state keeps float32 for 16-bit inputs (the recurrence runs in float32); for float32 inputs
// it is x's dtype anyway.
at::ScalarType cell_dtype(at::ScalarType x_dtype) {
  return (x_dtype == at::kBFloat16 || x_dtype == at::kHalf) ? at::kFloat : x_dtype;
}

struct Sizes {
  int64_t B, T, F, I, R, H, G, N;
  Geometry geo;
  int64_t lines_max;  // the most lines of any direction: rows of the running-state buffers
  int64_t steps;      // sweep_cuda::sweep_steps: max(T, F) when both axes are swept
};

void check_tensor(const char* op, const char* name, const at::Tensor& t, const at::Tensor& x,
                  at::IntArrayRef shape) {
  TORCH_CHECK(t.is_cuda(), op, ": ", name, " must be a CUDA tensor, got one on ", t.device());
  TORCH_CHECK(t.device() == x.device(), op, ": ", name, " is on ", t.device(), " but x is on ", x.device());
  TORCH_CHECK(t.scalar_type() == x.scalar_type(), op, ": ", name, " has dtype ", t.scalar_type(),
              " but x has dtype ", x.scalar_type());
  TORCH_CHECK(t.sizes() == shape, op, ": ", name, " must have shape ", shape, ", got ", t.sizes());
}

// Checks every argument the two ops share and derives the sizes and the direction table.
Sizes check_args(const char* op, const at::Tensor& x, const at::Tensor& w_ih, const at::Tensor& w_hh,
                 const at::Tensor& h0, const at::Tensor& c0, at::IntArrayRef directions) {
  TORCH_CHECK(x.is_cuda(), op, ": x must be a CUDA tensor, got one on ", x.device());
  TORCH_CHECK(x.dim() == 4, op, ": x must have shape [B, T, F, I], got ", x.sizes());
  const auto dt = x.scalar_type();
  TORCH_CHECK(dt == at::kFloat || dt == at::kBFloat16 || dt == at::kHalf, op,
              ": x must be float32, bfloat16 or float16, got ", dt);
  TORCH_CHECK(w_hh.dim() == 3, op, ": w_hh must have shape [R, 4H, H], got ", w_hh.sizes());
  Sizes s;
  s.B = x.size(0), s.T = x.size(1), s.F = x.size(2), s.I = x.size(3);
  s.R = w_hh.size(0), s.H = w_hh.size(2), s.G = 4 * s.H;
  s.N = s.B * s.T * s.F;
  check_tensor(op, "w_hh", w_hh, x, {s.R, s.G, s.H});
  check_tensor(op, "w_ih", w_ih, x, {s.R, s.G, s.I});
  check_tensor(op, "h0", h0, x, {s.R, s.H});
  check_tensor(op, "c0", c0, x, {s.R, s.H});
  TORCH_CHECK(s.R >= 1 && s.R <= sweep_cuda::kMaxDirections, op, ": w_hh must hold 1 to ",
              sweep_cuda::kMaxDirections, " directions, got ", s.R);
  TORCH_CHECK(static_cast<int64_t>(directions.size()) == s.R, op, ": directions has ", directions.size(),
              " codes but w_hh holds ", s.R, " directions");
  // The kernels index lines and positions in int64 but sizes, steps and unit indices in int.
  TORCH_CHECK(s.T < INT_MAX && s.F < INT_MAX && s.G < INT_MAX / 2, op, ": T, F or H too large");
  s.geo.T = s.T;
  s.geo.F = s.F;
  s.geo.N = s.N;
  s.geo.R = static_cast<int>(s.R);
  s.geo.H = static_cast<int>(s.H);
  s.lines_max = 0;
  for (int64_t r = 0; r < s.R; ++r) {
    const int64_t code = directions[r];
    TORCH_CHECK(code >= 0 && code <= 3, op, ": directions[", r, "] must be a code 0..3 (t+, t-, f+, f-), got ",
                code);
    for (int64_t q = 0; q < r; ++q) {
      TORCH_CHECK(directions[q] != code, op, ": directions must be distinct, got code ", code, " twice");
    }
    Dir& d = s.geo.dir[r];
    d.along_t = code < 2;
    d.reverse = code % 2;
    d.len = static_cast<int>(d.along_t ? s.T : s.F);
    d.lines = d.along_t ? s.B * s.F : s.B * s.T;
    s.lines_max = std::max(s.lines_max, d.lines);
  }
  for (int64_t r = s.R; r < sweep_cuda::kMaxDirections; ++r) s.geo.dir[r] = Dir{0, 0, 0, 0};
  s.steps = sweep_cuda::sweep_steps(s.geo);
  return s;
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The kernels' storage type for x's dtype.
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
      TORCH_CHECK(false, "lstm_sweep_2d (CUDA): unsupported dtype ", dt);
  }
}

template <typename T>
T* ptr(const at::Tensor& t) {
  return reinterpret_cast<T*>(t.data_ptr());
}

// a @ b accumulated and returned in float32: cuBLAS with float32 compute for 16-bit inputs (at::mm with an
// output dtype); float32 inputs take the plain product, exact float32 unless TF32 was enabled globally.
at::Tensor mm_f32(const at::Tensor& a, const at::Tensor& b) {
  if (a.scalar_type() == at::kFloat) return at::mm(a, b);
  return at::mm(a, b, at::kFloat);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> lstm_sweep_2d_fwd_cuda(
    const at::Tensor& x, const at::Tensor& w_ih, const at::Tensor& w_hh_in, const at::Tensor& bias,
    const at::Tensor& h0_in, const at::Tensor& c0_in, at::IntArrayRef directions, bool save) {
  constexpr const char* op = "lstm_sweep_2d_fwd (CUDA)";
  const Sizes sz = check_args(op, x, w_ih, w_hh_in, h0_in, c0_in, directions);
  check_tensor(op, "bias", bias, x, {sz.R, sz.G});
  const c10::cuda::CUDAGuard guard(x.device());
  const int64_t B = sz.B, T = sz.T, F = sz.F, I = sz.I, R = sz.R, H = sz.H, G = sz.G, N = sz.N;
  const auto cell_options = x.options().dtype(cell_dtype(x.scalar_type()));

  auto y = new_output({B, T, F, R * H}, x.options());
  auto gates = save ? new_output({R, B, T, F, G}, x.options()) : at::empty({0}, x.options());
  auto cell = save ? new_output({R, B, T, F, H}, cell_options) : at::empty({0}, cell_options);
  if (N == 0 || H == 0) return {y, gates, cell};

  const auto w_hh = w_hh_in.contiguous();
  const auto h0 = h0_in.contiguous();
  const auto c0 = c0_in.contiguous();
  // The input projections of every direction as ONE GEMM: [N, I] x [I, R*4H] + bias -> pre [N, R*4H], row = flat
  // position (x.reshape copies only when x's strides cannot be viewed as [N, I]).
  const auto pre = at::addmm(bias.reshape({R * G}), x.reshape({N, I}), w_ih.reshape({R * G, I}).t()).contiguous();
  // Running cell states; new_output (NaN in tests) so that reading a state before the step writing it shows.
  auto c_run = new_output({R, sz.lines_max, H}, x.options().dtype(at::kFloat));

  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();  // the stream of the GEMMs around
  dispatch_storage(x.scalar_type(), [&](auto tag) {
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
    p.lines_max = sz.lines_max;
    p.geo = sz.geo;
    for (int64_t s = 0; s < sz.steps; ++s) {
      p.s = static_cast<int>(s);
      const dim3 grid(static_cast<unsigned>(sweep_cuda::line_tiles(sz.geo, s)),
                      static_cast<unsigned>(ceil_div(H, sweep_cuda::kFwdUnits)), static_cast<unsigned>(R));
      sweep_cuda::lstm_fwd_step_kernel<T_><<<grid, sweep_cuda::kThreads, 0, stream>>>(p);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
  return {y, gates, cell};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> lstm_sweep_2d_bwd_cuda(
    const at::Tensor& grad_y_in, const at::Tensor& x, const at::Tensor& w_ih, const at::Tensor& w_hh_in,
    const at::Tensor& h0_in, const at::Tensor& c0_in, const at::Tensor& y_in, const at::Tensor& gates_in,
    const at::Tensor& cell_in, at::IntArrayRef directions) {
  constexpr const char* op = "lstm_sweep_2d_bwd (CUDA)";
  const Sizes sz = check_args(op, x, w_ih, w_hh_in, h0_in, c0_in, directions);
  const int64_t B = sz.B, T = sz.T, F = sz.F, I = sz.I, R = sz.R, H = sz.H, G = sz.G, N = sz.N;
  check_tensor(op, "grad_y", grad_y_in, x, {B, T, F, R * H});
  check_tensor(op, "y", y_in, x, {B, T, F, R * H});
  const auto cdt = cell_dtype(x.scalar_type());
  TORCH_CHECK(gates_in.numel() == R * N * G && cell_in.numel() == R * N * H, op,
              ": the forward did not save its gates and cell states (called with save=false)");
  TORCH_CHECK(gates_in.is_cuda() && gates_in.device() == x.device() && gates_in.scalar_type() == x.scalar_type(),
              op, ": gates must be a ", x.scalar_type(), " tensor on ", x.device());
  TORCH_CHECK(cell_in.is_cuda() && cell_in.device() == x.device() && cell_in.scalar_type() == cdt, op,
              ": cell must be a ", cdt, " tensor on ", x.device(), ", got ", cell_in.scalar_type());
  const c10::cuda::CUDAGuard guard(x.device());

  auto dx = new_output({B, T, F, I}, x.options());
  auto dw_ih = new_output({R, G, I}, w_ih.options());
  auto dw_hh = new_output({R, G, H}, w_hh_in.options());
  auto dbias = new_output({R, G}, w_hh_in.options());
  auto dh0 = new_output({R, H}, h0_in.options());
  auto dc0 = new_output({R, H}, c0_in.options());
  if (N == 0 || H == 0) {
    for (auto* t : {&dx, &dw_ih, &dw_hh, &dbias, &dh0, &dc0}) t->zero_();
    return {dx, dw_ih, dw_hh, dbias, dh0, dc0};
  }

  const auto grad_y = grad_y_in.contiguous();
  const auto w_hh = w_hh_in.contiguous();
  const auto h0 = h0_in.contiguous();
  const auto c0 = c0_in.contiguous();
  const auto y = y_in.contiguous();
  const auto gates = gates_in.contiguous();
  const auto cell = cell_in.contiguous();
  // Gate pre-activation gradients, [N, R*4H] like the forward's projections; every element is written by the
  // step of its position (each position lies on exactly one line of each direction). Both buffers come from
  // new_output (NaN in tests): a step reading what no earlier step wrote poisons the gradients.
  auto dgates = new_output({N, R * G}, x.options());
  auto dc_run = new_output({R, sz.lines_max, H}, x.options().dtype(at::kFloat));

  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();  // the stream of the GEMMs around
  dispatch_storage(x.scalar_type(), [&](auto tag) {
    using T_ = decltype(tag);
    sweep_cuda::BwdParams<T_> p;
    p.grad_y = ptr<const T_>(grad_y);
    p.w_hh = ptr<const T_>(w_hh);
    p.gates = ptr<const T_>(gates);
    p.cell = ptr<const float>(cell);
    p.c0 = ptr<const T_>(c0);
    p.dgates = ptr<T_>(dgates);
    p.dc_run = ptr<float>(dc_run);
    p.lines_max = sz.lines_max;
    p.geo = sz.geo;
    for (int64_t s = sz.steps - 1; s >= 0; --s) {
      p.s = static_cast<int>(s);
      const dim3 grid(static_cast<unsigned>(sweep_cuda::line_tiles(sz.geo, s)),
                      static_cast<unsigned>(ceil_div(H, sweep_cuda::kBwdUnits)), static_cast<unsigned>(R));
      sweep_cuda::lstm_bwd_step_kernel<T_><<<grid, sweep_cuda::kThreads, 0, stream>>>(p);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });

  // Input and weight gradients over all positions at once.
  const auto w_ih_2d = w_ih.reshape({R * G, I});
  auto dx_2d = dx.view({N, I});
  at::mm_out(dx_2d, dgates, w_ih_2d);  // [N, R*4H] x [R*4H, I], x's dtype
  dw_ih.view({R * G, I}).copy_(mm_f32(dgates.t(), x.reshape({N, I})));
  dbias.view({R * G}).copy_(dgates.sum(at::IntArrayRef(0), /*keepdim=*/false, at::kFloat));
  const auto dg5 = dgates.view({B, T, F, R, G});
  const auto y4 = y.view({B, T, F, R * H});
  for (int64_t r = 0; r < R; ++r) {
    const Dir& d = sz.geo.dir[r];
    // dw_hh[r] = sum over positions of dG_r^T h_prev, with h0 as h_prev at each line's first position.
    const auto h_prev = previous_hidden(y4.narrow(3, r * H, H), h0[r], d.along_t, d.reverse);
    dw_hh[r].copy_(mm_f32(dgates.narrow(1, r * G, G).t(), h_prev));
    // h0 feeds the first step of every line: dh0[r] = (sum over lines of dG at the first position) @ w_hh[r].
    const auto first = dg5.select(3, r).select(d.along_t ? 1 : 2, d.reverse ? d.len - 1 : 0);  // [B, F|T, G]
    const auto first_sum = first.sum(at::IntArrayRef({0, 1}), /*keepdim=*/false, at::kFloat);
    dh0[r].copy_(at::mv(w_hh[r].to(at::kFloat).t(), first_sum));
    dc0[r].copy_(dc_run[r].narrow(0, 0, d.lines).sum(0));
  }
  return {dx, dw_ih, dw_hh, dbias, dh0, dc0};
}

}  // namespace

TORCH_LIBRARY_IMPL(melnet_fast, CUDA, m) {
  m.impl("lstm_sweep_2d_fwd", &lstm_sweep_2d_fwd_cuda);
  m.impl("lstm_sweep_2d_bwd", &lstm_sweep_2d_bwd_cuda);
}

}  // namespace melnet_fast
