// CUDA Gaussian-mixture NLL: the CUDA implementations of melnet_fast::gmm_nll_fwd and gmm_nll_bwd (schemas in
// csrc/bindings.cpp; autograd in melnet_fast/ops/gmm/cpp_backend.py, shared with the CPU kernel).
//
// Numerics are those of the CPU kernel (csrc/gmm_cpu.cpp), in float32 for float32 / bfloat16 / float16 storage
// (float64 storage, for gradcheck, computes in float64; the public op sends float64 to the reference). With
// d_k = logit_k - max logit, z_k = (x - mu_k) exp(-log_sigma_k), b_k = d_k - z_k^2 / 2 - log_sigma_k:
//   nll = log sqrt(2 pi) - max b - log(sum_k e^(b_k - max b) / sum_k e^(d_k))
// posterior w_k = e^(b_k - max b) / sum e^(b - max b), pi_k = e^(d_k) / sum e^d, and the gradients (times g):
//   d/dx = sum_k w_k z_k / sigma_k, d/dmu_k = -w_k z_k / sigma_k, d/dlog_sigma_k = w_k (1 - z_k^2),
//   d/dlogit_k = pi_k - w_k.
//
// Work split: one thread per element (row of K components). A block takes a tile of R rows: its 128 threads copy
// the tile's [R, K] parameters from global memory to shared memory (consecutive threads read consecutive
// components, so the loads coalesce whatever K is), each thread then runs its row's passes over components in
// shared memory, and in the backward the [R, K] gradients go back the same way. Shared rows have an odd pitch
// (K or K + 1) so the threads of a warp, each walking its own row, hit distinct banks. Blocks stride over the
// tiles (grid-stride). Inputs are read through (row, component) strides: views whose leading dimensions merge
// into one stride (e.g. the head's theta[..., :K]) are not copied.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "common.h"
#include "cuda/gmm_nll_kernel.cuh"

namespace melnet_fast {
namespace {

using namespace gmm_cuda;

void check_args(const at::Tensor& x, const at::Tensor& mu, const at::Tensor& ls, const at::Tensor& lp) {
  TORCH_CHECK(x.is_cuda(), "gmm_nll (cuda): x must be a CUDA tensor");
  TORCH_CHECK(mu.dim() == x.dim() + 1 && mu.sizes().slice(0, x.dim()) == x.sizes(),
              "gmm_nll (cuda): mu must have shape x.shape + (K,)");
  TORCH_CHECK(ls.sizes() == mu.sizes() && lp.sizes() == mu.sizes(),
              "gmm_nll (cuda): log_sigma and logit_pi must have the shape of mu");
  for (const auto* t : {&mu, &ls, &lp}) {
    TORCH_CHECK(t->device() == x.device() && t->scalar_type() == x.scalar_type(),
                "gmm_nll (cuda): all arguments must be on one device and of one dtype");
  }
  TORCH_CHECK(mu.size(-1) >= 1, "gmm_nll (cuda): K must be >= 1");
}

template <typename T>
void fill_strides(GmmArgs<T>& a, const at::Tensor& x, const at::Tensor& mu, const at::Tensor& ls,
                  const at::Tensor& lp) {
  a.x = x.data_ptr<T>();
  a.mu = mu.data_ptr<T>();
  a.ls = ls.data_ptr<T>();
  a.logit = lp.data_ptr<T>();
  a.sx = x.stride(0);
  a.smu_r = mu.stride(0);
  a.smu_k = mu.stride(1);
  a.sls_r = ls.stride(0);
  a.sls_k = ls.stride(1);
  a.slp_r = lp.stride(0);
  a.slp_k = lp.stride(1);
  a.N = x.size(0);
  a.K = static_cast<int>(mu.size(1));
  a.R = rows_per_tile(a.K, sizeof(Math<T>));
  a.pitch = pitch_of(a.K);
  TORCH_CHECK(a.R >= 1, "gmm_nll (cuda): K = ", a.K,
              " mixture components do not fit the kernel's shared memory "
              "(at most 3071 with float32 math)");
}

template <typename T, bool kBwd>
void launch(const GmmArgs<T>& a) {
  const int64_t tiles = (a.N + a.R - 1) / a.R;
  int device = 0, sms = 0;
  C10_CUDA_CHECK(cudaGetDevice(&device));
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  const int blocks = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(tiles, int64_t{sms} * 16)));
  const size_t smem = static_cast<size_t>((kBwd ? 4 : 3) * a.R * a.pitch) * sizeof(Math<T>);
  gmm_nll_kernel<T, kBwd><<<blocks, kThreads, smem, c10::cuda::getCurrentCUDAStream()>>>(a);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

at::Tensor gmm_nll_fwd_cuda(const at::Tensor& x_in, const at::Tensor& mu_in, const at::Tensor& ls_in,
                            const at::Tensor& lp_in) {
  check_args(x_in, mu_in, ls_in, lp_in);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const int64_t N = x_in.numel(), K = mu_in.size(-1);
  auto out = new_output(x_in.sizes(), x_in.options());
  if (N == 0) return out;
  // [N] and [N, K] views (reshape copies only when the leading dimensions do not merge into one stride)
  const auto x = x_in.reshape({N});
  const auto mu = mu_in.reshape({N, K});
  const auto ls = ls_in.reshape({N, K});
  const auto lp = lp_in.reshape({N, K});
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "gmm_nll_fwd_cuda", [&] {
    GmmArgs<scalar_t> a{};
    fill_strides(a, x, mu, ls, lp);
    a.out = out.data_ptr<scalar_t>();
    launch<scalar_t, false>(a);
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> gmm_nll_bwd_cuda(const at::Tensor& grad_in,
                                                                            const at::Tensor& x_in,
                                                                            const at::Tensor& mu_in,
                                                                            const at::Tensor& ls_in,
                                                                            const at::Tensor& lp_in) {
  check_args(x_in, mu_in, ls_in, lp_in);
  TORCH_CHECK(grad_in.sizes() == x_in.sizes() && grad_in.device() == x_in.device() &&
                  grad_in.scalar_type() == x_in.scalar_type(),
              "gmm_nll (cuda): grad must have the shape, device and dtype of x");
  const c10::cuda::CUDAGuard guard(x_in.device());
  const int64_t N = x_in.numel(), K = mu_in.size(-1);
  auto gx = new_output(x_in.sizes(), x_in.options());
  auto gmu = new_output(mu_in.sizes(), x_in.options());
  auto gls = new_output(mu_in.sizes(), x_in.options());
  auto glp = new_output(mu_in.sizes(), x_in.options());
  if (N == 0) return {gx, gmu, gls, glp};
  const auto grad = grad_in.reshape({N});  // an expanded scalar (stride 0) stays a view
  const auto x = x_in.reshape({N});
  const auto mu = mu_in.reshape({N, K});
  const auto ls = ls_in.reshape({N, K});
  const auto lp = lp_in.reshape({N, K});
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "gmm_nll_bwd_cuda", [&] {
    GmmArgs<scalar_t> a{};
    fill_strides(a, x, mu, ls, lp);
    a.grad = grad.data_ptr<scalar_t>();
    a.sg = grad.stride(0);
    a.out = gx.data_ptr<scalar_t>();
    a.gmu = gmu.data_ptr<scalar_t>();
    a.gls = gls.data_ptr<scalar_t>();
    a.glogit = glp.data_ptr<scalar_t>();
    launch<scalar_t, true>(a);
  });
  return {gx, gmu, gls, glp};
}

}  // namespace

TORCH_LIBRARY_IMPL(melnet_fast, CUDA, m) {
  m.impl("gmm_nll_fwd", &gmm_nll_fwd_cuda);
  m.impl("gmm_nll_bwd", &gmm_nll_bwd_cuda);
}

}  // namespace melnet_fast
