// Device code of the persistent tier sampler (the kernel, its phases, the parameter struct, the scratch layout),
// torch-free so that tests/cuda_emulation can compile it on the host; the host side (argument checks, buffer
// setup, launch) and the design notes are in csrc/cuda/sample_tier.cu, the only file of the extension that
// includes this header.
#pragma once

#include <cooperative_groups.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "mixture_draw.h"
#include "sample_tier_device.cuh"
#include "sampler_layout.h"

namespace melnet_fast {
namespace sampler_cuda {

namespace cg = cooperative_groups;

constexpr int kThreads = 256;               // threads per block
constexpr int kWarps = kThreads / kWarp;    // warps per block
constexpr int kMaxBatch = 64;               // batch rows per launch (more are run in chunks of 64)
constexpr int kGateRows = 4;                // LSTM gate rows per hidden unit (i, f, g, o)
constexpr int kProjRows = 4;                // projection / head rows per task
constexpr int kTimeCols = 4;                // (b, j) columns per task in the per-frame phases P1 and P3
constexpr int kBatchCols = 4;               // batch columns per task in the per-channel phases when B >= 4
constexpr int kHeadSmemFloats = 4096;       // shared floats for the head's outputs (16 KiB)

namespace sl = sampler_layout;  // the flat weight list: csrc/sampler_layout.h

struct Params {
  int B, T, F, D, L, K;  // B: rows of this launch (<= kMaxBatch)
  int n_prime;
  int head_rows;         // batch rows per chunk of the head (head_rows * 3K <= kHeadSmemFloats)
  float tau;
  float x_min, x_max;    // every drawn value is kept in [x_min, x_max] (draw_mixture)
  bool vec;              // 16-byte weight loads: D % (16 / sizeof(weight)) == 0 and every weight 16-byte aligned
  const unsigned long long* wtab;  // device addresses of the weight tensors, in the order of sl::Layout(L)
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
__device__ __forceinline__ const WT* weight(const Params& p, int64_t idx) {
  return reinterpret_cast<const WT*>(__ldg(p.wtab + idx));
}
template <typename WT>
__device__ __forceinline__ const WT* input_weight(const Params& p, sl::InputEntry e) {
  return weight<WT>(p, sl::Layout(p.L).input(e));
}
template <typename WT>
__device__ __forceinline__ const WT* layer_weight(const Params& p, int l, sl::LayerEntry e) {
  return weight<WT>(p, sl::Layout(p.L).layer(l, e));
}
template <typename WT>
__device__ __forceinline__ const WT* head_weight(const Params& p, sl::HeadEntry e) {
  return weight<WT>(p, sl::Layout(p.L).head(e));
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
  const WT* xt_w = input_weight<WT>(p, sl::kXtW);
  const WT* xt_b = input_weight<WT>(p, sl::kXtB);
  const int64_t n = static_cast<int64_t>(p.B) * p.F * p.D;
  for (int64_t e = grid_thread(); e < n; e += grid_threads()) {
    const int d = static_cast<int>(e % p.D);
    const int64_t bj = e / p.D;  // b * F + j
    const int j = static_cast<int>(bj % p.F);
    const int64_t b = bj / p.F;
    const float prev = i > 0 ? p.x[(b * p.T + (i - 1)) * p.F + j] : 0.f;
    const float cz = p.cz_t[((b * p.T + i) * p.F + j) * p.D + d];
    p.xt[e] = __fadd_rn(__fadd_rn(__fmul_rn(prev, load_weight(xt_w + d)), load_weight(xt_b + d)), cz);
    flags::note_write(p.xt + e, 1);
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
  const WT* w_ih = layer_weight<WT>(p, l, sl::kTWih);  // [3, 4D, D]
  const WT* w_hh = layer_weight<WT>(p, l, sl::kTWhh);  // [3, 4D, D]; only direction 0 here
  const WT* bias = layer_weight<WT>(p, l, sl::kTBias);  // [3, 4D]
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
          flags::note_write(th_new + o, 1);
        } else {
          float* out = p.sgx + (static_cast<int64_t>(kind - 1) * BF + col[c]) * 4 * D;
          out[u] = gi;
          out[D + u] = gf;
          out[2 * D + u] = gg;
          out[3 * D + u] = go;
          for (int g = 0; g < kGateRows; ++g) flags::note_write(out + g * D + u, 1);
        }
      }
    }
  }
}

// ------------------------------------------------------------------------------------------------ P2
// Step s of both frequency sweeps of layer l. Tasks (direction r, unit u, group of NC batch rows), direction-major:
// the forward sweep (r = 0, time-LSTM direction 1) visits channel j = s, the backward one (r = 1, direction 2)
// j = F-1-s; h_prev is the sweep's output at the channel visited in step s-1 (h0 at s = 0).
// One task of step s: direction r, unit u, the NC batch rows from first_b; rows: the unit's four W_hh rows of the
// direction (global memory, or the caller's shared copy when kShared).
template <typename WT, int NC, bool kShared = false>
__device__ __forceinline__ void sweep_task(const Params& p, int l, int s, int r, int u, int first_b,
                                           const WT* const (&rows)[kGateRows], int lane) {
  const int D = p.D, B = p.B, F = p.F;
  int bs[NC];
  bool ok[NC];
  task_columns<NC>(first_b, B, bs, ok);
  const int j = r == 0 ? s : F - 1 - s;
  const int jp = r == 0 ? s - 1 : F - s;  // channel of step s-1 (unused at s = 0)
  VecIn hin[NC];
#pragma unroll
  for (int c = 0; c < NC; ++c) {
    hin[c].a = s == 0 ? p.swh0 + (static_cast<int64_t>(l) * 2 + r) * D
                      : p.sh + ((static_cast<int64_t>(r) * B + bs[c]) * F + jp) * D;
  }
  float acc[kGateRows][NC];
  zero(acc);
  warp_dot<kGateRows, NC, WT, VecIn, kShared>(rows, hin, D, p.vec, lane, acc);
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
      flags::note_write(p.sh + (rb * F + j) * D + u, 1);
    }
  }
}

template <typename WT, int NC>
__device__ void phase_sweep_step(const Params& p, int l, int s, int64_t gwarp, int64_t nwarps, int lane) {
  const int D = p.D, B = p.B;
  const int nbg = (B + NC - 1) / NC;
  const int64_t per_dir = static_cast<int64_t>(D) * nbg;
  for (int64_t t = gwarp; t < 2 * per_dir; t += nwarps) {
    const int r = static_cast<int>(t / per_dir);
    const int64_t rem = t % per_dir;
    const int u = static_cast<int>(rem / nbg);
    const WT* w_hh = layer_weight<WT>(p, l, sl::kTWhh) + static_cast<int64_t>(r + 1) * 4 * D * D;
    const WT* rows[kGateRows];
#pragma unroll
    for (int g = 0; g < kGateRows; ++g) rows[g] = w_hh + (static_cast<int64_t>(g) * D + u) * D;
    sweep_task<WT, NC>(p, l, s, r, u, static_cast<int>(rem % nbg) * NC, rows, lane);
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
  const WT* pw = layer_weight<WT>(p, l, sl::kTProjW);  // [D, 3D]
  const WT* pb = layer_weight<WT>(p, l, sl::kTProjB);  // [D]
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
          flags::note_write(out + o, 1);
        }
      }
    }
  }
}

// ------------------------------------------------------------------------------------------------ Pb
// base0[b, j, :] = xf_b + cz_f[b, i, j, :] + htl[0][b, j, :]: layer 0's cell input minus x[b, i, j-1] * xf_w.
template <typename WT>
__device__ void phase_freq_base(const Params& p, int i) {
  const WT* xf_b = input_weight<WT>(p, sl::kXfB);
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
// The frequency-delayed cell update of layer l, unit u at channel j for a task's NC batch rows (lane c writes row
// bs[c]): gates acc + bias, the cell state from fc (fc0 at j = 0); writes fc and h into fh[(j + 1) % 2].
template <typename WT, int NC>
__device__ __forceinline__ void freq_cell_update(const Params& p, int j, int l, int u, const int (&bs)[NC],
                                                 const bool (&ok)[NC], const float (&acc)[kGateRows][NC], int lane) {
  const int D = p.D;
  const int64_t BD = static_cast<int64_t>(p.B) * D;
  const WT* bias = layer_weight<WT>(p, l, sl::kFBias);
  float* fc = p.fc + l * BD;
  float* h_next = p.fh + (static_cast<int64_t>((j + 1) & 1) * p.L + l) * BD;
#pragma unroll
  for (int c = 0; c < NC; ++c) {
    if (lane == c && ok[c]) {
      const int64_t o = static_cast<int64_t>(bs[c]) * D + u;
      const float c_prev = j == 0 ? p.fc0[static_cast<int64_t>(l) * D + u] : fc[o];
      const CellOut r =
          lstm_pointwise(acc[0][c] + load_weight(bias + u), acc[1][c] + load_weight(bias + D + u),
                         acc[2][c] + load_weight(bias + 2 * D + u), acc[3][c] + load_weight(bias + 3 * D + u), c_prev);
      fc[o] = r.c;
      h_next[o] = r.h;
      flags::note_write(h_next + o, 1);
    }
  }
}

// Frequency-delayed cell of layer l at channel j: tasks (unit u, group of NC batch rows). Input hf + htl[l][b, j]
// (layer 0: base0[b, j] + x[b, i, j-1] xf_w, with x[b, i, j-1] = s_val[b]); h_prev = fh[j % 2] (h0 at j = 0).
template <typename WT, int NC>
__device__ void phase_freq_cell(const Params& p, int j, int l, const float* s_val, int64_t gwarp, int64_t nwarps,
                                int lane) {
  const int D = p.D, B = p.B, F = p.F;
  const int64_t BD = static_cast<int64_t>(B) * D;
  const WT* w_ih = layer_weight<WT>(p, l, sl::kFWih);  // [1, 4D, D]
  const WT* w_hh = layer_weight<WT>(p, l, sl::kFWhh);
  const float* htl = p.htl + static_cast<int64_t>(l) * B * F * D;
  const float* h_prev = p.fh + (static_cast<int64_t>(j & 1) * p.L + l) * BD;
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
    freq_cell_update<WT, NC>(p, j, l, u, bs, ok, acc, lane);
  }
}

// ------------------------------------------------------------------------------------------------ Pf
// One projection task: rows first_row .. first_row + kProjRows - 1 of w [D, D] (clamped to D) against the NC
// vectors x + b D of the batch rows from first_b (vec: the 16-byte path of warp_dot); out(d, b, sum) is called once per
// valid (row, batch row), by the lane that holds it.
template <typename WT, int NC, typename Out>
__device__ __forceinline__ void proj_task(const WT* w, int D, int B, bool vec, int first_row, int first_b,
                                          const float* x, int lane, Out&& out) {
  int d[kProjRows];
  bool okr[kProjRows];
  task_columns<kProjRows>(first_row, D, d, okr);
  int bs[NC];
  bool ok[NC];
  task_columns<NC>(first_b, B, bs, ok);
  const WT* rows[kProjRows];
#pragma unroll
  for (int r = 0; r < kProjRows; ++r) rows[r] = w + static_cast<int64_t>(d[r]) * D;
  VecIn in[NC];
#pragma unroll
  for (int c = 0; c < NC; ++c) in[c].a = x + static_cast<int64_t>(bs[c]) * D;
  float acc[kProjRows][NC];
  zero(acc);
  warp_dot(rows, in, D, vec, lane, acc);
  warp_allreduce(acc);
#pragma unroll
  for (int r = 0; r < kProjRows; ++r) {
#pragma unroll
    for (int c = 0; c < NC; ++c) {
      if (lane == r * NC + c && okr[r] && ok[c]) out(d[r], static_cast<int64_t>(bs[c]), acc[r][c]);
    }
  }
}

// hf[b][d] = hf_old[b][d] + W_proj[d] . h[b] + b[d], with h the cell output just written (fh[(j + 1) % 2]) and
// hf_old at l = 0 the stack's input x[b, i, j-1] xf_w + xf_b + cz_f[b, i, j] (reference rounding order), else hf.
// Each (b, d) has a single owner task, which reads and writes it: in place is safe.
template <typename WT, int NC>
__device__ void phase_freq_proj(const Params& p, int i, int j, int l, const float* s_val, int64_t gwarp, int64_t nwarps,
                                int lane) {
  const int D = p.D, B = p.B;
  const int64_t BD = static_cast<int64_t>(B) * D;
  const float* h = p.fh + (static_cast<int64_t>((j + 1) & 1) * p.L + l) * BD;
  const WT* pw = layer_weight<WT>(p, l, sl::kFProjW);  // [D, D]
  const WT* pb = layer_weight<WT>(p, l, sl::kFProjB);
  const WT* xf_b = input_weight<WT>(p, sl::kXfB);
  const int nbg = (B + NC - 1) / NC;
  const int nrg = (D + kProjRows - 1) / kProjRows;
  for (int64_t t = gwarp; t < static_cast<int64_t>(nrg) * nbg; t += nwarps) {
    proj_task<WT, NC>(pw, D, B, p.vec, static_cast<int>(t / nbg) * kProjRows, static_cast<int>(t % nbg) * NC, h, lane,
                      [&](int d, int64_t b, float acc) {
                        const int64_t o = b * D + d;
                        float hf_old;
                        if (l == 0) {
                          const float cz = p.cz_f[((b * p.T + i) * p.F + j) * D + d];
                          hf_old = __fadd_rn(__fadd_rn(__fmul_rn(s_val[b], p.xfw[d]), load_weight(xf_b + d)), cz);
                        } else {
                          hf_old = p.hf[o];
                        }
                        p.hf[o] = (hf_old + acc) + load_weight(pb + d);
                      });
  }
}

// Head and draw of channel j, run by every block on the same hf (so every block gets the same values, bitwise:
// same code, same inputs, same reduction order). Batch rows in chunks of head_rows: warps compute theta into
// shared memory (tasks: group of kProjRows rows of W_head, batch row), then thread t draws row b0 + t. Block 0
// writes x and accumulates the log density. Ends with s_val[b] = x[b, i, j] visible to the whole block.
template <typename WT>
__device__ void head_and_draw(const Params& p, int i, int j, float* s_theta, float* s_val, float* s_logd, int warp,
                              int lane) {
  const int D = p.D, K3 = 3 * p.K;
  const WT* hw = head_weight<WT>(p, sl::kHeadW);  // [3K, D]
  const WT* hb = head_weight<WT>(p, sl::kHeadB);  // [3K]
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
      const Drawn<float> dr = draw_mixture(s_theta + threadIdx.x * K3, p.K, p.tau, p.u[e], p.eps[e], p.x_min, p.x_max);
      s_val[b] = dr.value;
      if (blockIdx.x == 0) {
        p.x[e] = dr.value;
        s_logd[b] += dr.log_density;
      }
    }
    __syncthreads();  // s_theta free for the next chunk; s_val complete after the last chunk
  }
}

// ------------------------------------------------------------------------------------------------ frame
// The time-delayed stack of frame i: P0, then per layer P1, the F sweep steps and P3; sync() separates dependent
// phases (a grid barrier here, flag waits in sample_tier_flags_kernel.cuh). gwarp / gwarp_step: the numberings of
// the grid's warps of the kernel below.
template <typename WT, typename Sync>
__device__ void time_delayed_frame(const Params& p, int i, int64_t gwarp, int64_t gwarp_step, int64_t nwarps, int lane,
                                   Sync&& sync) {
  phase_frame_input<WT>(p, i);
  sync();  // xt complete
  for (int l = 0; l < p.L; ++l) {
    phase_time_gates<WT, kTimeCols>(p, i, l, gwarp, nwarps, lane);
    sync();  // th_new, tc, sgx complete
    for (int s = 0; s < p.F; ++s) {
      if (p.B >= kBatchCols) {
        phase_sweep_step<WT, kBatchCols>(p, l, s, gwarp_step, nwarps, lane);
      } else {
        phase_sweep_step<WT, 1>(p, l, s, gwarp_step, nwarps, lane);
      }
      sync();  // sh at the channels of step s, sc complete
    }
    phase_time_proj<WT, kTimeCols>(p, i, l, gwarp, nwarps, lane);
    sync();  // htl[l] complete (the next layer's input; the frequency-delayed stack's ht_layer[l])
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
    time_delayed_frame<WT>(p, i, gwarp, gwarp_step, nwarps, lane, [&grid]() { grid.sync(); });
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

  // Points the state buffers of p into the allocation at base (shared by the host code and its CPU emulator).
  void bind(Params& p, float* base) const {
    p.xfw = base + xfw;
    p.swh0 = base + swh0;
    p.swc0 = base + swc0;
    p.fh0 = base + fh0;
    p.fc0 = base + fc0;
    p.xt = base + xt;
    p.htl = base + htl;
    p.th = base + th;
    p.tc = base + tc;
    p.sgx = base + sgx;
    p.sh = base + sh;
    p.sc = base + sc;
    p.base0 = base + base0;
    p.hf = base + hf;
    p.fh = base + fh;
    p.fc = base + fc;
  }
};

}  // namespace sampler_cuda
}  // namespace melnet_fast
