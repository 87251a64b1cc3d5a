// The per-line kernels of the CPU 2D LSTM sweep (lstm_sweep_2d_cpu.cpp): a block of lines (independent
// sequences) of one direction, run through all of its steps by one thread.
//
// Lines never exchange anything, so a thread that owns a block of lines runs all of its steps without waiting
// for the others: no barrier per step. At each step the block's gate pre-activations are one register-tiled
// product over the block's rows (small_gemm.h: rows_product; the weights stay in cache across steps), and the
// gate maths runs on those rows while they are still in L1 (the product's epilogue).
//
// Every function is a template on VB, the vector size in bytes of the target it is compiled in (64, 32, 16), and
// is forced inline into one wrapper per target (lstm_sweep_2d_cpu.cpp), chosen at run time by simd::cpu_level().
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "lstm_cell_cpu.h"
#include "small_gemm.h"
#include "sweep_geometry.h"
#include "vec_math.h"

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"  // 32 / 64-byte vectors in forced-inline helpers: no such call exists
namespace melnet_fast {

// A direction's lines, and where line k is at step s: the one rule of csrc/sweep_geometry.h.
using Direction = sweep::Dir;

// Flat index into [B, T, F] of line k of direction d at step s.
MF_INLINE int64_t position(const Direction& d, int64_t k, int64_t s, int64_t T, int64_t F) {
  return sweep::flat_position(d, k, sweep::step_position(d, s), T, F);
}

// Lines [k0, k1) of direction r: the unit of work of one thread.
struct LineBlock {
  int64_t r, k0, k1;
  int64_t id;  // its index among the call's blocks
};

// The most lines a block holds: its rows of gate pre-activations ([kMaxBlock, 4H]) stay in L1 / L2 between
// the product and the gate maths.
constexpr int64_t kMaxBlock = 48;

// Shapes and tensors of one forward: x [N, I] (N = B*T*F positions), per direction w_ih^T [I, 4H] and w_hh^T
// [H, 4H] (packed once per call), bias [4H]; y [N, R*H]; when saving, gates [R, N, 4H] (activated) and cell
// [R, N, H]; the running state h, c [rows, H] of each direction.
template <typename T>
struct FwdLines {
  const Direction* dirs;
  int64_t T_, F, R, I, H, N;
  const T* x;
  const T* w_ih_t;  // [R, I, 4H]
  const T* w_hh_t;  // [R, H, 4H]
  const T* bias;    // [R, 4H]
  T* y;
  T* gates;  // null when not saving
  T* cell;   // null when not saving
  T* const* h;
  T* const* c;
};

// Per-thread scratch of the line kernels, allocated once per thread and call.
template <typename T>
struct LineScratch {
  std::vector<T> acc;  // [kMaxBlock, 4H]: forward, the gate pre-activations; backward, the gate gradients
  explicit LineScratch(int64_t H) : acc(kMaxBlock * 4 * H) {}
};

// Asks for n values from p into the cache ahead of use (write: for a store). The saved rows a backward step reads
// sit at positions scattered over tensors of megabytes (a direction along frequency reads one row every F
// positions), which the hardware prefetchers do not predict: the loads of the gate maths stalled on memory for
// about a third of the backward's line kernel.
template <typename T>
MF_INLINE void prefetch_row(const T* p, int64_t n, bool write = false) {
  const char* b = reinterpret_cast<const char*>(p);
  const char* e = reinterpret_cast<const char*>(p + n);
  for (; b < e; b += 64) {
    if (write)
      __builtin_prefetch(b, 1, 3);
    else
      __builtin_prefetch(b, 0, 3);
  }
}

// acc[j] += sum_i rows[i][j] for j < n, i < M: each vector of acc stays in a register over all the rows.
template <int VB, typename T>
MF_INLINE void add_rows_to(T* acc, const T* const* rows, int64_t M, int64_t n) {
  using V = simd::Vec<T, VB>;
  over_lanes<V>(n, [&](int64_t j, int64_t w) MF_LAMBDA_INLINE {
    V sum = load_lanes<V>(acc + j, w);
    for (int64_t i = 0; i < M; ++i) sum += load_lanes<V>(rows[i] + j, w);
    store_lanes(acc + j, sum, w);
  });
}

// Backward of the LSTM cell of one line: from the activated gates act [4H], the cell state it produced cell [H]
// and the one before c_prev [H], the upstream gradients gy + dh [H] and dc [H] (updated in place to the
// gradient of c_prev), the gradients of the gate pre-activations dg [4H].
template <int VB, typename T>
MF_INLINE void lstm_cell_bwd(const T* act, const T* cell, const T* c_prev, const T* gy, const T* dh, T* dc, T* dg,
                             int64_t H) {
  using V = simd::Vec<T, VB>;
  over_lanes<V>(H, [&](int64_t j, int64_t n) MF_LAMBDA_INLINE {
    const V gi = load_lanes<V>(act + j, n), gf = load_lanes<V>(act + H + j, n);
    const V gg = load_lanes<V>(act + 2 * H + j, n), go = load_lanes<V>(act + 3 * H + j, n);
    const V t = simd::tanh(load_lanes<V>(cell + j, n));
    const V dhj = load_lanes<V>(gy + j, n) + load_lanes<V>(dh + j, n);
    const V dcj = load_lanes<V>(dc + j, n) + dhj * go * (T(1) - t * t);
    store_lanes(dc + j, dcj * gf, n);
    store_lanes(dg + j, dcj * gg * gi * (T(1) - gi), n);
    store_lanes(dg + H + j, dcj * load_lanes<V>(c_prev + j, n) * gf * (T(1) - gf), n);
    store_lanes(dg + 2 * H + j, dcj * gi * (T(1) - gg * gg), n);
    store_lanes(dg + 3 * H + j, dhj * t * go * (T(1) - go), n);
  });
}

// Forward of one block: per step, pre = bias + x_n w_ih^T + h w_hh^T for every line (two products into acc),
// then the LSTM cell on each row; h, y and (when saving) the activated gates and cell state are written.
template <int VB, typename T>
MF_INLINE void fwd_lines(const FwdLines<T>& a, const LineBlock& blk, LineScratch<T>& scratch) {
  const Direction& d = a.dirs[blk.r];
  const int64_t r = blk.r, H = a.H, G = 4 * H, R = a.R, M = blk.k1 - blk.k0;
  const T* bias = a.bias + r * G;
  const T* w_ih_t = a.w_ih_t + r * a.I * G;
  const T* w_hh_t = a.w_hh_t + r * H * G;
  const T* x_rows[kMaxBlock];
  const T* h_rows[kMaxBlock];
  T* acc_rows[kMaxBlock];
  int64_t n_of[kMaxBlock];
  for (int64_t i = 0; i < M; ++i) {
    h_rows[i] = a.h[r] + (blk.k0 + i) * H;
    acc_rows[i] = scratch.acc.data() + i * G;
  }
  for (int64_t s = 0; s < d.len; ++s) {
    for (int64_t i = 0; i < M; ++i) {
      n_of[i] = position(d, blk.k0 + i, s, a.T_, a.F);
      x_rows[i] = a.x + n_of[i] * a.I;
      std::copy(bias, bias + G, acc_rows[i]);
    }
    rows_product<VB>(x_rows, M, w_ih_t, G, a.I, G, acc_rows, true);
    rows_product<VB>(h_rows, M, w_hh_t, G, H, G, acc_rows, true);
    for (int64_t i = 0; i < M; ++i) {
      const int64_t n = n_of[i];
      lstm_cell_fwd<VB>(acc_rows[i], a.h[r] + (blk.k0 + i) * H, a.c[r] + (blk.k0 + i) * H, a.y + n * R * H + r * H,
                        a.gates ? a.gates + (r * a.N + n) * G : nullptr, a.cell ? a.cell + (r * a.N + n) * H : nullptr,
                        H);
    }
  }
}

// Shapes and tensors of one backward: grad_y [N, R*H], x [N, I], the forward's gates [R, N, 4H] and cell [R, N, H],
// c0 [R, H] (or [lines, H] per line, with c0_line = H), w_ih [R, 4H, I], w_hh [R, 4H, H]; dx_dirs [R, N, I] receives
// each direction's share of the input gradient; dh, dc [rows, H] of each direction carry the gradients from the step
// after (and end as those of h0, c0 per line); each block's sums of dg, dg^T h_prev and dg^T x go to its rows of
// dbias_blocks, dw_hh_blocks and dw_ih_blocks.
template <typename T>
struct BwdLines {
  const Direction* dirs;
  int64_t T_, F, R, I, H, N;
  const T* grad_y;
  const T* x;
  const T* gates;
  const T* cell;
  const T* c0;
  int64_t c0_line;  // c0's stride between lines: 0 when every line starts from c0[r], H when per line
  const T* w_ih;
  const T* w_hh;
  T* dx_dirs;
  T* dbias_blocks;  // [blocks, 4H]
  const T* y;       // the forward's output [N, R*H]: h_prev of every step after the first
  const T* h0;      // [R, H], or per line [lines, H] with h0_line = H
  int64_t h0_line;
  T* dw_hh_blocks;  // [blocks, 4H, H]
  T* dw_ih_blocks;  // [blocks, 4H, I]
  T* const* dh;
  T* const* dc;
};

// Backward of one block: per step (last to first), the gate gradients dg of every line from grad_y and the carried
// (dh, dc), into the block's scratch; then, while dg is in cache, everything that reads it: dh = dg w_hh (the next
// step's carried gradient) and dx = dg w_ih, one product each over the block's rows, and the block's shares of dw_hh
// (+= dg^T h_prev, the lines' h one step earlier: y, or h0 at the first step), dw_ih (+= dg^T x) and the bias
// gradient (+= dg). The gate gradients are never written to memory: written and read back by GEMMs after the loop,
// they cost more than the products themselves at the benchmark's sizes.
template <int VB, typename T>
MF_INLINE void bwd_lines(const BwdLines<T>& a, const LineBlock& blk, LineScratch<T>& scratch) {
  const Direction& d = a.dirs[blk.r];
  const int64_t r = blk.r, I = a.I, H = a.H, G = 4 * H, R = a.R, N = a.N, M = blk.k1 - blk.k0;
  const T* w_hh_r = a.w_hh + r * G * H;
  const T* w_ih_r = a.w_ih + r * G * I;
  T* dx_r = a.dx_dirs + r * N * I;
  T* dbias = a.dbias_blocks + blk.id * G;
  T* dw_hh = a.dw_hh_blocks + blk.id * G * H;
  T* dw_ih = a.dw_ih_blocks + blk.id * G * I;
  std::fill(dbias, dbias + G, T(0));  // the block's own shares, zeroed here rather than in one serial pass
  std::fill(dw_hh, dw_hh + G * H, T(0));
  std::fill(dw_ih, dw_ih + G * I, T(0));
  T* dg_rows[kMaxBlock];
  const T* hp_rows[kMaxBlock];
  const T* x_rows[kMaxBlock];
  T* dh_rows[kMaxBlock];
  T* dx_rows[kMaxBlock];
  for (int64_t i = 0; i < M; ++i) {
    dh_rows[i] = a.dh[r] + (blk.k0 + i) * H;
    dg_rows[i] = scratch.acc.data() + i * G;
  }
  for (int64_t s = d.len - 1; s >= 0; --s) {
    for (int64_t i = 0; i < M; ++i) {
      const int64_t k = blk.k0 + i;
      const int64_t n = position(d, k, s, a.T_, a.F);
      const int64_t np = s > 0 ? position(d, k, s - 1, a.T_, a.F) : -1;  // the position before, where there is one
      const T* c_prev = s == 0 ? a.c0 + r * H + k * a.c0_line : a.cell + (r * N + np) * H;
      hp_rows[i] = s == 0 ? a.h0 + r * H + k * a.h0_line : a.y + np * R * H + r * H;
      x_rows[i] = a.x + n * I;
      dx_rows[i] = dx_r + n * I;
      lstm_cell_bwd<VB>(a.gates + (r * N + n) * G, a.cell + (r * N + n) * H, c_prev, a.grad_y + n * R * H + r * H,
                        dh_rows[i], a.dc[r] + k * H, dg_rows[i], H);
      if (s > 0) {  // the rows this line reads and writes at the next step, loaded while the products run
        prefetch_row(a.gates + (r * N + np) * G, G);
        prefetch_row(a.grad_y + np * R * H + r * H, H);
        prefetch_row(a.cell + (r * N + np) * H, H);
        prefetch_row(a.x + np * I, I);
        prefetch_row(dx_r + np * I, I, true);
        if (s > 1) {
          const int64_t npp = position(d, k, s - 2, a.T_, a.F);
          prefetch_row(a.cell + (r * N + npp) * H, H);
          prefetch_row(a.y + npp * R * H + r * H, H);
        }
      }
    }
    rows_product<VB>(dg_rows, M, w_hh_r, H, G, H, dh_rows, false);
    rows_product<VB>(dg_rows, M, w_ih_r, I, G, I, dx_rows, false);
    outer_accumulate<VB>(dg_rows, hp_rows, M, G, H, dw_hh);  // dw_hh += dg^T h_prev over the block's rows
    outer_accumulate<VB>(dg_rows, x_rows, M, G, I, dw_ih);   // dw_ih += dg^T x
    add_rows_to<VB>(dbias, dg_rows, M, G);
  }
}

}  // namespace melnet_fast
#pragma GCC diagnostic pop
