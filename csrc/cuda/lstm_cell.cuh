// The LSTM cell of the CUDA sweep for one (line, unit), written once for both designs: the step kernels of
// lstm_step.cuh (recurrent product and cell update in one kernel), the epilogue kernels of lstm_epilogue.cuh
// (recurrent product as cuBLAS GEMMs on the host, then the cell update) and the narrow phase of lstm_narrow.cuh.
// Storage conversions (float32, bfloat16, float16 storage; float32 arithmetic), which path takes tensor cores, the
// forward and backward cell maths and the stores of their results. No torch headers.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <type_traits>

#include "scalar_math.h"

namespace melnet_fast {
namespace sweep_cuda {

// The tensor-core paths need bfloat16 wmma (sm_80+); older architectures, and float32 always, use FMA paths.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
constexpr bool kArchHasWmma = false;
#else
constexpr bool kArchHasWmma = true;
#endif
template <typename T>
constexpr bool use_wmma() {
  return kArchHasWmma && !std::is_same<T, float>::value;
}

// ---- Conversions ----
__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }

template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16(v);  // round to nearest even
}
template <>
__device__ __forceinline__ __half from_float<__half>(float v) {
  return __float2half(v);  // round to nearest even
}

template <typename T>
__device__ __forceinline__ T zero_value() {
  return from_float<T>(0.0f);
}

// ---- Forward: gate pre-activations (input projection + bias + recurrent product) and c_prev -> the step ----
struct CellForward {
  float gi, gf, gg, go;  // activated gates, nn.LSTM's order (i, f, g, o)
  float c, h;            // new cell and hidden state
};

__device__ __forceinline__ CellForward cell_forward(float a_i, float a_f, float a_g, float a_o, float c_prev) {
  CellForward s;
  s.gi = math::sigmoid(a_i);
  s.gf = math::sigmoid(a_f);
  s.gg = math::tanh(a_g);
  s.go = math::sigmoid(a_o);
  s.c = fmaf(s.gf, c_prev, s.gi * s.gg);
  s.h = s.go * math::tanh(s.c);
  return s;
}

// ---- Backward: dh (grad_y + the recurrent gradient from the next step), the carried cell gradient and the saved
// activated gates, cell and previous cell -> the gate pre-activation gradients and the cell gradient to carry ----
struct CellBackward {
  float d_i, d_f, d_g, d_o;
  float dc_prev;  // the gradient reaching c_prev (carried to the previous step)
};

__device__ __forceinline__ CellBackward cell_backward(float dh, float dc_carry, float gi, float gf, float gg, float go,
                                                      float c, float c_prev) {
  CellBackward d;
  const float tc = math::tanh(c);
  const float dc = dc_carry + dh * go * (1.0f - tc * tc);
  d.d_i = dc * gg * gi * (1.0f - gi);
  d.d_f = dc * c_prev * gf * (1.0f - gf);
  d.d_g = dc * gi * (1.0f - gg * gg);
  d.d_o = dh * tc * go * (1.0f - go);
  d.dc_prev = dc * gf;
  return d;
}

// Stores what backward needs of a forward step at one (line, unit j) at row `row` = r*N + pos of the saved state: the
// activated gates into gates [R*N, 4H] and the cell state into cell [R*N, H]; either may be nullptr (not saving).
template <typename T>
__device__ __forceinline__ void save_forward(const CellForward& st, T* gates, float* cell, int64_t row, int H, int j) {
  if (gates != nullptr) {
    T* g = gates + row * 4 * H;
    g[j] = from_float<T>(st.gi);
    g[H + j] = from_float<T>(st.gf);
    g[2 * H + j] = from_float<T>(st.gg);
    g[3 * H + j] = from_float<T>(st.go);
  }
  if (cell != nullptr) cell[row * H + j] = st.c;
}

// Stores the gate gradients of one (line, unit j) into dg_row, the position's [4H] row of its direction's dgates.
template <typename T>
__device__ __forceinline__ void store_gate_grads(const CellBackward& g, T* dg_row, int H, int j) {
  dg_row[j] = from_float<T>(g.d_i);
  dg_row[H + j] = from_float<T>(g.d_f);
  dg_row[2 * H + j] = from_float<T>(g.d_g);
  dg_row[3 * H + j] = from_float<T>(g.d_o);
}

}  // namespace sweep_cuda
}  // namespace melnet_fast
