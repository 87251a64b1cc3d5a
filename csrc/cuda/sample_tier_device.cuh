// Device helpers of the persistent tier sampler (csrc/cuda/sample_tier.cu): float32 math on weights stored as
// float32, bfloat16 or float16; warp-level dot products of a few weight rows against a few input vectors; the
// LSTM pointwise update (maths from csrc/scalar_math.h). Included by sample_tier_kernel.cuh only.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/flags.cuh"
#include "scalar_math.h"

namespace melnet_fast {
namespace sampler_cuda {

constexpr int kWarp = 32;
constexpr unsigned kFullMask = 0xffffffffu;

// ------------------------------------------------------------------------------------------------ conversions
// The build uses -D__CUDA_NO_*_CONVERSIONS__, so conversions are spelled out.
__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }

// One read-only weight element (weights never change during the kernel, so the non-coherent path is safe).
template <typename WT>
__device__ __forceinline__ float load_weight(const WT* p) {
  return to_float(__ldg(p));
}

// 16 bytes of weights (4 float32 or 8 bfloat16 / float16), converted to float. The pointer must be 16-byte
// aligned: the host only enables the vector path when every weight tensor is 16-byte aligned and D % kN == 0,
// so that every row start and every chunk k (a multiple of kN) inside a row is aligned.
template <typename WT>
struct WeightVec;

// load() fetches the 16 raw bytes, unpack() converts them; kept apart so that several rows stay packed in
// registers (4 registers a row) while they are used against several input columns.
template <>
struct WeightVec<float> {
  static constexpr int kN = 4;
  __device__ static __forceinline__ uint4 load(const float* p) { return __ldg(reinterpret_cast<const uint4*>(p)); }
  __device__ static __forceinline__ void unpack(const uint4& r, float (&out)[kN]) {
    out[0] = __uint_as_float(r.x);
    out[1] = __uint_as_float(r.y);
    out[2] = __uint_as_float(r.z);
    out[3] = __uint_as_float(r.w);
  }
};

template <>
struct WeightVec<__nv_bfloat16> {
  static constexpr int kN = 8;
  __device__ static __forceinline__ uint4 load(const __nv_bfloat16* p) {
    return __ldg(reinterpret_cast<const uint4*>(p));
  }
  __device__ static __forceinline__ void unpack(const uint4& r, float (&out)[kN]) {
    const unsigned words[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      // Little endian: the element at the lower address is the low half. bfloat16 is the top half of a float32,
      // so the conversion is a shift (exact).
      out[2 * q] = __uint_as_float(words[q] << 16);
      out[2 * q + 1] = __uint_as_float(words[q] & 0xffff0000u);
    }
  }
};

template <>
struct WeightVec<__half> {
  static constexpr int kN = 8;
  __device__ static __forceinline__ uint4 load(const __half* p) { return __ldg(reinterpret_cast<const uint4*>(p)); }
  __device__ static __forceinline__ void unpack(const uint4& r, float (&out)[kN]) {
    const unsigned words[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      out[2 * q] = __half2float(__ushort_as_half(static_cast<unsigned short>(words[q] & 0xffffu)));
      out[2 * q + 1] = __half2float(__ushort_as_half(static_cast<unsigned short>(words[q] >> 16)));
    }
  }
};

// ------------------------------------------------------------------------------------------------ inputs
// Inputs of the dot products: float32 vectors in the kernel's global scratch (written by other blocks before the
// last grid barrier). They are read with plain loads, never __ldg / __restrict__: the non-coherent path may
// return stale data for memory written during the kernel. load(k) reads elements k..k+N-1 (k a multiple of N,
// 16-byte aligned: scratch rows start at multiples of D floats and the vector path needs D % 4 == 0).
// Both note their reads for the grid emulator's flag checker (flags::note_read: nothing on the GPU).
struct VecIn {
  const float* a;
  template <int N>
  __device__ __forceinline__ void load(int k, float (&v)[N]) const {
    flags::note_read(a + k, N);
#pragma unroll
    for (int q = 0; q < N / 4; ++q) {
      const float4 t = *reinterpret_cast<const float4*>(a + k + 4 * q);
      v[4 * q] = t.x;
      v[4 * q + 1] = t.y;
      v[4 * q + 2] = t.z;
      v[4 * q + 3] = t.w;
    }
  }
  __device__ __forceinline__ float at(int k) const {
    flags::note_read(a + k, 1);
    return a[k];
  }
};

// a[k] + s * c[k]: the input of a frequency-delayed cell, hf + ht_layer (s = 1, exact: fma(1, c, a) = a + c
// rounded once) or, at layer 0, (xf_b + cz_f + ht_layer0) + x_prev * xf_w.
struct AxpyIn {
  const float* a;
  const float* c;
  float s;
  template <int N>
  __device__ __forceinline__ void load(int k, float (&v)[N]) const {
    flags::note_read(a + k, N);
    flags::note_read(c + k, N);
#pragma unroll
    for (int q = 0; q < N / 4; ++q) {
      const float4 ta = *reinterpret_cast<const float4*>(a + k + 4 * q);
      const float4 tc = *reinterpret_cast<const float4*>(c + k + 4 * q);
      v[4 * q] = fmaf(s, tc.x, ta.x);
      v[4 * q + 1] = fmaf(s, tc.y, ta.y);
      v[4 * q + 2] = fmaf(s, tc.z, ta.z);
      v[4 * q + 3] = fmaf(s, tc.w, ta.w);
    }
  }
  __device__ __forceinline__ float at(int k) const {
    flags::note_read(a + k, 1);
    flags::note_read(c + k, 1);
    return fmaf(s, c[k], a[k]);
  }
};

// ------------------------------------------------------------------------------------------------ dot products
// acc[r][c] += sum_{k < n} row[r][k] * in[c](k), each lane summing its strided share of k; call warp_allreduce
// afterwards. All 32 lanes must call it together (the task loops are warp-uniform). NR weight rows are loaded
// once per chunk and used against NC input vectors (register tiling: NR*NC FMAs per NR+NC loads).
// vec: 16-byte weight loads and float4 input loads (k steps of kN); else one element per lane per step.
// This is the one place where weight rows are read: from global memory through the read-only path, or (kShared:
// rows a block copied into its shared memory, sample_tier_flags_kernel.cuh) with plain shared loads.
template <int NR, int NC, typename WT, typename In, bool kShared = false>
__device__ __forceinline__ void warp_dot(const WT* const (&row)[NR], const In (&in)[NC], int n, bool vec, int lane,
                                         float (&acc)[NR][NC]) {
  if (vec) {
    constexpr int V = WeightVec<WT>::kN;
    for (int k = lane * V; k < n; k += kWarp * V) {
      uint4 raw[NR];
#pragma unroll
      for (int r = 0; r < NR; ++r) {
        raw[r] = kShared ? *reinterpret_cast<const uint4*>(row[r] + k) : WeightVec<WT>::load(row[r] + k);
      }
#pragma unroll
      for (int c = 0; c < NC; ++c) {
        float x[V];
        in[c].template load<V>(k, x);
#pragma unroll
        for (int r = 0; r < NR; ++r) {
          float w[V];
          WeightVec<WT>::unpack(raw[r], w);
#pragma unroll
          for (int e = 0; e < V; ++e) acc[r][c] = fmaf(w[e], x[e], acc[r][c]);
        }
      }
    }
  } else {
    for (int k = lane; k < n; k += kWarp) {
      float w[NR];
#pragma unroll
      for (int r = 0; r < NR; ++r) w[r] = kShared ? to_float(row[r][k]) : load_weight(row[r] + k);
#pragma unroll
      for (int c = 0; c < NC; ++c) {
        const float x = in[c].at(k);
#pragma unroll
        for (int r = 0; r < NR; ++r) acc[r][c] = fmaf(w[r], x, acc[r][c]);
      }
    }
  }
}

// Butterfly sum: afterwards every lane holds the full sums.
template <int NR, int NC>
__device__ __forceinline__ void warp_allreduce(float (&acc)[NR][NC]) {
#pragma unroll
  for (int r = 0; r < NR; ++r) {
#pragma unroll
    for (int c = 0; c < NC; ++c) {
#pragma unroll
      for (int off = kWarp / 2; off > 0; off >>= 1) acc[r][c] += __shfl_xor_sync(kFullMask, acc[r][c], off);
    }
  }
}

template <int NR, int NC>
__device__ __forceinline__ void zero(float (&acc)[NR][NC]) {
#pragma unroll
  for (int r = 0; r < NR; ++r) {
#pragma unroll
    for (int c = 0; c < NC; ++c) acc[r][c] = 0.f;
  }
}

// ------------------------------------------------------------------------------------------------ cell
// One LSTM cell update from the four pre-activation gates (i, f, g, o as nn.LSTM) and the previous cell state.
struct CellOut {
  float h, c;
};
__device__ __forceinline__ CellOut lstm_pointwise(float gi, float gf, float gg, float go, float c_prev) {
  const float c = math::sigmoid(gf) * c_prev + math::sigmoid(gi) * math::tanh(gg);
  return {math::sigmoid(go) * math::tanh(c), c};
}

}  // namespace sampler_cuda
}  // namespace melnet_fast
