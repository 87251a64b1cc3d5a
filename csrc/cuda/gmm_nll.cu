// CUDA Gaussian-mixture NLL: the CUDA implementations of melnet_fast::gmm_nll_fwd and gmm_nll_bwd (schemas in
// csrc/bindings.cpp; autograd in melnet_fast/ops/gmm/compiled.py, shared with the CPU kernel).
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
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "common.h"

namespace melnet_fast {
namespace {

constexpr float kLogSqrt2Pi = 0.91893853320467274178f;
constexpr int kThreads = 128;            // threads per block; also the most rows per tile
constexpr int kSmemBytes = 48 * 1024;    // shared memory per block without the opt-in attribute
constexpr int kBuffers = 4;              // [R, pitch] buffers: mu, log_sigma, logit and b (backward only)

// exp(x) to about 1 ulp for any finite x, from adds and multiplies only (the same steps as _exp_precise in
// kernels/gmm_nll.py). The build uses --use_fast_math, where expf becomes ex2.approx(x * log2 e) with the product
// rounded: a relative error of about |x| 2^-23, 20x PyTorch's expf at |x| = 20. 1 / sigma = exp(-log_sigma)
// multiplies z, so it is computed here instead: Cody-Waite reduction x = n ln 2 + r with |r| <= ln(2) / 2
// (n ln 2 is exact: kLn2Hi has 16 significant bits and |n| < 2^8; contraction into FMAs only makes it more
// exact), e^r by its Taylor polynomial of degree 7 (truncation below 6e-9 relative), 2^n as 2^h 2^(n - h) with
// h = floor(n / 2) built from exponent bits, so the products underflow to 0 or overflow to inf where exp does.
// x is clamped to [-104, 89] first (exp is 0 or inf in float32 beyond).
__device__ __forceinline__ float exp_precise(float x) {
  constexpr float kLog2e = 1.4426950408889634f, kLn2Hi = 0.693145751953125f, kLn2Lo = 1.4286068203094172e-06f;
  x = fminf(fmaxf(x, -104.f), 89.f);
  const float nf = floorf(x * kLog2e + 0.5f);
  const float r = (x - nf * kLn2Hi) - nf * kLn2Lo;
  float p = 1.f / 5040.f + r * (1.f / 40320.f);
  p = 1.f / 720.f + r * p;
  p = 1.f / 120.f + r * p;
  p = 1.f / 24.f + r * p;
  p = 1.f / 6.f + r * p;
  p = 0.5f + r * p;
  p = 1.f + r * p;
  p = 1.f + r * p;
  const int n = static_cast<int>(nf), h = n >> 1;  // h = floor(n / 2)
  return (p * __int_as_float((h + 127) << 23)) * __int_as_float((n - h + 127) << 23);
}

// Where an argument is <= 0 and small weights may lose relative accuracy (they add negligibly to the sums).
__device__ __forceinline__ float exp_fast(float x) { return __expf(x); }
__device__ __forceinline__ float log_m(float x) { return logf(x); }
__device__ __forceinline__ float max_m(float a, float b) { return fmaxf(a, b); }
// float64 storage (torch.library.opcheck / gradcheck) computes in float64: fast math leaves double alone.
__device__ __forceinline__ double exp_precise(double x) { return exp(x); }
__device__ __forceinline__ double exp_fast(double x) { return exp(x); }
__device__ __forceinline__ double log_m(double x) { return log(x); }
__device__ __forceinline__ double max_m(double a, double b) { return fmax(a, b); }

template <typename T>
struct GmmArgs {
  const T* x;
  const T* mu;
  const T* ls;
  const T* logit;
  const T* grad;       // backward only
  T* out;              // nll (forward) or d/dx (backward): contiguous [N]
  T* gmu;              // backward only, with gls, glogit: contiguous [N, K]
  T* gls;
  T* glogit;
  int64_t sx, sg;      // element strides of x and grad
  int64_t smu_r, smu_k, sls_r, sls_k, slp_r, slp_k;  // (row, component) strides of mu, log_sigma, logit
  int64_t N;
  int K, R, pitch;     // components, rows per tile, shared row pitch
};

// The math type: float for float / bfloat16 / half storage, double for double.
template <typename T>
using Math = at::opmath_type<T>;

template <typename T>
__device__ __forceinline__ Math<T> ld(const T* p) {
  return static_cast<Math<T>>(*p);
}

// One kernel for both directions: kBwd selects the backward (gradients) over the forward (nll).
template <typename T, bool kBwd>
__global__ void __launch_bounds__(kThreads) gmm_nll_kernel(const GmmArgs<T> a) {
  using M = Math<T>;
  extern __shared__ __align__(sizeof(double)) unsigned char smem_bytes[];
  M* smem = reinterpret_cast<M*>(smem_bytes);
  const int K = a.K, R = a.R, P = a.pitch, t = threadIdx.x;
  M* s_mu = smem;           // mu_k, then z_k, then d/dmu_k
  M* s_ls = s_mu + R * P;   // log_sigma_k, then 1 / sigma_k, then d/dlog_sigma_k
  M* s_lp = s_ls + R * P;   // logit_k, then b_k (forward) or e^(d_k) (backward), then d/dlogit_k
  M* s_b = s_lp + R * P;    // backward: b_k, then e^(b_k - max b)
  const M inf = INFINITY;

  for (int64_t r0 = static_cast<int64_t>(blockIdx.x) * R; r0 < a.N; r0 += static_cast<int64_t>(gridDim.x) * R) {
    const int rows = a.N - r0 < R ? static_cast<int>(a.N - r0) : R;
    for (int i = t; i < rows * K; i += blockDim.x) {
      const int r = i / K, k = i - r * K;
      const int64_t row = r0 + r;
      s_mu[r * P + k] = ld(a.mu + row * a.smu_r + k * a.smu_k);
      s_ls[r * P + k] = ld(a.ls + row * a.sls_r + k * a.sls_k);
      s_lp[r * P + k] = ld(a.logit + row * a.slp_r + k * a.slp_k);
    }
    __syncthreads();

    if (t < rows) {
      const int64_t row = r0 + t;
      M* mu = s_mu + t * P;
      M* ls = s_ls + t * P;
      M* lp = s_lp + t * P;
      M* bq = s_b + t * P;
      const M x = ld(a.x + row * a.sx);
      M mx = -inf;
      for (int k = 0; k < K; ++k) mx = max_m(mx, lp[k]);
      M se = M(0), bmax = -inf;
      for (int k = 0; k < K; ++k) {
        const M d = lp[k] - mx, l = ls[k];
        const M inv_s = exp_precise(-l);
        const M z = (x - mu[k]) * inv_s;
        const M b = d - M(0.5) * z * z - l;
        const M e = exp_fast(d);  // d <= 0: only tiny weights lose relative accuracy, negligibly
        se += e;
        bmax = max_m(bmax, b);
        if (kBwd) {
          mu[k] = z;
          ls[k] = inv_s;
          lp[k] = e;
          bq[k] = b;
        } else {
          lp[k] = b;
        }
      }
      M* bk = kBwd ? bq : lp;
      M sa = M(0);
      for (int k = 0; k < K; ++k) {
        const M q = exp_fast(bk[k] - bmax);
        sa += q;
        if (kBwd) bk[k] = q;
      }
      if (!kBwd) {
        const M nll = (M(kLogSqrt2Pi) - bmax) - log_m(sa / se);
        // every component has density 0 (max b = -inf): nll = +inf, not inf - inf
        a.out[row] = static_cast<T>(bmax > -inf ? nll : -bmax);
      } else {
        const M g = ld(a.grad + row * a.sg);
        const M g_sa = g / sa, g_se = g / se;
        M dx = M(0);
        for (int k = 0; k < K; ++k) {
          const M q = bq[k], z = mu[k], inv_s = ls[k];
          const M gw = q * g_sa;  // g w_k
          // a weight that underflowed to 0 zeroes its z terms, so an infinite z never meets it (0 * inf)
          const M dz = q != M(0) ? gw * z * inv_s : M(0);
          dx += dz;
          mu[k] = -dz;
          ls[k] = q != M(0) ? gw * (M(1) - z * z) : M(0);
          lp[k] = lp[k] * g_se - gw;  // g (pi_k - w_k)
        }
        a.out[row] = static_cast<T>(dx);
      }
    }
    __syncthreads();

    if (kBwd) {  // the tile's gradients: contiguous [rows, K] at row r0 of each output
      const int64_t base = r0 * K;
      for (int i = t; i < rows * K; i += blockDim.x) {
        const int r = i / K, k = i - r * K;
        a.gmu[base + i] = static_cast<T>(s_mu[r * P + k]);
        a.gls[base + i] = static_cast<T>(s_ls[r * P + k]);
        a.glogit[base + i] = static_cast<T>(s_lp[r * P + k]);
      }
      __syncthreads();  // before the next tile's loads overwrite shared memory
    }
  }
}

int pitch_of(int K) { return K | 1; }  // odd: conflict-free per-row walks

// Rows per tile: as many as kBuffers shared buffers of that many rows fit in kSmemBytes, at most kThreads.
// 0 when a single row does not fit: K > 3071 (float math) or K > 1535 (double).
int rows_per_tile(int K, size_t elem_bytes) {
  return static_cast<int>(std::min<size_t>(kThreads, kSmemBytes / (kBuffers * pitch_of(K) * elem_bytes)));
}

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
  TORCH_CHECK(a.R >= 1, "gmm_nll (cuda): K = ", a.K, " mixture components do not fit the kernel's shared memory "
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

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> gmm_nll_bwd_cuda(
    const at::Tensor& grad_in, const at::Tensor& x_in, const at::Tensor& mu_in, const at::Tensor& ls_in,
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
