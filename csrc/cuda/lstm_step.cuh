// Device side of the CUDA 2D LSTM sweep: the fused per-step kernels of the forward and backward recurrences,
// launched one step at a time by the ops of csrc/cuda/lstm_sweep_2d.cu; the host around them (input projections,
// the step loop, the gradient GEMMs) is melnet_fast/ops/lstm_sweep/gpu_host.py, shared with the Triton backend.
// No torch headers here: plain pointers and sizes.
//
// Layouts (N = B*T*F positions, flat position pos = (b*T + t)*F + f; G = 4H; gates ordered i, f, g, o):
//   pre, dgates [N, R*G]   row pos, column r*G + k*H + j (like x @ w_ih^T over every direction at once)
//   y, grad_y   [N, R*H]   row pos, column r*H + j
//   w_hh        [R, G, H]  contiguous
//   gates       [R, N, G]  activated, saved for backward;   cell [R, N, H] float32
//   c_run/dc_run [R, lines_max, H] float32: running cell state / cell gradient of every line
// Direction r along time has one line per (b, f), n = b*F + f; along frequency one per (b, t), n = b*T + t.
// At step s a line sits at p = s ('+') or L_r - 1 - s ('-').
//
// A block handles one direction (blockIdx.z), a tile of kLines lines (blockIdx.x) and a tile of hidden units
// (blockIdx.y). The recurrent product of the tile is staged through shared memory in chunks of kChunk along its
// reduction dimension, then written as float32 to shared memory (sm.c) where the pointwise LSTM update reads it:
//   forward:  c[m][k*kFwdUnits + jj] = sum_q h_prev[m][q] * w_hh[r][k*H + j0 + jj][q]   (4 gate columns per unit)
//   backward: c[m][jj]               = sum_q dG_next[m][q] * w_hh[r][q][j0 + jj]         (q over all 4H)
// float32 runs a plain FMA product (exact float32, as the tests compare against float64); bfloat16 / float16 run
// tensor cores through nvcuda::wmma (16x16x16, float32 accumulators). Every tile edge is bounds-checked:
// operands outside the lines, the units or the reduction length are staged as zeros and never written back.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>

#include <cstdint>
#include <type_traits>

#include "cuda/lstm_cell.cuh"
#include "scalar_math.h"
#include "sweep_geometry.h"

namespace melnet_fast {
namespace sweep_cuda {

using sweep::Dir;  // the sweep geometry: csrc/sweep_geometry.h
using sweep::flat_position;
using sweep::Geometry;
using sweep::kMaxDirections;
using sweep::step_position;

constexpr int kThreads = 256;  // 8 warps per block, both kernels
constexpr int kLines = 32;     // lines per block tile, both kernels
constexpr int kChunk = 32;     // reduction length staged per shared-memory round (two wmma k-steps)
constexpr int kFwdUnits = 32;  // hidden units per forward tile -> 4 * 32 = 128 gate columns
constexpr int kBwdUnits = 64;  // hidden units per backward tile
constexpr int kFwdCols = 4 * kFwdUnits;

// The tensor-core path (bfloat16 / float16 on sm_80+) or the FMA path: use_wmma<T>() of lstm_cell.cuh.

// Shared-memory row padding (elements): float32 rows read down a column by consecutive threads need an odd
// stride (33) against bank conflicts; wmma needs ldm a multiple of 8 (16-bit operands) or 4 (float32 results)
// and 32-byte aligned fragment pointers, which a pad of 8 (4 for the float32 results) keeps.
template <typename T>
constexpr int operand_pad() {
  return use_wmma<T>() ? 8 : 1;
}
constexpr int kResultPad = 4;

// Host-side launch shape, shared by lstm_sweep_2d.cu and the CPU emulator of these kernels (tests/cuda_emulation).
// Line tiles of the launch of step s: enough for the direction with the most lines among those active at s
// (at least one for every s < sweep::sweep_steps(geo)).
inline int64_t line_tiles(const Geometry& geo, int64_t s) {
  return (sweep::active_lines(geo, s) + kLines - 1) / kLines;
}

// ---- Step parameters ----
template <typename T>
struct FwdParams {
  const T* pre;   // [N, R*G]: input projections + bias
  const T* w_hh;  // [R, G, H]
  const T* h0;    // [R, H]
  const T* c0;    // [R, H]
  T* y;           // [N, R*H]
  float* c_run;   // [R, lines_max, H]
  T* gates;       // [R, N, G] activated gates, or nullptr when not saving
  float* cell;    // [R, N, H], or nullptr when not saving
  int64_t lines_max;
  int s;
  Geometry geo;
};

template <typename T>
struct BwdParams {
  const T* grad_y;    // [N, R*H]
  const T* w_hh;      // [R, G, H]
  const T* gates;     // [R, N, G] activated gates saved by the forward
  const float* cell;  // [R, N, H] saved by the forward
  const T* c0;        // [R, H]
  T* dgates;          // [N, R*G]: gradient of the gate pre-activations (written at the step's positions)
  float* dc_run;      // [R, lines_max, H]: gradient reaching the cell state of the previous step
  int64_t lines_max;
  int s;
  Geometry geo;
};

// ---- Shared-memory tiles ----
// Forward: A = h_prev [kLines][kChunk], B = w_hh rows of the tile's 4*kFwdUnits gate columns [kFwdCols][kChunk]
// (i.e. B^T: wmma reads it as a col_major matrix_b), C = [kLines][kFwdCols] float32.
template <typename T>
struct FwdSmem {
  static constexpr int kALd = kChunk + operand_pad<T>();
  static constexpr int kBLd = kChunk + operand_pad<T>();
  static constexpr int kCLd = kFwdCols + kResultPad;
  __align__(128) T a[kLines][kALd];
  __align__(128) T b[kFwdCols][kBLd];
  __align__(128) float c[kLines][kCLd];
  int64_t pos[kLines];   // flat position of each line at step s, -1 past the direction's lines
  const T* hrow[kLines]; // h_prev row of each line: y at the previous position, h0 at s = 0; null past the lines
};

// Backward: A = dG_next [kLines][kChunk] (the next step's gate gradients), B = w_hh[r] rows q, columns of the
// tile's units [kChunk][kBwdUnits] (row_major matrix_b), C = [kLines][kBwdUnits] float32.
template <typename T>
struct BwdSmem {
  static constexpr int kALd = kChunk + operand_pad<T>();
  static constexpr int kBLd = kBwdUnits + (use_wmma<T>() ? 8 : 0);  // float32: consecutive threads, no conflict
  static constexpr int kCLd = kBwdUnits + kResultPad;
  __align__(128) T a[kLines][kALd];
  __align__(128) T b[kChunk][kBLd];
  __align__(128) float c[kLines][kCLd];
  int64_t pos[kLines];    // flat position at step s, -1 past the lines
  int64_t prev[kLines];   // flat position at step s-1 (-1 at s = 0): its cell is c_prev
  const T* grow[kLines];  // dgates row (direction r's columns) at step s+1; null at the line's last step
};

// wmma constraints on the layouts above: ldm a multiple of 8 elements (16-bit) / 4 (float32), and every
// fragment pointer (row a multiple of 16, column a multiple of 16) 32-byte aligned, given the 128-byte aligned
// arrays: 16 * ld * sizeof and 16 * sizeof must be multiples of 32. (Checked where the wmma path is compiled.)
template <typename T>
constexpr bool wmma_layouts_ok() {
  using Fw = FwdSmem<T>;
  using Bw = BwdSmem<T>;
  return Fw::kALd % 8 == 0 && Fw::kBLd % 8 == 0 && Bw::kALd % 8 == 0 && Bw::kBLd % 8 == 0 && Fw::kCLd % 4 == 0 &&
         Bw::kCLd % 4 == 0 && (16 * Fw::kALd * 2) % 32 == 0 && (16 * Fw::kBLd * 2) % 32 == 0 &&
         (16 * Bw::kALd * 2) % 32 == 0 && (16 * Bw::kBLd * 2) % 32 == 0 && (16 * Fw::kCLd * 4) % 32 == 0 &&
         (16 * Bw::kCLd * 4) % 32 == 0;
}
static_assert(!use_wmma<__half>() || wmma_layouts_ok<__half>(), "wmma layout (float16)");
static_assert(!use_wmma<__nv_bfloat16>() || wmma_layouts_ok<__nv_bfloat16>(), "wmma layout (bfloat16)");
static_assert(kChunk % 16 == 0 && kLines % 16 == 0 && kFwdUnits % 16 == 0 && kBwdUnits % 16 == 0, "wmma tiles");
static_assert(sizeof(FwdSmem<float>) <= 48 * 1024 && sizeof(BwdSmem<float>) <= 48 * 1024, "static smem");
// Thread mappings below assume these.
static_assert(kThreads == 256 && kLines == 32 && kFwdUnits == 32 && kBwdUnits == 64, "thread mappings");

// ---- Forward step ----
// Stages chunk q0 of the tile's operands: A = h_prev[m][q0 + qq]; B row c = gate column k*kFwdUnits + jj, which
// is w_hh row k*H + j0 + jj. Consecutive threads read consecutive qq of one row (coalesced, conflict-free).
template <typename T>
__device__ __forceinline__ void fwd_stage(FwdSmem<T>& sm, const T* __restrict__ w_r, int H, int j0, int q0) {
  for (int idx = threadIdx.x; idx < kLines * kChunk; idx += kThreads) {
    const int m = idx / kChunk, qq = idx % kChunk, q = q0 + qq;
    const T* row = sm.hrow[m];
    sm.a[m][qq] = (row != nullptr && q < H) ? row[q] : zero_value<T>();
  }
  for (int idx = threadIdx.x; idx < kFwdCols * kChunk; idx += kThreads) {
    const int c = idx / kChunk, qq = idx % kChunk, q = q0 + qq;
    const int k = c / kFwdUnits, j = j0 + c % kFwdUnits;
    sm.b[c][qq] = (j < H && q < H) ? w_r[(int64_t)(k * H + j) * H + q] : zero_value<T>();
  }
}

// Recurrent product of the tile into sm.c, tensor cores. 8 warps over the 2 x 8 grid of 16x16 result blocks:
// warp w takes row block w / 4 and column blocks 2 (w % 4) and 2 (w % 4) + 1. Every thread of the block calls
// it (it holds barriers).
template <typename T>
__device__ __forceinline__ void fwd_product_wmma(FwdSmem<T>& sm, const T* __restrict__ w_r, int H, int j0) {
  using namespace nvcuda;
  const int warp = threadIdx.x / 32;
  const int wr = warp / 4, wc = (warp % 4) * 2;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> cf[2];
  wmma::fill_fragment(cf[0], 0.0f);
  wmma::fill_fragment(cf[1], 0.0f);
  for (int q0 = 0; q0 < H; q0 += kChunk) {
    fwd_stage<T>(sm, w_r, H, j0, q0);
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kChunk; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> af;  // (m, q) at a[m][q]
      wmma::load_matrix_sync(af, &sm.a[wr * 16][kk], FwdSmem<T>::kALd);
#pragma unroll
      for (int u = 0; u < 2; ++u) {
        wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> bf;  // (q, col) at b[col][q]
        wmma::load_matrix_sync(bf, &sm.b[(wc + u) * 16][kk], FwdSmem<T>::kBLd);
        wmma::mma_sync(cf[u], af, bf, cf[u]);
      }
    }
    __syncthreads();  // before the next chunk overwrites a and b
  }
#pragma unroll
  for (int u = 0; u < 2; ++u) {
    wmma::store_matrix_sync(&sm.c[wr * 16][(wc + u) * 16], cf[u], FwdSmem<T>::kCLd, wmma::mem_row_major);
  }
  __syncthreads();
}

// The same product with float32 FMAs (exact float32). Thread (ty, tx) = (tid / 32, tid % 32) takes lines
// 4 ty .. 4 ty + 3 and the four gate columns k*kFwdUnits + tx (k = 0..3): a warp shares its lines (broadcast
// reads of a) and reads b down a column with the odd row stride 33 (no bank conflicts).
template <typename T>
__device__ __forceinline__ void fwd_product_fma(FwdSmem<T>& sm, const T* __restrict__ w_r, int H, int j0) {
  const int ty = threadIdx.x / 32, tx = threadIdx.x % 32;
  float acc[4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int k = 0; k < 4; ++k) acc[i][k] = 0.0f;
  for (int q0 = 0; q0 < H; q0 += kChunk) {
    fwd_stage<T>(sm, w_r, H, j0, q0);
    __syncthreads();
#pragma unroll 8
    for (int qq = 0; qq < kChunk; ++qq) {
      float av[4], bv[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) av[i] = to_float(sm.a[ty * 4 + i][qq]);
#pragma unroll
      for (int k = 0; k < 4; ++k) bv[k] = to_float(sm.b[k * kFwdUnits + tx][qq]);
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int k = 0; k < 4; ++k) acc[i][k] = fmaf(av[i], bv[k], acc[i][k]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int k = 0; k < 4; ++k) sm.c[ty * 4 + i][k * kFwdUnits + tx] = acc[i][k];
  __syncthreads();
}

// Grid: (ceil(max active lines / kLines), ceil(H / kFwdUnits), R), kThreads threads.
template <typename T>
__global__ void __launch_bounds__(kThreads) lstm_fwd_step_kernel(const FwdParams<T> p) {
  __shared__ FwdSmem<T> sm;
  const int r = blockIdx.z;
  const Dir d = p.geo.dir[r];
  const int64_t m0 = (int64_t)blockIdx.x * kLines;
  // Whole-block exits only (before any barrier): an inactive direction or a tile past its lines.
  if (p.s >= d.len || m0 >= d.lines) return;
  const int H = p.geo.H, R = p.geo.R, G = 4 * H;
  const int j0 = blockIdx.y * kFwdUnits;  // < H by the grid
  const int64_t T_ = p.geo.T, F = p.geo.F, N = p.geo.N;
  const int tid = threadIdx.x;

  if (tid < kLines) {
    const int64_t n = m0 + tid;
    if (n < d.lines) {
      const int64_t pos = flat_position(d, n, step_position(d, p.s), T_, F);
      sm.pos[tid] = pos;
      if (p.s == 0) {
        sm.hrow[tid] = p.h0 + (int64_t)r * H;
      } else {
        const int64_t prev = flat_position(d, n, step_position(d, p.s - 1), T_, F);
        sm.hrow[tid] = p.y + prev * (R * (int64_t)H) + (int64_t)r * H;
      }
    } else {
      sm.pos[tid] = -1;
      sm.hrow[tid] = nullptr;
    }
  }
  __syncthreads();

  if constexpr (use_wmma<T>()) {
    fwd_product_wmma<T>(sm, p.w_hh + (int64_t)r * G * H, H, j0);
  } else {
    fwd_product_fma<T>(sm, p.w_hh + (int64_t)r * G * H, H, j0);
  }

  // Pointwise update: thread handles (m, jj) = (tid / 32 + 8 i, tid % 32), i = 0..3; consecutive threads take
  // consecutive units (coalesced pre / y / gates / cell accesses, conflict-free reads of c).
  const int jj = tid % kFwdUnits, j = j0 + jj;
#pragma unroll
  for (int i = 0; i < kLines * kFwdUnits / kThreads; ++i) {
    const int m = tid / kFwdUnits + i * (kThreads / kFwdUnits);
    const int64_t pos = sm.pos[m];
    if (pos < 0 || j >= H) continue;
    const int64_t n = m0 + m;
    const T* pre = p.pre + pos * (R * (int64_t)G) + (int64_t)r * G;
    float* c_run = p.c_run + ((int64_t)r * p.lines_max + n) * H + j;
    const float c_prev = p.s == 0 ? to_float(p.c0[(int64_t)r * H + j]) : *c_run;
    const CellForward st =
        cell_forward(sm.c[m][0 * kFwdUnits + jj] + to_float(pre[j]), sm.c[m][1 * kFwdUnits + jj] + to_float(pre[H + j]),
                     sm.c[m][2 * kFwdUnits + jj] + to_float(pre[2 * H + j]),
                     sm.c[m][3 * kFwdUnits + jj] + to_float(pre[3 * H + j]), c_prev);
    *c_run = st.c;
    p.y[pos * (R * (int64_t)H) + (int64_t)r * H + j] = from_float<T>(st.h);
    save_forward(st, p.gates, p.cell, (int64_t)r * N + pos, H, j);
  }
}

// ---- Backward step ----
// Stages chunk q0 of the tile's operands: A = dG_next[m][q0 + qq] (direction r's columns of dgates at the
// line's next position), B = w_hh[r][q0 + qq][j0 + jj]. Consecutive threads read consecutive elements of a row.
template <typename T>
__device__ __forceinline__ void bwd_stage(BwdSmem<T>& sm, const T* __restrict__ w_r, int H, int j0, int q0) {
  const int G = 4 * H;
  for (int idx = threadIdx.x; idx < kLines * kChunk; idx += kThreads) {
    const int m = idx / kChunk, qq = idx % kChunk, q = q0 + qq;
    const T* row = sm.grow[m];
    sm.a[m][qq] = (row != nullptr && q < G) ? row[q] : zero_value<T>();
  }
  for (int idx = threadIdx.x; idx < kChunk * kBwdUnits; idx += kThreads) {
    const int qq = idx / kBwdUnits, jj = idx % kBwdUnits, q = q0 + qq, j = j0 + jj;
    sm.b[qq][jj] = (q < G && j < H) ? w_r[(int64_t)q * H + j] : zero_value<T>();
  }
}

// Recurrent product [kLines, 4H] x [4H, kBwdUnits] into sm.c, tensor cores: 8 warps over the 2 x 4 grid of
// 16x16 result blocks, warp w takes row block w / 4 and column block w % 4.
template <typename T>
__device__ __forceinline__ void bwd_product_wmma(BwdSmem<T>& sm, const T* __restrict__ w_r, int H, int j0) {
  using namespace nvcuda;
  const int warp = threadIdx.x / 32;
  const int wr = warp / 4, wc = warp % 4;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> cf;
  wmma::fill_fragment(cf, 0.0f);
  for (int q0 = 0; q0 < 4 * H; q0 += kChunk) {
    bwd_stage<T>(sm, w_r, H, j0, q0);
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kChunk; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> af;  // (m, q) at a[m][q]
      wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> bf;  // (q, unit) at b[q][unit]
      wmma::load_matrix_sync(af, &sm.a[wr * 16][kk], BwdSmem<T>::kALd);
      wmma::load_matrix_sync(bf, &sm.b[kk][wc * 16], BwdSmem<T>::kBLd);
      wmma::mma_sync(cf, af, bf, cf);
    }
    __syncthreads();
  }
  wmma::store_matrix_sync(&sm.c[wr * 16][wc * 16], cf, BwdSmem<T>::kCLd, wmma::mem_row_major);
  __syncthreads();
}

// The same product with float32 FMAs: thread (ty, tx) = (tid / 64, tid % 64) takes lines 8 ty .. 8 ty + 7 of
// unit tx (a warp shares ty: broadcast reads of a; consecutive b reads).
template <typename T>
__device__ __forceinline__ void bwd_product_fma(BwdSmem<T>& sm, const T* __restrict__ w_r, int H, int j0) {
  const int ty = threadIdx.x / kBwdUnits, tx = threadIdx.x % kBwdUnits;
  float acc[8];
#pragma unroll
  for (int i = 0; i < 8; ++i) acc[i] = 0.0f;
  for (int q0 = 0; q0 < 4 * H; q0 += kChunk) {
    bwd_stage<T>(sm, w_r, H, j0, q0);
    __syncthreads();
#pragma unroll 8
    for (int qq = 0; qq < kChunk; ++qq) {
      const float bv = to_float(sm.b[qq][tx]);
#pragma unroll
      for (int i = 0; i < 8; ++i) acc[i] = fmaf(to_float(sm.a[ty * 8 + i][qq]), bv, acc[i]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 8; ++i) sm.c[ty * 8 + i][tx] = acc[i];
  __syncthreads();
}

// Grid: (ceil(max active lines / kLines), ceil(H / kBwdUnits), R), kThreads threads. Steps run s = steps-1
// down to 0; the launch of step s reads the dgates written by the launch of step s + 1.
template <typename T>
__global__ void __launch_bounds__(kThreads) lstm_bwd_step_kernel(const BwdParams<T> p) {
  __shared__ BwdSmem<T> sm;
  const int r = blockIdx.z;
  const Dir d = p.geo.dir[r];
  const int64_t m0 = (int64_t)blockIdx.x * kLines;
  if (p.s >= d.len || m0 >= d.lines) return;  // whole-block exits only, before any barrier
  const int H = p.geo.H, R = p.geo.R, G = 4 * H;
  const int j0 = blockIdx.y * kBwdUnits;  // < H by the grid
  const int64_t T_ = p.geo.T, F = p.geo.F, N = p.geo.N;
  const int tid = threadIdx.x;
  const bool last = p.s == d.len - 1;  // the line's last step: nothing flows back from a next step

  if (tid < kLines) {
    const int64_t n = m0 + tid;
    if (n < d.lines) {
      sm.pos[tid] = flat_position(d, n, step_position(d, p.s), T_, F);
      sm.prev[tid] = p.s == 0 ? -1 : flat_position(d, n, step_position(d, p.s - 1), T_, F);
      sm.grow[tid] =
          last ? nullptr
               : p.dgates + flat_position(d, n, step_position(d, p.s + 1), T_, F) * (R * (int64_t)G) + (int64_t)r * G;
    } else {
      sm.pos[tid] = -1;
      sm.prev[tid] = -1;
      sm.grow[tid] = nullptr;
    }
  }
  __syncthreads();

  if (!last) {  // uniform over the block
    if constexpr (use_wmma<T>()) {
      bwd_product_wmma<T>(sm, p.w_hh + (int64_t)r * G * H, H, j0);
    } else {
      bwd_product_fma<T>(sm, p.w_hh + (int64_t)r * G * H, H, j0);
    }
  }

  // Pointwise: thread handles (m, jj) = (tid / 64 + 4 i, tid % 64), i = 0..7.
  const int jj = tid % kBwdUnits, j = j0 + jj;
#pragma unroll
  for (int i = 0; i < kLines * kBwdUnits / kThreads; ++i) {
    const int m = tid / kBwdUnits + i * (kThreads / kBwdUnits);
    const int64_t pos = sm.pos[m];
    if (pos < 0 || j >= H) continue;
    const int64_t n = m0 + m;
    const float dh = (last ? 0.0f : sm.c[m][jj]) + to_float(p.grad_y[pos * (R * (int64_t)H) + (int64_t)r * H + j]);
    const T* g_in = p.gates + ((int64_t)r * N + pos) * G;
    const float gi = to_float(g_in[j]), gf = to_float(g_in[H + j]);
    const float gg = to_float(g_in[2 * H + j]), go = to_float(g_in[3 * H + j]);
    const float c = p.cell[((int64_t)r * N + pos) * H + j];
    const int64_t prev = sm.prev[m];
    const float c_prev = prev < 0 ? to_float(p.c0[(int64_t)r * H + j]) : p.cell[((int64_t)r * N + prev) * H + j];
    float* dc_run = p.dc_run + ((int64_t)r * p.lines_max + n) * H + j;
    const float carry = last ? 0.0f : *dc_run;
    const CellBackward d = cell_backward(dh, carry, gi, gf, gg, go, c, c_prev);
    *dc_run = d.dc_prev;
    store_gate_grads(d, p.dgates + pos * (R * (int64_t)G) + (int64_t)r * G, H, j);
  }
}

}  // namespace sweep_cuda
}  // namespace melnet_fast
