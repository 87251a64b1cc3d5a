// Device code of the CUDA Gaussian-mixture NLL (the kernel, its argument struct, the tile geometry), torch-free so
// that tests/cuda_emulation can compile it on the host; the numerics, work split and host side are described and
// implemented in csrc/cuda/gmm_nll.cu, the only file of the extension that includes this header. T is the storage
// type: float, double, or a 16-bit type constructible from float and convertible to float (c10::Half,
// c10::BFloat16).
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>

namespace melnet_fast {
namespace gmm_cuda {

// log sqrt(2 pi) in double: the float64 path (gradcheck, opcheck) needs all its digits; M(kLogSqrt2Pi) rounds it to
// the same float32 constant as before for float math (a compile-time conversion).
constexpr double kLogSqrt2Pi = 0.91893853320467274178;
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

// The math type: float for float / bfloat16 / half storage, double for double (at::opmath_type's choice for the
// dtypes the host dispatches on; spelled out here so that this header needs no torch).
template <typename T>
struct MathOf {
  using type = float;
};
template <>
struct MathOf<double> {
  using type = double;
};
template <typename T>
using Math = typename MathOf<T>::type;

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


}  // namespace gmm_cuda
}  // namespace melnet_fast
