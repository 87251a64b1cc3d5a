// CUDA sampler of one MelNet tier with cached state: melnet_fast::sample_tier on CUDA tensors (schema in
// csrc/bindings.cpp; semantics = the reference melnet_fast/ops/tier_sampling/naive.py, the same as the CPU kernel
// csrc/sample_tier_cpu.cpp).
//
// One persistent cooperative kernel runs the whole tier: grid = SMs x the occupancy the kernel allows, so every
// block is resident and cooperative_groups' grid.sync() is a valid barrier between dependent phases. Each phase is
// a set of independent "tasks" spread over all warps of the grid (grid-stride over a numbering of the warps); a task
// computes a few output rows of a matrix-vector product (a warp-wide dot product per row, 16-byte weight loads)
// for a few input columns, and the fused pointwise work that only needs those rows. For an LSTM the task of hidden
// unit u computes its four gate rows u, D+u, 2D+u, 3D+u, so the cell update of u needs no further barrier.
// Tasks are numbered unit-major, so the warps of one block share weight rows (L1 reuse across columns / batch);
// single-column per-step phases at batch < 4 use a numbering that spreads their few tasks over all SMs instead.
//
// Per frame i (grid barriers marked [B]):
//   [B] (i > 0: frame i-1's draws are written)
//   P0  xt = x[i-1] * xt_w + xt_b + cz_t[i]                                                       [B]
//   per layer l (input in = xt for l = 0, else htl[l-1]):
//     P1  time LSTM step of every (b, j) from its cached state, fused cell update (writes th_new, tc), and the
//         input pre-activations of the two frequency sweeps sgx = W_ih in + bias                   [B]
//     P2  F steps s of the sweeps, forward (j = s) and backward (j = F-1-s) together, each direction on its own
//         half of the tasks: gates = sgx + W_hh h_prev, cell update (writes sh, sc)              [B] per step
//     P3  htl[l] = in + W_proj [th_new | sh_fwd | sh_bwd] + b                                         [B]
//   if i >= n_prime:
//     Pb  base0 = xf_b + cz_f[i] + htl[0] (the part of layer 0's input that does not depend on the draws) [B]
//     per channel j, per layer l:
//       C   frequency-delayed cell: gates = W_ih (hf + htl[l][j]) + W_hh h_prev + bias, cell update    [B]
//           (at l = 0 the input is base0 + x[i, j-1] * xf_w, hf is not stored)
//       Pf  hf = hf_old + W_proj h + b (hf_old at l = 0: x[i, j-1] xf_w + xf_b + cz_f[i, j])           [B]
//     head + draw: every block computes theta = W_head hf + b and the draw itself (identical code and inputs
//     give bitwise identical results), so the drawn value is in every block's shared memory with no barrier;
//     block 0 writes x and accumulates the log density.
// Barriers per frame: 2 + L (F + 2), plus 1 + 2 L F when the frame is drawn.
//
// Memory: all state is float32 in one scratch allocation per call (layout in Scratch below). Buffers read by other
// blocks in the same phase that they are updated in are double-buffered: the time LSTM's h by frame parity, the
// frequency-delayed LSTM's h by channel parity. Cell states and hf are updated in place by their single owner.
// Weights (float32 / bfloat16 / float16) are only read, through the read-only path, and stay in L2 across steps.
//
// Occupancy (nvcc 13.0, sm_90, -Xptxas -v): 200-224 registers, no spills, so one 256-thread block per SM and a
// grid of #SMs blocks (132 on H100 SXM / H200). Tuning hooks for a GPU session: weight rows are read in one place
// (sampler_cuda::warp_dot), where the frequency-delayed cells' rows (the per-element working set) could be pinned
// in shared memory per block; MELNET_FAST_SAMPLER_MAX_BLOCKS caps the grid (cheaper barriers, fewer warps).
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cooperative_groups.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

#include "common.h"
#include "cuda/sample_tier_device.cuh"

namespace melnet_fast {
namespace {

namespace cg = cooperative_groups;
using namespace sampler_cuda;

constexpr int kThreads = 256;               // threads per block
constexpr int kWarps = kThreads / kWarp;    // warps per block
constexpr int kMaxBatch = 64;               // batch rows per launch (more are run in chunks of 64)
constexpr int kGateRows = 4;                // LSTM gate rows per hidden unit (i, f, g, o)
constexpr int kProjRows = 4;                // projection / head rows per task
constexpr int kTimeCols = 4;                // (b, j) columns per task in the per-frame phases P1 and P3
constexpr int kBatchCols = 4;               // batch columns per task in the per-channel phases when B >= 4
constexpr int kHeadSmemFloats = 4096;       // shared floats for the head's outputs (16 KiB)
constexpr float kLogSqrt2Pi = 0.91893853320467274178f;

// The flat weight list (melnet_fast/ops/tier_sampling/weights.py): 4 input tensors, 14 per layer, then the head.
constexpr int kXtW = 0, kXtB = 1, kXfW = 2, kXfB = 3, kFirstLayer = 4, kPerLayer = 14;
constexpr int kTWih = 0, kTWhh = 1, kTBias = 2, kTH0 = 3, kTC0 = 4, kTProjW = 5, kTProjB = 6;
constexpr int kFWih = 7, kFWhh = 8, kFBias = 9, kFH0 = 10, kFC0 = 11, kFProjW = 12, kFProjB = 13;

struct Params {
  int B, T, F, D, L, K;  // B: rows of this launch (<= kMaxBatch)
  int n_prime;
  int head_rows;         // batch rows per chunk of the head (head_rows * 3K <= kHeadSmemFloats)
  float tau;
  bool vec;              // 16-byte weight loads: D % (16 / sizeof(weight)) == 0 and every weight 16-byte aligned
  const unsigned long long* wtab;  // device addresses of the weight tensors, in the flat-list order
  // Data, float32 contiguous.
  const float* cz_t;   // [B, T, F, D]
  const float* cz_f;   // [B, T, F, D]
  const float* u;      // [B, T, F]
  const float* eps;    // [B, T, F]
  float* x;            // [B, T, F]: holds x_init (the prime); drawn frames are overwritten
  float* log_density;  // [B]
  // Constant float32 copies of small weights (filled by the host before the launch).
  const float* xfw;    // [D]        x_freq_proj.weight[:, 0]
  const float* swh0;   // [L, 2, D]  h0 of the forward / backward frequency sweeps (time LSTM directions 1, 2)
  const float* swc0;   // [L, 2, D]  their c0
  const float* fh0;    // [L, D]     h0 of the frequency-delayed LSTM
  const float* fc0;    // [L, D]     its c0
  // State (see the header comment).
  float* xt;     // [B, F, D]        layer-0 input of the time-delayed stack for the current frame
  float* htl;    // [L, B, F, D]     output of time-delayed layer l for the current frame
  float* th;     // [2, L, B, F, D]  time LSTM h; frame i reads parity i % 2, writes (i + 1) % 2 (host fills 0)
  float* tc;     // [L, B, F, D]     time LSTM c, in place (host fills it with c0)
  float* sgx;    // [2, B, F, 4D]    W_ih in + bias of the forward / backward sweeps
  float* sh;     // [2, B, F, D]     sweep outputs h per channel
  float* sc;     // [2, B, D]        sweep cell states, in place
  float* base0;  // [B, F, D]        xf_b + cz_f + htl[0] for the current frame
  float* hf;     // [B, D]           frequency-delayed stack's running hf (after layer 0's projection)
  float* fh;     // [2, L, B, D]     frequency-delayed LSTM h; channel j reads parity j % 2, writes (j + 1) % 2
  float* fc;     // [L, B, D]        its c, in place
};

template <typename WT>
__device__ __forceinline__ const WT* weight(const Params& p, int idx) {
  return reinterpret_cast<const WT*>(__ldg(p.wtab + idx));
}
template <typename WT>
__device__ __forceinline__ const WT* layer_weight(const Params& p, int l, int which) {
  return weight<WT>(p, kFirstLayer + kPerLayer * l + which);
}

// Element-wise work of a phase: every thread of the grid takes elements e, e + #threads, ...
__device__ __forceinline__ int64_t grid_thread() { return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; }
__device__ __forceinline__ int64_t grid_threads() { return static_cast<int64_t>(gridDim.x) * blockDim.x; }

// Column c of a task over n columns starting at first: clamped to the last column (its results are computed
// but not written) so that every lane runs the same code.
template <int NC>
__device__ __forceinline__ void task_columns(int first, int n, int (&col)[NC], bool (&ok)[NC]) {
#pragma unroll
  for (int c = 0; c < NC; ++c) {
    ok[c] = first + c < n;
    col[c] = ok[c] ? first + c : n - 1;
  }
}

// ------------------------------------------------------------------------------------------------ P0
// xt[b, j, :] = x[b, i-1, j] * xt_w + xt_b + cz_t[b, i, j, :] (frame -1 is zeros), rounded in the reference's order.
template <typename WT>
__device__ void phase_frame_input(const Params& p, int i) {
  const WT* xt_w = weight<WT>(p, kXtW);
  const WT* xt_b = weight<WT>(p, kXtB);
  const int64_t n = static_cast<int64_t>(p.B) * p.F * p.D;
  for (int64_t e = grid_thread(); e < n; e += grid_threads()) {
    const int d = static_cast<int>(e % p.D);
    const int64_t bj = e / p.D;  // b * F + j
    const int j = static_cast<int>(bj % p.F);
    const int64_t b = bj / p.F;
    const float prev = i > 0 ? p.x[(b * p.T + (i - 1)) * p.F + j] : 0.f;
    const float cz = p.cz_t[((b * p.T + i) * p.F + j) * p.D + d];
    p.xt[e] = __fadd_rn(__fadd_rn(__fmul_rn(prev, load_weight(xt_w + d)), load_weight(xt_b + d)), cz);
  }
}

// ------------------------------------------------------------------------------------------------ P1
// Tasks (kind, unit u, group of NC columns col = b * F + j), unit-major within a kind:
//   kind 0: time LSTM step: gates = W_ih[0] in[col] + W_hh[0] th_old[col] + bias[0]; c, h of (col, u) updated.
//   kind 1, 2: input pre-activations of the forward / backward sweep: sgx[kind-1][col][g D + u] = W_ih[kind] in + b.
template <typename WT, int NC>
__device__ void phase_time_gates(const Params& p, int i, int l, int64_t gwarp, int64_t nwarps, int lane) {
  const int D = p.D, BF = p.B * p.F;
  const int64_t BFD = static_cast<int64_t>(BF) * D;
  const float* in = l == 0 ? p.xt : p.htl + (l - 1) * BFD;
  const float* th_old = p.th + (static_cast<int64_t>(i & 1) * p.L + l) * BFD;
  float* th_new = p.th + (static_cast<int64_t>((i + 1) & 1) * p.L + l) * BFD;
  float* tc = p.tc + l * BFD;
  const WT* w_ih = layer_weight<WT>(p, l, kTWih);  // [3, 4D, D]
  const WT* w_hh = layer_weight<WT>(p, l, kTWhh);  // [3, 4D, D]; only direction 0 here
  const WT* bias = layer_weight<WT>(p, l, kTBias);  // [3, 4D]
  const int ncg = (BF + NC - 1) / NC;
  const int64_t per_kind = static_cast<int64_t>(D) * ncg;
  for (int64_t t = gwarp; t < 3 * per_kind; t += nwarps) {
    const int kind = static_cast<int>(t / per_kind);
    const int64_t rem = t % per_kind;
    const int u = static_cast<int>(rem / ncg);
    int col[NC];
    bool ok[NC];
    task_columns<NC>(static_cast<int>(rem % ncg) * NC, BF, col, ok);

    const WT* rows[kGateRows];
#pragma unroll
    for (int g = 0; g < kGateRows; ++g) rows[g] = w_ih + (static_cast<int64_t>(kind) * 4 * D + g * D + u) * D;
    VecIn xin[NC];
#pragma unroll
    for (int c = 0; c < NC; ++c) xin[c].a = in + static_cast<int64_t>(col[c]) * D;
    float acc[kGateRows][NC];
    zero(acc);
    warp_dot(rows, xin, D, p.vec, lane, acc);
    if (kind == 0) {  // warp-uniform branch
      const WT* hrows[kGateRows];
#pragma unroll
      for (int g = 0; g < kGateRows; ++g) hrows[g] = w_hh + (static_cast<int64_t>(g) * D + u) * D;
      VecIn hin[NC];
#pragma unroll
      for (int c = 0; c < NC; ++c) hin[c].a = th_old + static_cast<int64_t>(col[c]) * D;
      warp_dot(hrows, hin, D, p.vec, lane, acc);
    }
    warp_allreduce(acc);
    float b[kGateRows];
#pragma unroll
    for (int g = 0; g < kGateRows; ++g) b[g] = load_weight(bias + static_cast<int64_t>(kind) * 4 * D + g * D + u);
#pragma unroll
    for (int c = 0; c < NC; ++c) {
      if (lane == c && ok[c]) {  // lane c writes column c
        const float gi = acc[0][c] + b[0], gf = acc[1][c] + b[1], gg = acc[2][c] + b[2], go = acc[3][c] + b[3];
        if (kind == 0) {
          const int64_t o = static_cast<int64_t>(col[c]) * D + u;
          const CellOut r = lstm_pointwise(gi, gf, gg, go, tc[o]);
          tc[o] = r.c;
          th_new[o] = r.h;
        } else {
          float* out = p.sgx + (static_cast<int64_t>(kind - 1) * BF + col[c]) * 4 * D;
          out[u] = gi;
          out[D + u] = gf;
          out[2 * D + u] = gg;
          out[3 * D + u] = go;
        }
      }
    }
  }
}

// ------------------------------------------------------------------------------------------------ P2
// Step s of both frequency sweeps of layer l. Tasks (direction r, unit u, group of NC batch rows), direction-major:
// the forward sweep (r = 0, time-LSTM direction 1) visits channel j = s, the backward one (r = 1, direction 2)
// j = F-1-s; h_prev is the sweep's output at the channel visited in step s-1 (h0 at s = 0).
template <typename WT, int NC>
__device__ void phase_sweep_step(const Params& p, int l, int s, int64_t gwarp, int64_t nwarps, int lane) {
  const int D = p.D, B = p.B, F = p.F;
  const int nbg = (B + NC - 1) / NC;
  const int64_t per_dir = static_cast<int64_t>(D) * nbg;
  for (int64_t t = gwarp; t < 2 * per_dir; t += nwarps) {
    const int r = static_cast<int>(t / per_dir);
    const int64_t rem = t % per_dir;
    const int u = static_cast<int>(rem / nbg);
    int bs[NC];
    bool ok[NC];
    task_columns<NC>(static_cast<int>(rem % nbg) * NC, B, bs, ok);
    const int j = r == 0 ? s : F - 1 - s;
    const int jp = r == 0 ? s - 1 : F - s;  // channel of step s-1 (unused at s = 0)
    const WT* w_hh = layer_weight<WT>(p, l, kTWhh) + static_cast<int64_t>(r + 1) * 4 * D * D;
    const WT* rows[kGateRows];
#pragma unroll
    for (int g = 0; g < kGateRows; ++g) rows[g] = w_hh + (static_cast<int64_t>(g) * D + u) * D;
    VecIn hin[NC];
#pragma unroll
    for (int c = 0; c < NC; ++c) {
      hin[c].a = s == 0 ? p.swh0 + (static_cast<int64_t>(l) * 2 + r) * D
                        : p.sh + ((static_cast<int64_t>(r) * B + bs[c]) * F + jp) * D;
    }
    float acc[kGateRows][NC];
    zero(acc);
    warp_dot(rows, hin, D, p.vec, lane, acc);
    warp_allreduce(acc);
#pragma unroll
    for (int c = 0; c < NC; ++c) {
      if (lane == c && ok[c]) {
        const int64_t rb = static_cast<int64_t>(r) * B + bs[c];
        const float* gx = p.sgx + (rb * F + j) * 4 * D;
        const float c_prev = s == 0 ? p.swc0[(static_cast<int64_t>(l) * 2 + r) * D + u] : p.sc[rb * D + u];
        const CellOut o = lstm_pointwise(gx[u] + acc[0][c], gx[D + u] + acc[1][c], gx[2 * D + u] + acc[2][c],
                                         gx[3 * D + u] + acc[3][c], c_prev);
        p.sc[rb * D + u] = o.c;
        p.sh[(rb * F + j) * D + u] = o.h;
      }
    }
  }
}

// ------------------------------------------------------------------------------------------------ P3
// htl[l][col][d] = in[col][d] + W_proj[d] . [th_new[col] | sh[0][col] | sh[1][col]] + b[d]. Tasks (group of
// kProjRows rows d, group of NC columns), row-major.
template <typename WT, int NC>
__device__ void phase_time_proj(const Params& p, int i, int l, int64_t gwarp, int64_t nwarps, int lane) {
  const int D = p.D, BF = p.B * p.F;
  const int64_t BFD = static_cast<int64_t>(BF) * D;
  const float* in = l == 0 ? p.xt : p.htl + (l - 1) * BFD;
  float* out = p.htl + l * BFD;
  const float* th_new = p.th + (static_cast<int64_t>((i + 1) & 1) * p.L + l) * BFD;
  const float* feats[3] = {th_new, p.sh, p.sh + BFD};  // sh[r][b][j] = sh + (r * B F + col) * D
  const WT* pw = layer_weight<WT>(p, l, kTProjW);  // [D, 3D]
  const WT* pb = layer_weight<WT>(p, l, kTProjB);  // [D]
  const int ncg = (BF + NC - 1) / NC;
  const int nrg = (D + kProjRows - 1) / kProjRows;
  for (int64_t t = gwarp; t < static_cast<int64_t>(nrg) * ncg; t += nwarps) {
    int d[kProjRows];
    bool okr[kProjRows];
    task_columns<kProjRows>(static_cast<int>(t / ncg) * kProjRows, D, d, okr);
    int col[NC];
    bool ok[NC];
    task_columns<NC>(static_cast<int>(t % ncg) * NC, BF, col, ok);
    float acc[kProjRows][NC];
    zero(acc);
#pragma unroll
    for (int seg = 0; seg < 3; ++seg) {
      const WT* rows[kProjRows];
#pragma unroll
      for (int r = 0; r < kProjRows; ++r) rows[r] = pw + static_cast<int64_t>(d[r]) * 3 * D + seg * D;
      VecIn fin[NC];
#pragma unroll
      for (int c = 0; c < NC; ++c) fin[c].a = feats[seg] + static_cast<int64_t>(col[c]) * D;
      warp_dot(rows, fin, D, p.vec, lane, acc);
    }
    warp_allreduce(acc);
#pragma unroll
    for (int r = 0; r < kProjRows; ++r) {
#pragma unroll
      for (int c = 0; c < NC; ++c) {
        if (lane == r * NC + c && okr[r] && ok[c]) {
          const int64_t o = static_cast<int64_t>(col[c]) * D + d[r];
          out[o] = (in[o] + acc[r][c]) + load_weight(pb + d[r]);
        }
      }
    }
  }
}

// ------------------------------------------------------------------------------------------------ Pb
// base0[b, j, :] = xf_b + cz_f[b, i, j, :] + htl[0][b, j, :]: layer 0's cell input minus x[b, i, j-1] * xf_w.
template <typename WT>
__device__ void phase_freq_base(const Params& p, int i) {
  const WT* xf_b = weight<WT>(p, kXfB);
  const int64_t n = static_cast<int64_t>(p.B) * p.F * p.D;
  for (int64_t e = grid_thread(); e < n; e += grid_threads()) {
    const int d = static_cast<int>(e % p.D);
    const int64_t bj = e / p.D;
    const int j = static_cast<int>(bj % p.F);
    const int64_t b = bj / p.F;
    p.base0[e] = (load_weight(xf_b + d) + p.cz_f[((b * p.T + i) * p.F + j) * p.D + d]) + p.htl[e];
  }
}

// ------------------------------------------------------------------------------------------------ C
// Frequency-delayed cell of layer l at channel j: tasks (unit u, group of NC batch rows). Input hf + htl[l][b, j]
// (layer 0: base0[b, j] + x[b, i, j-1] xf_w, with x[b, i, j-1] = s_val[b]); h_prev = fh[j % 2] (h0 at j = 0).
template <typename WT, int NC>
__device__ void phase_freq_cell(const Params& p, int j, int l, const float* s_val, int64_t gwarp, int64_t nwarps,
                                int lane) {
  const int D = p.D, B = p.B, F = p.F;
  const int64_t BD = static_cast<int64_t>(B) * D;
  const WT* w_ih = layer_weight<WT>(p, l, kFWih);  // [1, 4D, D]
  const WT* w_hh = layer_weight<WT>(p, l, kFWhh);
  const WT* bias = layer_weight<WT>(p, l, kFBias);
  const float* htl = p.htl + static_cast<int64_t>(l) * B * F * D;
  const float* h_prev = p.fh + (static_cast<int64_t>(j & 1) * p.L + l) * BD;
  float* h_next = p.fh + (static_cast<int64_t>((j + 1) & 1) * p.L + l) * BD;
  float* fc = p.fc + l * BD;
  const int nbg = (B + NC - 1) / NC;
  for (int64_t t = gwarp; t < static_cast<int64_t>(D) * nbg; t += nwarps) {
    const int u = static_cast<int>(t / nbg);
    int bs[NC];
    bool ok[NC];
    task_columns<NC>(static_cast<int>(t % nbg) * NC, B, bs, ok);
    AxpyIn xin[NC];
    VecIn hin[NC];
#pragma unroll
    for (int c = 0; c < NC; ++c) {
      const int64_t bj = static_cast<int64_t>(bs[c]) * F + j;
      if (l == 0) {
        xin[c] = AxpyIn{p.base0 + bj * D, p.xfw, s_val[bs[c]]};
      } else {
        xin[c] = AxpyIn{p.hf + static_cast<int64_t>(bs[c]) * D, htl + bj * D, 1.f};
      }
      hin[c].a = j == 0 ? p.fh0 + static_cast<int64_t>(l) * D : h_prev + static_cast<int64_t>(bs[c]) * D;
    }
    const WT* rows[kGateRows];
    const WT* hrows[kGateRows];
#pragma unroll
    for (int g = 0; g < kGateRows; ++g) {
      rows[g] = w_ih + (static_cast<int64_t>(g) * D + u) * D;
      hrows[g] = w_hh + (static_cast<int64_t>(g) * D + u) * D;
    }
    float acc[kGateRows][NC];
    zero(acc);
    warp_dot(rows, xin, D, p.vec, lane, acc);
    warp_dot(hrows, hin, D, p.vec, lane, acc);
    warp_allreduce(acc);
#pragma unroll
    for (int c = 0; c < NC; ++c) {
      if (lane == c && ok[c]) {
        const int64_t o = static_cast<int64_t>(bs[c]) * D + u;
        const float c_prev = j == 0 ? p.fc0[static_cast<int64_t>(l) * D + u] : fc[o];
        const CellOut r = lstm_pointwise(acc[0][c] + load_weight(bias + u), acc[1][c] + load_weight(bias + D + u),
                                         acc[2][c] + load_weight(bias + 2 * D + u),
                                         acc[3][c] + load_weight(bias + 3 * D + u), c_prev);
        fc[o] = r.c;
        h_next[o] = r.h;
      }
    }
  }
}

// ------------------------------------------------------------------------------------------------ Pf
// hf[b][d] = hf_old[b][d] + W_proj[d] . h[b] + b[d], with h the cell output just written (fh[(j + 1) % 2]) and
// hf_old at l = 0 the stack's input x[b, i, j-1] xf_w + xf_b + cz_f[b, i, j] (reference rounding order), else hf.
// Each (b, d) has a single owner task, which reads and writes it: in place is safe.
template <typename WT, int NC>
__device__ void phase_freq_proj(const Params& p, int i, int j, int l, const float* s_val, int64_t gwarp,
                                int64_t nwarps, int lane) {
  const int D = p.D, B = p.B;
  const int64_t BD = static_cast<int64_t>(B) * D;
  const float* h = p.fh + (static_cast<int64_t>((j + 1) & 1) * p.L + l) * BD;
  const WT* pw = layer_weight<WT>(p, l, kFProjW);  // [D, D]
  const WT* pb = layer_weight<WT>(p, l, kFProjB);
  const WT* xf_b = weight<WT>(p, kXfB);
  const int nbg = (B + NC - 1) / NC;
  const int nrg = (D + kProjRows - 1) / kProjRows;
  for (int64_t t = gwarp; t < static_cast<int64_t>(nrg) * nbg; t += nwarps) {
    int d[kProjRows];
    bool okr[kProjRows];
    task_columns<kProjRows>(static_cast<int>(t / nbg) * kProjRows, D, d, okr);
    int bs[NC];
    bool ok[NC];
    task_columns<NC>(static_cast<int>(t % nbg) * NC, B, bs, ok);
    const WT* rows[kProjRows];
#pragma unroll
    for (int r = 0; r < kProjRows; ++r) rows[r] = pw + static_cast<int64_t>(d[r]) * D;
    VecIn hin[NC];
#pragma unroll
    for (int c = 0; c < NC; ++c) hin[c].a = h + static_cast<int64_t>(bs[c]) * D;
    float acc[kProjRows][NC];
    zero(acc);
    warp_dot(rows, hin, D, p.vec, lane, acc);
    warp_allreduce(acc);
#pragma unroll
    for (int r = 0; r < kProjRows; ++r) {
#pragma unroll
      for (int c = 0; c < NC; ++c) {
        if (lane == r * NC + c && okr[r] && ok[c]) {
          const int64_t b = bs[c];
          const int64_t o = b * D + d[r];
          float hf_old;
          if (l == 0) {
            const float cz = p.cz_f[((b * p.T + i) * p.F + j) * D + d[r]];
            hf_old = __fadd_rn(__fadd_rn(__fmul_rn(s_val[b], p.xfw[d[r]]), load_weight(xf_b + d[r])), cz);
          } else {
            hf_old = p.hf[o];
          }
          p.hf[o] = (hf_old + acc[r][c]) + load_weight(pb + d[r]);
        }
      }
    }
  }
}

// ------------------------------------------------------------------------------------------------ draw
// The rule of gmm_sample_from_noise (ops/gmm/naive.py) and the log density of the drawn value under the
// untempered mixture (-gmm_nll), as the CPU kernel computes them. theta = [mu (K), log_sigma (K), logit_pi (K)].
struct Drawn {
  float value, log_density;
};
__device__ Drawn draw_element(const float* theta, int K, float tau, float u, float eps) {
  const float* mu = theta;
  const float* ls = theta + K;
  const float* lp = theta + 2 * K;
  int k_sel = 0;
  float value;
  if (tau == 0.f) {  // the mean of the first most probable component
    for (int k = 1; k < K; ++k) {
      if (lp[k] > lp[k_sel]) k_sel = k;
    }
    value = mu[k_sel];
  } else {  // inverse CDF of softmax(logit / tau): k = #{k : cdf_k <= u}, clamped to K-1
    float mx = -INFINITY;
    for (int k = 0; k < K; ++k) mx = fmaxf(mx, __fdiv_rn(lp[k], tau));
    float sum = 0.f;
    for (int k = 0; k < K; ++k) sum += exp_precise(__fdiv_rn(lp[k], tau) - mx);
    float cdf = 0.f;
    int below = 0;
    for (int k = 0; k < K; ++k) {
      cdf += __fdiv_rn(exp_precise(__fdiv_rn(lp[k], tau) - mx), sum);
      below += cdf <= u ? 1 : 0;
    }
    k_sel = min(below, K - 1);
    value = __fadd_rn(mu[k_sel], __fmul_rn(__fmul_rn(tau, exp_precise(ls[k_sel])), eps));
  }
  // log sum_k pi_k N(value; mu_k, sigma_k), pi = softmax(logit_pi): two log-sum-exps.
  float lmx = -INFINITY;
  for (int k = 0; k < K; ++k) lmx = fmaxf(lmx, lp[k]);
  float lse = 0.f;
  for (int k = 0; k < K; ++k) lse += exp_precise(lp[k] - lmx);
  lse = lmx + logf(lse);
  float amax = -INFINITY;
  for (int k = 0; k < K; ++k) {
    const float z = (value - mu[k]) * exp_precise(-ls[k]);
    amax = fmaxf(amax, lp[k] - lse - 0.5f * z * z - ls[k] - kLogSqrt2Pi);
  }
  float sa = 0.f;
  for (int k = 0; k < K; ++k) {
    const float z = (value - mu[k]) * exp_precise(-ls[k]);
    sa += exp_precise(lp[k] - lse - 0.5f * z * z - ls[k] - kLogSqrt2Pi - amax);
  }
  return {value, amax + logf(sa)};
}

// Head and draw of channel j, run by every block on the same hf (so every block gets the same values, bitwise:
// same code, same inputs, same reduction order). Batch rows in chunks of head_rows: warps compute theta into
// shared memory (tasks: group of kProjRows rows of W_head, batch row), then thread t draws row b0 + t. Block 0
// writes x and accumulates the log density. Ends with s_val[b] = x[b, i, j] visible to the whole block.
template <typename WT>
__device__ void head_and_draw(const Params& p, int i, int j, float* s_theta, float* s_val, float* s_logd,
                              int warp, int lane) {
  const int D = p.D, K3 = 3 * p.K;
  const WT* hw = weight<WT>(p, kFirstLayer + kPerLayer * p.L);      // [3K, D]
  const WT* hb = weight<WT>(p, kFirstLayer + kPerLayer * p.L + 1);  // [3K]
  const int nrg = (K3 + kProjRows - 1) / kProjRows;
  for (int b0 = 0; b0 < p.B; b0 += p.head_rows) {
    const int nb = min(p.head_rows, p.B - b0);
    for (int t = warp; t < nrg * nb; t += kWarps) {
      const int bb = t % nb;
      int r_idx[kProjRows];
      bool okr[kProjRows];
      task_columns<kProjRows>((t / nb) * kProjRows, K3, r_idx, okr);
      const WT* rows[kProjRows];
#pragma unroll
      for (int r = 0; r < kProjRows; ++r) rows[r] = hw + static_cast<int64_t>(r_idx[r]) * D;
      const VecIn in[1] = {VecIn{p.hf + static_cast<int64_t>(b0 + bb) * D}};
      float acc[kProjRows][1];
      zero(acc);
      warp_dot(rows, in, D, p.vec, lane, acc);
      warp_allreduce(acc);
#pragma unroll
      for (int r = 0; r < kProjRows; ++r) {
        if (lane == r && okr[r]) s_theta[bb * K3 + r_idx[r]] = acc[r][0] + load_weight(hb + r_idx[r]);
      }
    }
    __syncthreads();  // theta of the chunk complete
    if (threadIdx.x < nb) {
      const int64_t b = b0 + threadIdx.x;
      const int64_t e = (b * p.T + i) * p.F + j;
      const Drawn dr = draw_element(s_theta + threadIdx.x * K3, p.K, p.tau, p.u[e], p.eps[e]);
      s_val[b] = dr.value;
      if (blockIdx.x == 0) {
        p.x[e] = dr.value;
        s_logd[b] += dr.log_density;
      }
    }
    __syncthreads();  // s_theta free for the next chunk; s_val complete after the last chunk
  }
}

// ------------------------------------------------------------------------------------------------ kernel
// Dispatch of the per-channel phases on the batch size: NC = kBatchCols batch rows per task when there are that
// many (weight rows reused across them), else one (no clamped duplicate columns at batch 1).
template <typename WT>
__global__ void __launch_bounds__(kThreads) sample_tier_kernel(const Params p) {
  cg::grid_group grid = cg::this_grid();
  extern __shared__ float s_theta[];     // [head_rows, 3K]
  __shared__ float s_val[kMaxBatch];     // x[b, i, j-1]: the previous channel's drawn value, in every block
  __shared__ float s_logd[kMaxBatch];    // block 0: running log density per batch row
  const int lane = threadIdx.x % kWarp;
  const int warp = threadIdx.x / kWarp;
  const int64_t nwarps = static_cast<int64_t>(gridDim.x) * kWarps;
  // Two numberings of the grid's warps (both bijections onto [0, nwarps), so any phase may use either):
  // packed puts consecutive tasks in one block (they share weight rows: one L2 read, then L1), spread puts them
  // on different SMs (single-column tasks share nothing; at batch 1 a phase has only ~D tasks, and spreading them
  // gives every SM its share of the weight bytes instead of loading the first D / kWarps SMs).
  const int64_t gwarp = static_cast<int64_t>(blockIdx.x) * kWarps + warp;
  const int64_t gwarp_spread = static_cast<int64_t>(warp) * gridDim.x + blockIdx.x;
  const bool wide = p.B >= kBatchCols;
  const int64_t gwarp_step = wide ? gwarp : gwarp_spread;  // numbering of the per-step phases (sweeps, cells)
  if (threadIdx.x < kMaxBatch) s_logd[threadIdx.x] = 0.f;
  __syncthreads();

  for (int i = 0; i < p.T; ++i) {
    // x[:, i-1, :] was written by block 0 during frame i-1 (its last channel after the last barrier).
    if (i > 0) grid.sync();
    phase_frame_input<WT>(p, i);
    grid.sync();  // xt complete
    for (int l = 0; l < p.L; ++l) {
      phase_time_gates<WT, kTimeCols>(p, i, l, gwarp, nwarps, lane);
      grid.sync();  // th_new, tc, sgx complete
      for (int s = 0; s < p.F; ++s) {
        if (wide) {
          phase_sweep_step<WT, kBatchCols>(p, l, s, gwarp_step, nwarps, lane);
        } else {
          phase_sweep_step<WT, 1>(p, l, s, gwarp_step, nwarps, lane);
        }
        grid.sync();  // sh at the channels of step s, sc complete
      }
      phase_time_proj<WT, kTimeCols>(p, i, l, gwarp, nwarps, lane);
      grid.sync();  // htl[l] complete (the next layer's input; the frequency-delayed stack's ht_layer[l])
    }
    if (i < p.n_prime) continue;  // primed frame: only the time-delayed caches advance (uniform over the grid)

    phase_freq_base<WT>(p, i);
    if (threadIdx.x < kMaxBatch) s_val[threadIdx.x] = 0.f;  // channel -1 is zeros
    grid.sync();  // base0 complete (and s_val visible in the block: grid.sync is also a block barrier)
    for (int j = 0; j < p.F; ++j) {
      for (int l = 0; l < p.L; ++l) {
        if (wide) {
          phase_freq_cell<WT, kBatchCols>(p, j, l, s_val, gwarp_step, nwarps, lane);
        } else {
          phase_freq_cell<WT, 1>(p, j, l, s_val, gwarp_step, nwarps, lane);
        }
        grid.sync();  // h of layer l at channel j complete
        if (wide) {
          phase_freq_proj<WT, kBatchCols>(p, i, j, l, s_val, gwarp_step, nwarps, lane);
        } else {
          phase_freq_proj<WT, 1>(p, i, j, l, s_val, gwarp_step, nwarps, lane);
        }
        grid.sync();  // hf after layer l complete
      }
      // No barrier after the draw: each block has the values in s_val. hf is next written by channel j+1's
      // layer-0 projection, after a barrier that every block reaches only once it has finished reading hf here.
      head_and_draw<WT>(p, i, j, s_theta, s_val, s_logd, warp, lane);
    }
  }
  if (blockIdx.x == 0 && threadIdx.x < p.B) p.log_density[threadIdx.x] = s_logd[threadIdx.x];
}

// ------------------------------------------------------------------------------------------------ host
// Element offsets (in floats) of the scratch buffers; every size is a multiple of D, so every buffer starts
// 16-byte aligned when D % 4 == 0 (needed by the vector path's float4 loads).
struct Scratch {
  int64_t xfw, swh0, swc0, fh0, fc0, xt, htl, th, tc, sgx, sh, sc, base0, hf, fh, fc, total;
  Scratch(int64_t B, int64_t F, int64_t D, int64_t L) {
    int64_t o = 0;
    auto take = [&o](int64_t n) {
      const int64_t at = o;
      o += n;
      return at;
    };
    xfw = take(D);
    swh0 = take(L * 2 * D);
    swc0 = take(L * 2 * D);
    fh0 = take(L * D);
    fc0 = take(L * D);
    xt = take(B * F * D);
    htl = take(L * B * F * D);
    th = take(2 * L * B * F * D);
    tc = take(L * B * F * D);
    sgx = take(2 * B * F * 4 * D);
    sh = take(2 * B * F * D);
    sc = take(2 * B * D);
    base0 = take(B * F * D);
    hf = take(B * D);
    fh = take(2 * L * B * D);
    fc = take(L * B * D);
    total = o;
  }
};

std::vector<int64_t> expected_shape(int64_t idx, int64_t D, int64_t L, int64_t K) {
  if (idx < kFirstLayer) return idx % 2 == 0 ? std::vector<int64_t>{D, 1} : std::vector<int64_t>{D};
  if (idx == kFirstLayer + kPerLayer * L) return {3 * K, D};
  if (idx == kFirstLayer + kPerLayer * L + 1) return {3 * K};
  switch ((idx - kFirstLayer) % kPerLayer) {
    case kTWih: case kTWhh: return {3, 4 * D, D};
    case kTBias: return {3, 4 * D};
    case kTH0: case kTC0: return {3, D};
    case kTProjW: return {D, 3 * D};
    case kFWih: case kFWhh: return {1, 4 * D, D};
    case kFBias: return {1, 4 * D};
    case kFH0: case kFC0: return {1, D};
    case kFProjW: return {D, D};
    default: return {D};  // kTProjB, kFProjB
  }
}

bool is_sampler_dtype(at::ScalarType t) {
  return t == at::kFloat || t == at::kBFloat16 || t == at::kHalf;
}

// Optional cap on the number of blocks (MELNET_FAST_SAMPLER_MAX_BLOCKS): fewer blocks make each grid barrier
// cheaper at the cost of fewer warps per phase; a tuning knob for benchmarks (and the tests check that the result
// does not depend on it). Unset or invalid: SMs x occupancy.
int max_blocks_cap() {
  const char* v = std::getenv("MELNET_FAST_SAMPLER_MAX_BLOCKS");
  if (v == nullptr) return std::numeric_limits<int>::max();
  const int n = std::atoi(v);
  return n > 0 ? n : std::numeric_limits<int>::max();
}

template <typename WT>
void launch(Params p, int64_t dyn_smem, const c10::cuda::CUDAStream& stream, int device) {
  const void* kernel = reinterpret_cast<const void*>(&sample_tier_kernel<WT>);
  int coop = 0, sms = 0, per_sm = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&coop, cudaDevAttrCooperativeLaunch, device));
  TORCH_CHECK(coop, "sample_tier: the cuda sampler needs cooperative kernel launches, which device ", device,
              " does not support; use the reference backend");
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  C10_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads,
                                                               static_cast<size_t>(dyn_smem)));
  TORCH_CHECK(per_sm >= 1, "sample_tier: the cuda sampler's kernel cannot be resident on device ", device,
              " (", kThreads, " threads, ", dyn_smem, " bytes of dynamic shared memory per block)");
  // Every block must be resident at once for grid.sync(): at most the occupancy limit per SM on every SM.
  const int grid = std::min(sms * per_sm, max_blocks_cap());
  void* args[] = {&p};
  C10_CUDA_CHECK(cudaLaunchCooperativeKernel(kernel, dim3(grid), dim3(kThreads), args,
                                             static_cast<size_t>(dyn_smem), stream.stream()));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

std::tuple<at::Tensor, at::Tensor> sample_tier_cuda(const at::Tensor& x_init, const at::Tensor& cz_t_in,
                                                    const at::Tensor& cz_f_in, const at::Tensor& u_in,
                                                    const at::Tensor& eps_in, at::TensorList weights_in,
                                                    int64_t n_layers, int64_t n_mixtures, double temperature,
                                                    int64_t n_prime) {
  // ---- argument checks (the Python op checks the same; direct callers of torch.ops get them here)
  TORCH_CHECK(n_layers >= 1, "sample_tier: n_layers must be >= 1, got ", n_layers);
  TORCH_CHECK(n_mixtures >= 1, "sample_tier: n_mixtures must be >= 1, got ", n_mixtures);
  TORCH_CHECK(3 * n_mixtures <= kHeadSmemFloats, "sample_tier: the cuda sampler takes n_mixtures <= ",
              kHeadSmemFloats / 3, ", got ", n_mixtures);
  const int64_t L = n_layers, K = n_mixtures;
  const int64_t n_weights = kFirstLayer + kPerLayer * L + 2;
  TORCH_CHECK(static_cast<int64_t>(weights_in.size()) == n_weights, "sample_tier: weights must hold ", n_weights,
              " tensors for n_layers=", L, ", got ", weights_in.size());
  TORCH_CHECK(x_init.dim() == 3, "sample_tier: x_init must be [B, T, F], got shape ", x_init.sizes());
  TORCH_CHECK(weights_in[0].dim() == 2, "sample_tier: weights[0] must be [D, 1], got shape ", weights_in[0].sizes());
  const int64_t B = x_init.size(0), T = x_init.size(1), F = x_init.size(2), D = weights_in[0].size(0);
  TORCH_CHECK(D >= 1, "sample_tier: the hidden size (weights[0].shape[0]) must be >= 1");
  const struct {
    const char* name;
    const at::Tensor& t;
    std::vector<int64_t> shape;
  } data[] = {{"cz_t", cz_t_in, {B, T, F, D}}, {"cz_f", cz_f_in, {B, T, F, D}}, {"u", u_in, {B, T, F}},
              {"eps", eps_in, {B, T, F}}};
  TORCH_CHECK(x_init.is_cuda(), "sample_tier: x_init must be a CUDA tensor for the cuda sampler, got ",
              x_init.device());
  TORCH_CHECK(is_sampler_dtype(x_init.scalar_type()), "sample_tier: x_init must be float32, bfloat16 or float16, got ",
              x_init.scalar_type());
  for (const auto& a : data) {
    TORCH_CHECK(a.t.sizes() == at::IntArrayRef(a.shape), "sample_tier: ", a.name, " must have shape ",
                at::IntArrayRef(a.shape), ", got ", a.t.sizes());
    TORCH_CHECK(a.t.device() == x_init.device(), "sample_tier: ", a.name, " is on ", a.t.device(),
                " but x_init is on ", x_init.device());
    TORCH_CHECK(a.t.scalar_type() == x_init.scalar_type(), "sample_tier: ", a.name, " has dtype ",
                a.t.scalar_type(), " but x_init has ", x_init.scalar_type());
  }
  const at::ScalarType wtype = weights_in[0].scalar_type();
  TORCH_CHECK(is_sampler_dtype(wtype), "sample_tier: weights must be float32, bfloat16 or float16, got ", wtype);
  for (int64_t idx = 0; idx < static_cast<int64_t>(weights_in.size()); ++idx) {
    const at::Tensor& w = weights_in[idx];
    const auto shape = expected_shape(idx, D, L, K);
    TORCH_CHECK(w.sizes() == at::IntArrayRef(shape), "sample_tier: weights[", idx, "] must have shape ",
                at::IntArrayRef(shape), " (hidden ", D, ", K=", K, "), got ", w.sizes());
    TORCH_CHECK(w.device() == x_init.device(), "sample_tier: weights[", idx, "] is on ", w.device(),
                " but x_init is on ", x_init.device());
    TORCH_CHECK(w.scalar_type() == wtype, "sample_tier: weights[", idx, "] has dtype ", w.scalar_type(),
                " but weights[0] has ", wtype, " (all weights must share one dtype)");
  }
  TORCH_CHECK(std::isfinite(temperature) && temperature >= 0,
              "sample_tier: temperature must be a finite number >= 0, got ", temperature);
  TORCH_CHECK(n_prime >= 0 && n_prime <= T, "sample_tier: n_prime must be in [0, ", T, "], got ", n_prime);
  // Kernel indices: sizes up to the int range, offsets in int64.
  TORCH_CHECK(std::max({T, F, 4 * D}) <= std::numeric_limits<int>::max() / kMaxBatch,
              "sample_tier: sizes too large for the cuda sampler (T=", T, ", F=", F, ", D=", D, ")");

  c10::cuda::CUDAGuard guard(x_init.device());
  const auto stream = c10::cuda::getCurrentCUDAStream();
  const auto fopts = x_init.options().dtype(at::kFloat);

  // ---- outputs (float32 inside; cast back to x_init's dtype at the end)
  at::Tensor x = new_output(x_init.sizes(), fopts);
  x.copy_(x_init);
  at::Tensor log_density = new_output({B}, fopts);
  if (B == 0 || T == 0 || F == 0) {
    log_density.zero_();
    return {x.to(x_init.scalar_type()), log_density.to(x_init.scalar_type())};
  }
  const at::Tensor cz_t = cz_t_in.to(at::kFloat).contiguous();
  const at::Tensor cz_f = cz_f_in.to(at::kFloat).contiguous();
  const at::Tensor u = u_in.to(at::kFloat).contiguous();
  const at::Tensor eps = eps_in.to(at::kFloat).contiguous();

  // ---- weights: contiguous, their addresses in a device table; the vector path when everything is aligned
  std::vector<at::Tensor> w;
  w.reserve(weights_in.size());
  for (const auto& t : weights_in) w.push_back(t.contiguous());
  const int64_t vec_n = 16 / static_cast<int64_t>(at::elementSize(wtype));
  bool vec = D % vec_n == 0;
  at::Tensor table = at::empty({static_cast<int64_t>(w.size())}, at::TensorOptions().dtype(at::kLong));
  int64_t* entries = table.data_ptr<int64_t>();
  for (size_t idx = 0; idx < w.size(); ++idx) {
    const auto addr = reinterpret_cast<uintptr_t>(w[idx].data_ptr());
    vec = vec && addr % 16 == 0;
    entries[idx] = static_cast<int64_t>(addr);
  }
  table = table.to(x_init.device());

  // ---- scratch: one allocation, sized for one launch of up to kMaxBatch rows
  const int64_t Bc = std::min<int64_t>(B, kMaxBatch);
  const Scratch so(Bc, F, D, L);
  at::Tensor scratch = at::empty({so.total}, fopts);
  if (poison_outputs_flag().load(std::memory_order_relaxed)) {
    scratch.fill_(std::numeric_limits<float>::quiet_NaN());  // reads of state nobody wrote show up as NaN
  }
  auto view = [&](int64_t off, at::IntArrayRef sizes) {
    int64_t n = 1;
    for (auto s : sizes) n *= s;
    return scratch.narrow(0, off, n).view(sizes);
  };
  float* base = scratch.data_ptr<float>();
  // Constant float32 copies of the small weights (copy_ converts the dtype).
  view(so.xfw, {D}).copy_(w[kXfW].view({D}));
  for (int64_t l = 0; l < L; ++l) {
    const int64_t lb = kFirstLayer + kPerLayer * l;
    view(so.swh0, {L, 2, D}).select(0, l).copy_(w[lb + kTH0].narrow(0, 1, 2));
    view(so.swc0, {L, 2, D}).select(0, l).copy_(w[lb + kTC0].narrow(0, 1, 2));
    view(so.fh0, {L, D}).select(0, l).copy_(w[lb + kFH0][0]);
    view(so.fc0, {L, D}).select(0, l).copy_(w[lb + kFC0][0]);
  }

  const int64_t head_rows = std::max<int64_t>(1, std::min<int64_t>(Bc, kHeadSmemFloats / (3 * K)));
  const int64_t dyn_smem = head_rows * 3 * K * static_cast<int64_t>(sizeof(float));

  for (int64_t b0 = 0; b0 < B; b0 += kMaxBatch) {
    const int64_t nb = std::min<int64_t>(kMaxBatch, B - b0);
    // Time LSTM state of every (b, j) starts at its trainable h0 / c0 (direction 0); parity 0 is frame 0's input.
    for (int64_t l = 0; l < L; ++l) {
      const int64_t lb = kFirstLayer + kPerLayer * l;
      // Laid out with nb rows, as the kernel indexes them (p.B = nb).
      view(so.th, {2, L, nb, F, D}).select(0, 0).select(0, l).copy_(w[lb + kTH0][0].view({1, 1, D}).expand({nb, F, D}));
      view(so.tc, {L, nb, F, D}).select(0, l).copy_(w[lb + kTC0][0].view({1, 1, D}).expand({nb, F, D}));
    }
    Params p;
    p.B = static_cast<int>(nb);
    p.T = static_cast<int>(T);
    p.F = static_cast<int>(F);
    p.D = static_cast<int>(D);
    p.L = static_cast<int>(L);
    p.K = static_cast<int>(K);
    p.n_prime = static_cast<int>(n_prime);
    p.head_rows = static_cast<int>(std::min(head_rows, nb));
    p.tau = static_cast<float>(temperature);
    p.vec = vec;
    p.wtab = reinterpret_cast<const unsigned long long*>(table.data_ptr<int64_t>());
    p.cz_t = cz_t.data_ptr<float>() + b0 * T * F * D;
    p.cz_f = cz_f.data_ptr<float>() + b0 * T * F * D;
    p.u = u.data_ptr<float>() + b0 * T * F;
    p.eps = eps.data_ptr<float>() + b0 * T * F;
    p.x = x.data_ptr<float>() + b0 * T * F;
    p.log_density = log_density.data_ptr<float>() + b0;
    p.xfw = base + so.xfw;
    p.swh0 = base + so.swh0;
    p.swc0 = base + so.swc0;
    p.fh0 = base + so.fh0;
    p.fc0 = base + so.fc0;
    // The state buffers are laid out for Bc rows; a chunk of nb <= Bc rows uses them with its own B = nb
    // (the kernel indexes every buffer with p.B, so the first nb-row-sized part of each is used).
    p.xt = base + so.xt;
    p.htl = base + so.htl;
    p.th = base + so.th;
    p.tc = base + so.tc;
    p.sgx = base + so.sgx;
    p.sh = base + so.sh;
    p.sc = base + so.sc;
    p.base0 = base + so.base0;
    p.hf = base + so.hf;
    p.fh = base + so.fh;
    p.fc = base + so.fc;
    const int device = x_init.device().index();
    switch (wtype) {
      case at::kFloat: launch<float>(p, dyn_smem, stream, device); break;
      case at::kBFloat16: launch<__nv_bfloat16>(p, dyn_smem, stream, device); break;
      case at::kHalf: launch<__half>(p, dyn_smem, stream, device); break;
      default: TORCH_CHECK(false, "sample_tier: unreachable weight dtype ", wtype);
    }
  }
  return {x.to(x_init.scalar_type()), log_density.to(x_init.scalar_type())};
}

}  // namespace

TORCH_LIBRARY_IMPL(melnet_fast, CUDA, m) { m.impl("sample_tier", &sample_tier_cuda); }

}  // namespace melnet_fast
