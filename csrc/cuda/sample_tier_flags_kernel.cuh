// Device code of the second design of the persistent tier sampler (the "flags" variant of the cuda backend; host side
// in csrc/cuda/sample_tier.cu, which runs either design). Torch-free, so that tests/cuda_emulation compiles it.
//
// Built around the critical path of one element (channel j of frame i), in three changes to the first design
// (sample_tier_kernel.cuh, whose time-delayed phases and device helpers it reuses):
//
// 1. Folded projections: one dependent phase per frequency-delayed layer instead of two. With hf_m the residual
//    stream after layer m (hf_-1 = x[i, j-1] xf_w + xf_b + cz_f, the stack's input) and h_m the cell output of layer m,
//      gates_k = W_ih^k (hf_{k-1} + ht_k) + W_hh^k h_k(j-1) + b^k,   hf_{k-1} = hf_{k-2} + P^{k-1} h_{k-1} + pb^{k-1}
//              = W_ih^k (hf_{k-2} + base_k) + (W_ih^k P^{k-1}) h_{k-1} + W_hh^k h_k(j-1) + b^k,
//    with base_k = ht_k + pb^{k-1} (per frame, off the element path) and W_ih^k P^{k-1} precomputed on the host
//    (the folded section of csrc/sampler_layout.h). Phase k reads only what phase k-1 wrote (hf_{k-2}, h_{k-1}) and
//    computes, on disjoint rows, the cells of layer k and the residual hf_{k-1} for phase k+1. The head folds the
//    same way: theta = W_head hf_{L-2} + (W_head P^{L-1}) h_{L-1} + (W_head pb^{L-1} + b_head). Per element: L
//    phases and the head, L + 1 waits (the first design: 2 L grid barriers).
//    Rounding: the sum is associated differently from the reference ((hf + P h + pb) + ht, then W_ih), and the
//    folded matrices are rounded once to the weight dtype from float64 products: for float32 weights the result
//    stays within float32 rounding of the reference; for bfloat16 / float16 weights the folded matrix differs
//    from the product of the rounded matrices by up to 2^-9 / 2^-12 relative per element, a perturbation of the
//    model of that order (the tests state their bounds: tests/cuda_emulation/test_sample_tier_flags_emulated.py).
//    Only the draw is on the critical path: block 0 adds the log density of element j while it waits for the
//    other blocks in element j+1 (mixture_log_density on the theta kept in shared memory).
// 2. Flags instead of grid barriers (csrc/cuda/flags.cuh): one arrival counter; a phase's writes are published by
//    each block's release-arrival and consumed after an acquire wait for all blocks' arrivals (every phase is a
//    dense product over all D rows, so every block reads rows of every other block). No block waits for the others
//    to leave a barrier; the head and draw are computed by every block on the same inputs (bitwise the same
//    results), so the next element starts with no wait at all. Write-after-read safety: every buffer read by
//    other blocks is double-buffered by channel parity (h of every layer, the residuals hf), and the next write of
//    a buffer comes after a wait that every reader's reads precede in its program order.
// 3. Weights on chip: block b owns the hidden units u = b, b + nb, ... of every frequency-delayed layer (their 12
//    gate rows: W_ih, W_ih P, W_hh) for the whole tier, and keeps those of the first resident_layers layers in
//    shared memory (copied once at the start; the host sizes resident_layers to the shared memory left); the other
//    layers' rows are read from global memory (L2: the host sets a persisting access-policy window over them).
//
// 4. The time-delayed stack per frame: the first design's phases with flag waits, except the frequency sweeps: the
//    forward direction runs on one half of the grid and the backward on the other, each step waiting only for its
//    own half's arrivals, with the layer's W_hh rows of the block's units in shared memory for the layer's F steps
//    (frequency_sweeps). Then one phase computes base_k for every layer and channel.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/flags.cuh"
#include "mixture_draw.h"
#include "sample_tier_kernel.cuh"  // the same folder (the emulator builds rewritten copies side by side)
#include "sampler_layout.h"

namespace melnet_fast {
namespace sampler_cuda {

constexpr int kCellMatrices = 3;  // W_ih, W_ih P (folded), W_hh: the rows of one hidden unit's gates

struct FlagParams {
  Params p;  // sizes, data and the time-delayed state of the first design; p.wtab holds the folded list
  unsigned* arrivals;  // [3], zero at the launch: every block adds 1 per phase to [0]; the frequency sweeps'
                       // halves of the grid add 1 per step to [1] (forward) / [2] (backward)
  float* fbase;  // [L, B, F, D]  base_k of the current frame (base_0 = xf_b + cz_f + ht_0)
  float* hfr;  // [2, L, B, D]  hf_{k-1} in slot k, by channel parity
  int units_per_block;  // ceil(D / blocks): the hidden units a block owns (at most)
  int resident_layers;  // layers whose cell rows each block keeps in shared memory
  int theta_floats;  // floats of s_theta at the start of dynamic shared memory: 2 B 3K (a multiple of 4)
  int sweep_units;  // units a block owns in a frequency sweep (flag_sweep_units), their W_hh rows kept in shared
                    // memory for the layer's F steps; 0: read from global memory
};

// Index in the folded list of matrix m of layer k's cells (layer 0 has no folded matrix: its W_ih stands in, unread).
__device__ __forceinline__ int64_t cell_matrix(int L, int k, int m) {
  const sl::Layout lay(L, true);
  return m == 0 || (m == 1 && k == 0) ? lay.layer(k, sl::kFWih)
         : m == 1                     ? lay.folded(k - 1, sl::kFoldW)
                                      : lay.layer(k, sl::kFWhh);
}

// Row g of matrix m (0: W_ih^k, 1: W_ih^k P^{k-1}, 2: W_hh^k) of hidden unit u = blockIdx.x + lq * blocks, from
// the block's shared copy when layer k is resident.
template <typename WT>
__device__ __forceinline__ const WT* cell_row(const FlagParams& q, const WT* s_w, int k, int lq, int m, int g) {
  const Params& p = q.p;
  const int64_t D = p.D;
  if (k < q.resident_layers) {
    return s_w + (((static_cast<int64_t>(k) * q.units_per_block + lq) * kCellMatrices + m) * kGateRows + g) * D;
  }
  const int64_t u = blockIdx.x + static_cast<int64_t>(lq) * gridDim.x;
  return weight<WT>(p, cell_matrix(p.L, k, m)) + (g * D + u) * D;
}

// Copies the block's cell rows of the resident layers into shared memory (once per launch).
template <typename WT>
__device__ void load_resident_rows(const FlagParams& q, WT* s_w) {
  const Params& p = q.p;
  const int D = p.D;
  const int64_t rows = static_cast<int64_t>(q.resident_layers) * q.units_per_block * kCellMatrices * kGateRows;
  for (int64_t r = threadIdx.x / kWarp; r < rows; r += kWarps) {
    const int g = static_cast<int>(r % kGateRows);
    const int m = static_cast<int>(r / kGateRows % kCellMatrices);
    const int lq = static_cast<int>(r / (kGateRows * kCellMatrices) % q.units_per_block);
    const int k = static_cast<int>(r / (static_cast<int64_t>(kGateRows) * kCellMatrices * q.units_per_block));
    const int64_t u = blockIdx.x + static_cast<int64_t>(lq) * gridDim.x;
    if (u >= D || (m == 1 && k == 0)) continue;  // no such unit / layer 0 has no folded matrix
    const WT* src = weight<WT>(p, cell_matrix(p.L, k, m)) + (g * static_cast<int64_t>(D) + u) * D;
    WT* dst = s_w + r * D;
    for (int e = threadIdx.x % kWarp; e < D; e += kWarp) dst[e] = __ldg(src + e);
  }
  __syncthreads();
}

// ------------------------------------------------------------------------------------------------ per frame
// base_k[b, j, :] for every layer: base_0 = (xf_b + cz_f[b, i, j]) + htl[0] (the first design's base0), base_k =
// htl[k] + pb^{k-1} (k >= 1).
template <typename WT>
__device__ void phase_bases(const FlagParams& q, int i) {
  const Params& p = q.p;
  const int64_t BFD = static_cast<int64_t>(p.B) * p.F * p.D;
  const WT* xf_b = input_weight<WT>(p, sl::kXfB);
  for (int64_t e = grid_thread(); e < p.L * BFD; e += grid_threads()) {
    const int k = static_cast<int>(e / BFD);
    const int64_t rem = e % BFD;
    const int d = static_cast<int>(rem % p.D);
    flags::note_read(p.htl + e, 1);
    if (k == 0) {
      const int64_t bj = rem / p.D;
      const int64_t b = bj / p.F, j = bj % p.F;
      q.fbase[e] = (load_weight(xf_b + d) + p.cz_f[((b * p.T + i) * p.F + j) * p.D + d]) + p.htl[e];
    } else {
      q.fbase[e] = p.htl[e] + load_weight(layer_weight<WT>(p, k - 1, sl::kFProjB) + d);
    }
    flags::note_write(q.fbase + e, 1);
  }
}

// ------------------------------------------------------------------------------------------------ per element
// Phase k < L of channel j: the cells of layer k for the block's units (tasks: local unit lq, group of NC batch
// rows) and the residual hf_{k-1} for the block's rows (k = 0: the stack's input, element-wise; k >= 1: tasks of
// kProjRows rows d with d / kProjRows = blockIdx.x mod blocks, group of NC batch rows).
template <typename WT, int NC>
__device__ void phase_layer(const FlagParams& q, int i, int j, int k, const float* s_val, const WT* s_w, int warp,
                            int lane) {
  const Params& p = q.p;
  const int D = p.D, B = p.B, F = p.F, L = p.L, nb = gridDim.x;
  const int64_t BD = static_cast<int64_t>(B) * D;
  const int par = j & 1, par_next = (j + 1) & 1;
  const float* hf_in = q.hfr + (static_cast<int64_t>(par) * L + (k > 0 ? k - 1 : 0)) * BD;  // hf_{k-2}
  float* hf_out = q.hfr + (static_cast<int64_t>(par) * L + k) * BD;  // hf_{k-1}
  const float* h_low = p.fh + (static_cast<int64_t>(par_next) * L + (k > 0 ? k - 1 : 0)) * BD;  // h_{k-1}(j)
  const float* h_prev = p.fh + (static_cast<int64_t>(par) * L + k) * BD;  // h_k(j-1)
  const float* base = q.fbase + static_cast<int64_t>(k) * B * F * D;
  const int nbg = (B + NC - 1) / NC;
  const int nq = (D - static_cast<int>(blockIdx.x) + nb - 1) / nb;  // units this block owns
  const int nrg = (D + kProjRows - 1) / kProjRows;
  const int nrq = (nrg - static_cast<int>(blockIdx.x) + nb - 1) / nb;  // row groups this block owns
  const int ncell = nq * nbg, nproj = k > 0 ? nrq * nbg : 0;
  for (int t = warp; t < ncell + nproj; t += kWarps) {
    if (t < ncell) {
      const int lq = t / nbg;
      const int u = blockIdx.x + lq * nb;
      int bs[NC];
      bool ok[NC];
      task_columns<NC>((t % nbg) * NC, B, bs, ok);
      AxpyIn xin[NC];
      VecIn low[NC], prev[NC];
#pragma unroll
      for (int c = 0; c < NC; ++c) {
        const int64_t bj = static_cast<int64_t>(bs[c]) * F + j;
        xin[c] = k == 0 ? AxpyIn{base + bj * D, p.xfw, s_val[bs[c]]}
                        : AxpyIn{hf_in + static_cast<int64_t>(bs[c]) * D, base + bj * D, 1.f};
        low[c].a = h_low + static_cast<int64_t>(bs[c]) * D;
        prev[c].a = j == 0 ? p.fh0 + static_cast<int64_t>(k) * D : h_prev + static_cast<int64_t>(bs[c]) * D;
      }
      const WT* rows[kCellMatrices][kGateRows];
#pragma unroll
      for (int m = 0; m < kCellMatrices; ++m) {
#pragma unroll
        for (int g = 0; g < kGateRows; ++g) rows[m][g] = cell_row<WT>(q, s_w, k, lq, m, g);
      }
      float acc[kGateRows][NC];
      zero(acc);
      if (k < q.resident_layers) {
        warp_dot<kGateRows, NC, WT, AxpyIn, true>(rows[0], xin, D, p.vec, lane, acc);
        if (k > 0) warp_dot<kGateRows, NC, WT, VecIn, true>(rows[1], low, D, p.vec, lane, acc);
        warp_dot<kGateRows, NC, WT, VecIn, true>(rows[2], prev, D, p.vec, lane, acc);
      } else {
        warp_dot(rows[0], xin, D, p.vec, lane, acc);
        if (k > 0) warp_dot(rows[1], low, D, p.vec, lane, acc);
        warp_dot(rows[2], prev, D, p.vec, lane, acc);
      }
      warp_allreduce(acc);
      freq_cell_update<WT, NC>(p, j, k, u, bs, ok, acc, lane);
    } else {  // hf_{k-1} = (hf_{k-2} + P^{k-1} h_{k-1}) + pb^{k-1}, rows of row group rg
      const int tp = t - ncell;
      const int rg = static_cast<int>(blockIdx.x) + (tp / nbg) * nb;
      const WT* pb = layer_weight<WT>(p, k - 1, sl::kFProjB);
      proj_task<WT, NC>(layer_weight<WT>(p, k - 1, sl::kFProjW), D, B, p.vec, rg * kProjRows, (tp % nbg) * NC, h_low,
                        lane, [&](int d, int64_t b, float acc) {
                          const int64_t o = b * D + d;
                          flags::note_read(hf_in + o, 1);
                          hf_out[o] = (hf_in[o] + acc) + load_weight(pb + d);
                          flags::note_write(hf_out + o, 1);
                        });
    }
  }
  if (k == 0) {  // hf_-1 = x[i, j-1] xf_w + xf_b + cz_f[i, j] (the reference's order), the block's row groups
    const WT* xf_b = input_weight<WT>(p, sl::kXfB);
    const int per_row = kProjRows * B;
    for (int e = threadIdx.x; e < nrq * per_row; e += kThreads) {
      const int d = (static_cast<int>(blockIdx.x) + e / per_row * nb) * kProjRows + e % kProjRows;
      const int64_t b = e % per_row / kProjRows;
      if (d >= D) continue;
      const float cz = p.cz_f[((b * p.T + i) * p.F + j) * D + d];
      hf_out[b * D + d] = __fadd_rn(__fadd_rn(__fmul_rn(s_val[b], p.xfw[d]), load_weight(xf_b + d)), cz);
      flags::note_write(hf_out + b * D + d, 1);
    }
  }
}

// The head of channel j in every block (the same code on the same inputs: bitwise the same theta everywhere):
// theta = W_head hf_{L-2} + (W_head P^{L-1}) h_{L-1} + b_fold into s_theta (tasks: kProjRows rows, NC batch rows),
// then thread b draws row b into s_val[b]; block 0 writes x. The log density is left for later (log_density_of).
template <typename WT, int NC>
__device__ void head_and_draw_value(const FlagParams& q, int i, int j, float* s_theta, float* s_val, int warp,
                                    int lane) {
  const Params& p = q.p;
  const int D = p.D, B = p.B, L = p.L, K3 = 3 * p.K;
  const int64_t BD = static_cast<int64_t>(B) * D;
  const float* hf = q.hfr + (static_cast<int64_t>(j & 1) * L + (L - 1)) * BD;  // hf_{L-2}
  const float* h = p.fh + (static_cast<int64_t>((j + 1) & 1) * L + (L - 1)) * BD;  // h_{L-1}(j)
  const sl::Layout lay(p.L, true);
  const WT* hw = weight<WT>(p, lay.head(sl::kHeadW));
  const WT* fw = weight<WT>(p, lay.folded_head(sl::kHeadFoldW));
  const WT* fb = weight<WT>(p, lay.folded_head(sl::kHeadFoldB));
  const int nbg = (B + NC - 1) / NC;
  const int nrg = (K3 + kProjRows - 1) / kProjRows;
  for (int t = warp; t < nrg * nbg; t += kWarps) {
    int r_idx[kProjRows];
    bool okr[kProjRows];
    task_columns<kProjRows>((t / nbg) * kProjRows, K3, r_idx, okr);
    int bs[NC];
    bool ok[NC];
    task_columns<NC>((t % nbg) * NC, B, bs, ok);
    const WT* rows_w[kProjRows];
    const WT* rows_f[kProjRows];
#pragma unroll
    for (int r = 0; r < kProjRows; ++r) {
      rows_w[r] = hw + static_cast<int64_t>(r_idx[r]) * D;
      rows_f[r] = fw + static_cast<int64_t>(r_idx[r]) * D;
    }
    VecIn in_hf[NC], in_h[NC];
#pragma unroll
    for (int c = 0; c < NC; ++c) {
      in_hf[c].a = hf + static_cast<int64_t>(bs[c]) * D;
      in_h[c].a = h + static_cast<int64_t>(bs[c]) * D;
    }
    float acc[kProjRows][NC];
    zero(acc);
    warp_dot(rows_w, in_hf, D, p.vec, lane, acc);
    warp_dot(rows_f, in_h, D, p.vec, lane, acc);
    warp_allreduce(acc);
#pragma unroll
    for (int r = 0; r < kProjRows; ++r) {
#pragma unroll
      for (int c = 0; c < NC; ++c) {
        if (lane == r * NC + c && okr[r] && ok[c])
          s_theta[bs[c] * K3 + r_idx[r]] = acc[r][c] + load_weight(fb + r_idx[r]);
      }
    }
  }
  __syncthreads();  // theta complete
  if (threadIdx.x < B) {
    const int64_t b = threadIdx.x;
    const int64_t e = (b * p.T + i) * p.F + j;
    const float v = draw_mixture_value(s_theta + b * K3, p.K, p.tau, p.u[e], p.eps[e], p.x_min, p.x_max);
    s_val[b] = v;
    if (blockIdx.x == 0) p.x[e] = v;
  }
  __syncthreads();  // s_val complete
}

// Block 0: adds the log density of the last drawn element (theta in s_theta, value in s_val) to s_logd.
__device__ __forceinline__ void log_density_of(const Params& p, const float* s_theta, const float* s_val,
                                               float* s_logd) {
  if (blockIdx.x == 0 && threadIdx.x < p.B) {
    const int b = threadIdx.x;
    s_logd[b] += mixture_log_density(s_theta + b * 3 * p.K, p.K, s_val[b]);
  }
}

// The arrivals so far of a group of `blocks` blocks on one counter: publish this block's writes (arrive), then
// wait for every block of the group.
struct GridFlags {
  unsigned* counter;
  unsigned blocks;
  unsigned arrived = 0;  // this block's arrivals so far (the same count in every block of the group)
  __device__ void arrive() {
    flags::block_arrive(counter);
    ++arrived;
  }
  __device__ void wait() const { flags::block_wait(counter, arrived * blocks); }
  __device__ void sync() {
    arrive();
    wait();
  }
};

// ------------------------------------------------------------------------------------------------ sweeps
// The two frequency sweeps of layer l on disjoint halves of the grid: blocks [0, nb/2) run the forward direction,
// the others the backward one, each block owning units bl, bl + half, ... of its direction (bl its index in the
// half) with their four W_hh rows copied into shared memory for the layer's F steps (sweep_units > 0). A step
// waits only for its own half's arrivals; the caller's grid-wide sync after the last step publishes both.
template <typename WT>
__device__ void frequency_sweeps(const FlagParams& q, int l, GridFlags& half, WT* s_sw, int warp, int lane) {
  const Params& p = q.p;
  const int D = p.D, nb = gridDim.x, nb0 = nb / 2;
  const int r = static_cast<int>(blockIdx.x) < nb0 ? 0 : 1;
  const int hsize = r == 0 ? nb0 : nb - nb0;
  const int bl = static_cast<int>(blockIdx.x) - r * nb0;
  const int nq = (D - bl + hsize - 1) / hsize;  // units this block owns
  const WT* w_hh = layer_weight<WT>(p, l, sl::kTWhh) + static_cast<int64_t>(r + 1) * 4 * D * D;
  const bool resident = q.sweep_units > 0;
  if (resident) {  // the rows of this layer: read once, used F times (the previous layer's are no longer read)
    for (int row = warp; row < nq * kGateRows; row += kWarps) {
      const int lq = row / kGateRows, g = row % kGateRows;
      const WT* src = w_hh + (static_cast<int64_t>(g) * D + bl + static_cast<int64_t>(lq) * hsize) * D;
      for (int e = lane; e < D; e += kWarp) s_sw[static_cast<int64_t>(row) * D + e] = __ldg(src + e);
    }
    __syncthreads();
  }
  const bool wide = p.B >= kBatchCols;
  const int nc = wide ? kBatchCols : 1;
  const int nbg = (p.B + nc - 1) / nc;
  for (int s = 0; s < p.F; ++s) {
    if (s > 0) half.wait();  // step s-1 of this direction: h at the previous channel
    for (int t = warp; t < nq * nbg; t += kWarps) {
      const int lq = t / nbg;
      const int u = bl + lq * hsize;
      const WT* rows[kGateRows];
#pragma unroll
      for (int g = 0; g < kGateRows; ++g) {
        rows[g] = resident ? s_sw + (static_cast<int64_t>(lq) * kGateRows + g) * D
                           : w_hh + (static_cast<int64_t>(g) * D + u) * D;
      }
      const int first_b = (t % nbg) * nc;
      if (resident && wide) {
        sweep_task<WT, kBatchCols, true>(p, l, s, r, u, first_b, rows, lane);
      } else if (resident) {
        sweep_task<WT, 1, true>(p, l, s, r, u, first_b, rows, lane);
      } else if (wide) {
        sweep_task<WT, kBatchCols>(p, l, s, r, u, first_b, rows, lane);
      } else {
        sweep_task<WT, 1>(p, l, s, r, u, first_b, rows, lane);
      }
    }
    if (s + 1 < p.F) half.arrive();
  }
}

// The time-delayed stack of frame i as time_delayed_frame (sample_tier_kernel.cuh), with frequency_sweeps.
template <typename WT>
__device__ void time_delayed_frame_flags(const FlagParams& q, int i, GridFlags& grid, GridFlags& half, WT* s_sw,
                                         int64_t gwarp, int64_t nwarps, int warp, int lane) {
  const Params& p = q.p;
  phase_frame_input<WT>(p, i);
  grid.sync();  // xt complete
  for (int l = 0; l < p.L; ++l) {
    phase_time_gates<WT, kTimeCols>(p, i, l, gwarp, nwarps, lane);
    grid.sync();  // th_new, tc, sgx complete
    frequency_sweeps<WT>(q, l, half, s_sw, warp, lane);
    grid.sync();  // sh of both directions, every channel
    phase_time_proj<WT, kTimeCols>(p, i, l, gwarp, nwarps, lane);
    grid.sync();  // htl[l] complete
  }
}

// ------------------------------------------------------------------------------------------------ kernel
template <typename WT>
__global__ void __launch_bounds__(kThreads) sample_tier_flags_kernel(const FlagParams q) {
  const Params& p = q.p;
  // [2, B, 3K] theta by channel parity, the resident cell rows, then the sweep rows of the current layer
  extern __shared__ __align__(16) float s_dyn[];
  WT* s_w = reinterpret_cast<WT*>(s_dyn + q.theta_floats);
  WT* s_sw = s_w + static_cast<int64_t>(q.resident_layers) * q.units_per_block * kCellMatrices * kGateRows * p.D;
  __shared__ float s_val[kMaxBatch];  // x[b, i, j-1] in every block
  __shared__ float s_logd[kMaxBatch];  // block 0: running log density per batch row
  const int lane = threadIdx.x % kWarp;
  const int warp = threadIdx.x / kWarp;
  const int64_t nwarps = static_cast<int64_t>(gridDim.x) * kWarps;
  const int64_t gwarp = static_cast<int64_t>(blockIdx.x) * kWarps + warp;
  const bool wide = p.B >= kBatchCols;
  if (threadIdx.x < kMaxBatch) s_logd[threadIdx.x] = 0.f;
  load_resident_rows<WT>(q, s_w);  // ends with a block barrier
  GridFlags grid{q.arrivals, gridDim.x};
  const int nb0 = static_cast<int>(gridDim.x) / 2;  // the forward sweep's half of the grid
  GridFlags half{q.arrivals + (static_cast<int>(blockIdx.x) < nb0 ? 1 : 2),
                 static_cast<unsigned>(static_cast<int>(blockIdx.x) < nb0 ? nb0 : gridDim.x - nb0)};
  const int K3 = 3 * p.K;

  for (int i = 0; i < p.T; ++i) {
    if (i > 0) grid.sync();  // block 0's x[:, i-1, :] published
    time_delayed_frame_flags<WT>(q, i, grid, half, s_sw, gwarp, nwarps, warp, lane);
    if (i < p.n_prime) continue;  // primed frame: only the time-delayed caches advance (uniform over the grid)
    phase_bases<WT>(q, i);
    if (threadIdx.x < kMaxBatch) s_val[threadIdx.x] = 0.f;  // channel -1 is zeros
    grid.sync();
    for (int j = 0; j < p.F; ++j) {
      for (int k = 0; k < p.L; ++k) {
        if (k > 0) grid.wait();  // phase k-1 of every block: h_{k-1}, hf_{k-2}
        if (wide) {
          phase_layer<WT, kBatchCols>(q, i, j, k, s_val, s_w, warp, lane);
        } else {
          phase_layer<WT, 1>(q, i, j, k, s_val, s_w, warp, lane);
        }
        grid.arrive();
        // Off the critical path: the previous element's log density, while the other blocks finish phase 0.
        if (k == 0 && j > 0) log_density_of(p, s_dyn + ((j - 1) & 1) * p.B * K3, s_val, s_logd);
      }
      grid.wait();  // phase L-1 of every block: h_{L-1}, hf_{L-2}
      float* s_theta = s_dyn + (j & 1) * p.B * K3;
      if (wide) {
        head_and_draw_value<WT, kBatchCols>(q, i, j, s_theta, s_val, warp, lane);
      } else {
        head_and_draw_value<WT, 1>(q, i, j, s_theta, s_val, warp, lane);
      }
    }
    log_density_of(p, s_dyn + ((p.F - 1) & 1) * p.B * K3, s_val, s_logd);  // the frame's last element
  }
  if (blockIdx.x == 0 && threadIdx.x < p.B) p.log_density[threadIdx.x] = s_logd[threadIdx.x];
}

// Scratch beyond the first design's (Scratch): fbase [L, B, F, D], hfr [2, L, B, D], in floats from `at`.
struct FlagScratch {
  int64_t fbase, hfr, total;
  FlagScratch(int64_t at, int64_t B, int64_t F, int64_t D, int64_t L)
      : fbase(at), hfr(at + L * B * F * D), total(at + L * B * F * D + 2 * L * B * D) {}
  void bind(FlagParams& q, float* base) const {
    q.fbase = base + fbase;
    q.hfr = base + hfr;
  }
};

// Batch rows per launch: theta of two channels for every row fits kHeadSmemFloats (K <= kHeadSmemFloats / 6).
inline int64_t flag_batch_rows(int64_t K) {
  const int64_t fit = kHeadSmemFloats / (6 * K);
  return fit < kMaxBatch ? fit : kMaxBatch;
}

// Shared memory of the kernel: theta floats (2 B 3K rounded up to 16 bytes), the resident rows per layer and the
// rows of a frequency sweep (sweep_units units' four W_hh rows). The sweeps need at least 2 blocks.
inline int64_t flag_theta_floats(int64_t B, int64_t K) { return (2 * B * 3 * K + 3) / 4 * 4; }
inline int64_t flag_layer_bytes(int64_t units_per_block, int64_t D, int64_t weight_bytes) {
  return units_per_block * kCellMatrices * kGateRows * D * weight_bytes;
}
inline int64_t flag_sweep_units(int64_t D, int64_t blocks) { return (D + blocks / 2 - 1) / (blocks / 2); }
inline int64_t flag_sweep_bytes(int64_t sweep_units, int64_t D, int64_t weight_bytes) {
  return sweep_units * kGateRows * D * weight_bytes;
}

}  // namespace sampler_cuda
}  // namespace melnet_fast
