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

#include "scalar_math.h"

namespace melnet_fast {
namespace gmm_cuda {

constexpr int kThreads = 128;            // threads per block; also the most rows per tile
constexpr int kSmemBytes = 48 * 1024;    // shared memory per block without the opt-in attribute
constexpr int kBuffers = 4;              // [R, pitch] buffers: mu, log_sigma, logit and b (backward only)

// NaN-ignoring max (a NaN logit or b makes its own terms NaN).
__device__ __forceinline__ float max_m(float a, float b) { return fmaxf(a, b); }
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
        const M inv_s = math::exp(-l);
        const M z = (x - mu[k]) * inv_s;
        const M b = d - M(0.5) * z * z - l;
        const M e = math::exp(d);
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
        const M q = math::exp(bk[k] - bmax);
        sa += q;
        if (kBwd) bk[k] = q;
      }
      if (!kBwd) {
        const M nll = (M(math::kLogSqrt2Pi) - bmax) - math::log(math::div(sa, se));
        // every component has density 0 (max b = -inf): nll = +inf, not inf - inf
        a.out[row] = static_cast<T>(bmax > -inf ? nll : -bmax);
      } else {
        const M g = ld(a.grad + row * a.sg);
        const M g_sa = math::div(g, sa), g_se = math::div(g, se);
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
