// Device side of the second CUDA sweep design (backend "cuda_gemm"): the fused pointwise epilogues of one step.
// The recurrent product of the step is not computed here: the host (melnet_fast/ops/lstm_sweep/gemm_steps.py) runs
// it first as one cuBLAS GEMM per active direction over all of that direction's lines, into float32 buffers `rec`,
// and these kernels add it to the input projections and apply the cell (lstm_cell.cuh).
//
// Why cuBLAS GEMMs rather than one fused kernel: at the Blizzard tier-1 shape (B=32, T=215, F=32, I=H=512, t+ f+ f-)
// a step of the wide phase multiplies 6880 + 6880 + 1024 lines by W_hh [2048, 512]. The fused step kernel of
// lstm_step.cuh tiles 32 lines per block and so reads each direction's 2 MB of W_hh once per tile (about 460 times
// a step, ~1 GB of L2 traffic); a GEMM over all the lines of a direction reads it a few times (one 128x256 tile
// column per W_hh slice), with cuBLAS's asynchronous multi-stage tensor-core pipelines that we would otherwise have
// to write and tune (wgmma/TMA) without a GPU to test them on. The price is one float32 round trip of the product
// through L2/HBM (lines x 4H x 4 bytes written and read once per step), which the prediction of README.md's GPU
// section counts.
//
// Layouts as lstm_step.cuh (N = B*T*F, G = 4H, gates i, f, g, o; pre, dgates [N, R*G]; y, grad_y [N, R*H]; gates
// [R, N, G]; cell [R, N, H] float32; c_run, dc_run [R, lines_max, H] float32), plus, per direction r active at the
// step:
//   forward:  rec[r] [lines_r, G] float32, row n = h_prev(line n) @ w_hh[r]^T; at step 0 one row (h0[r] @ w_hh[r]^T,
//             shared by every line: rec_ld[r] = 0);
//   backward: rec[r] [lines_r, H] float32, row n = dG_next(line n) @ w_hh[r]; null at the direction's last step.
// Grid: (epilogue_line_tiles(geo, s), ceil(H / kEpilogueUnits), R), kEpilogueThreads threads; thread (m, jj) =
// (tid / 32 + 8 i, tid % 32): consecutive threads take consecutive units (coalesced rows).
#pragma once

#include <cstdint>

#include "cuda/lstm_cell.cuh"
#include "sweep_geometry.h"

namespace melnet_fast {
namespace sweep_cuda {

using sweep::Dir;
using sweep::flat_position;
using sweep::Geometry;
using sweep::kMaxDirections;
using sweep::step_position;

constexpr int kEpilogueThreads = 256;
constexpr int kEpilogueLines = 32;  // lines per epilogue tile
constexpr int kEpilogueUnits = 32;  // hidden units per epilogue tile
constexpr int kEpilogueRows = kEpilogueThreads / kEpilogueUnits;  // lines a block handles at once
static_assert(kEpilogueLines % kEpilogueRows == 0, "epilogue mapping");

// Line tiles of the epilogue launch of step s (at least one for every s < sweep::sweep_steps(geo)).
inline int64_t epilogue_line_tiles(const Geometry& geo, int64_t s) {
  return (sweep::active_lines(geo, s) + kEpilogueLines - 1) / kEpilogueLines;
}

template <typename T>
struct EpilogueFwdParams {
  const float* rec[kMaxDirections];  // per direction: the step's recurrent product (above), null when inactive
  int64_t rec_ld[kMaxDirections];    // its row stride: G, or 0 when every line shares row 0 (step 0)
  const T* pre;                      // [N, R*G]
  const T* c0;                       // [R, H]
  T* y;                              // [N, R*H]
  float* c_run;                      // [R, lines_max, H]
  T* gates;                          // [R, N, G] or nullptr when not saving
  float* cell;                       // [R, N, H] or nullptr when not saving
  int64_t lines_max;
  int s;
  Geometry geo;
};

template <typename T>
struct EpilogueBwdParams {
  const float* rec[kMaxDirections];  // per direction: dG_next @ w_hh[r] [lines_r, H]; null at its last step
  const T* grad_y;                   // [N, R*H]
  const T* gates;                    // [R, N, G]
  const float* cell;                 // [R, N, H]
  const T* c0;                       // [R, H]
  T* dgates;                         // [N, R*G]
  float* dc_run;                     // [R, lines_max, H]
  int64_t lines_max;
  int s;
  Geometry geo;
};

template <typename T>
__global__ void __launch_bounds__(kEpilogueThreads) lstm_fwd_epilogue_kernel(const EpilogueFwdParams<T> p) {
  const int r = blockIdx.z;
  const Dir d = p.geo.dir[r];
  const int64_t m0 = (int64_t)blockIdx.x * kEpilogueLines;
  if (p.s >= d.len || m0 >= d.lines) return;
  const int H = p.geo.H, R = p.geo.R, G = 4 * H;
  const int64_t N = p.geo.N;
  const int j = blockIdx.y * kEpilogueUnits + threadIdx.x % kEpilogueUnits;
  if (j >= H) return;
  const int64_t p_now = step_position(d, p.s);
  const float* rec = p.rec[r];
#pragma unroll
  for (int i = 0; i < kEpilogueLines / kEpilogueRows; ++i) {
    const int64_t n = m0 + threadIdx.x / kEpilogueUnits + i * (kEpilogueRows);
    if (n >= d.lines) break;
    const int64_t pos = flat_position(d, n, p_now, p.geo.T, p.geo.F);
    const float* a = rec + n * p.rec_ld[r];
    const T* pre = p.pre + pos * (R * (int64_t)G) + (int64_t)r * G;
    float* c_run = p.c_run + ((int64_t)r * p.lines_max + n) * H + j;
    const float c_prev = p.s == 0 ? to_float(p.c0[(int64_t)r * H + j]) : *c_run;
    const CellForward st =
        cell_forward(a[j] + to_float(pre[j]), a[H + j] + to_float(pre[H + j]), a[2 * H + j] + to_float(pre[2 * H + j]),
                     a[3 * H + j] + to_float(pre[3 * H + j]), c_prev);
    *c_run = st.c;
    p.y[pos * (R * (int64_t)H) + (int64_t)r * H + j] = from_float<T>(st.h);
    save_forward(st, p.gates, p.cell, (int64_t)r * N + pos, H, j);
  }
}

template <typename T>
__global__ void __launch_bounds__(kEpilogueThreads) lstm_bwd_epilogue_kernel(const EpilogueBwdParams<T> p) {
  const int r = blockIdx.z;
  const Dir d = p.geo.dir[r];
  const int64_t m0 = (int64_t)blockIdx.x * kEpilogueLines;
  if (p.s >= d.len || m0 >= d.lines) return;
  const int H = p.geo.H, R = p.geo.R, G = 4 * H;
  const int64_t N = p.geo.N;
  const int j = blockIdx.y * kEpilogueUnits + threadIdx.x % kEpilogueUnits;
  if (j >= H) return;
  const bool last = p.s == d.len - 1;  // the line's last step: nothing flows back from a next step
  const int64_t p_now = step_position(d, p.s);
  const float* rec = p.rec[r];
#pragma unroll
  for (int i = 0; i < kEpilogueLines / kEpilogueRows; ++i) {
    const int64_t n = m0 + threadIdx.x / kEpilogueUnits + i * (kEpilogueRows);
    if (n >= d.lines) break;
    const int64_t pos = flat_position(d, n, p_now, p.geo.T, p.geo.F);
    const float dh = (last ? 0.0f : rec[n * H + j]) + to_float(p.grad_y[pos * (R * (int64_t)H) + (int64_t)r * H + j]);
    const T* g_in = p.gates + ((int64_t)r * N + pos) * G;
    const float c = p.cell[((int64_t)r * N + pos) * H + j];
    const float c_prev =
        p.s == 0 ? to_float(p.c0[(int64_t)r * H + j])
                 : p.cell[((int64_t)r * N + flat_position(d, n, step_position(d, p.s - 1), p.geo.T, p.geo.F)) * H + j];
    float* dc_run = p.dc_run + ((int64_t)r * p.lines_max + n) * H + j;
    const CellBackward g = cell_backward(dh, last ? 0.0f : *dc_run, to_float(g_in[j]), to_float(g_in[H + j]),
                                         to_float(g_in[2 * H + j]), to_float(g_in[3 * H + j]), c, c_prev);
    *dc_run = g.dc_prev;
    store_gate_grads(g, p.dgates + pos * (R * (int64_t)G) + (int64_t)r * G, H, j);
  }
}

}  // namespace sweep_cuda
}  // namespace melnet_fast
