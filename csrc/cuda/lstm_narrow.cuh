// Device side of the narrow phase of the second CUDA sweep design (backend "cuda_gemm"): once only the directions of
// the long axis are left (steps F..T-1 of a T > F sweep over t+ f+ f-: 1024 lines at the Blizzard tier-1 shape),
// a step's GEMM is too small to fill the GPU and the per-step launches of the wide phase (lstm_epilogue.cuh) would be
// bound by W_hh reads and launch latency. One persistent launch runs every step of the phase instead: block
// (lb, ub, r) owns lines lb*kL.. and hidden units ub*kU.. of direction r, keeps its slice of W_hh (the 4 kU gate rows
// of its units, forward; the kU columns of its units, backward) in shared memory for the whole phase, and each step
//   1. waits until every unit block of its line block has published the previous step (an arrival counter per
//      (direction, line block), released by the writers with flags::block_arrive, acquired with block_wait: no
//      grid-wide barrier, a block waits only for the 512 / kU producers of the rows it reads);
//   2. multiplies the lines' previous hidden states (forward) or next gate gradients (backward), staged from global
//      memory in chunks, by its resident slice (tensor cores for 16-bit storage on sm_80+, float32 FMAs otherwise);
//   3. applies the cell (lstm_cell.cuh) and writes its units of y / gates / cell (forward) or dgates (backward);
//   4. arrives at its counter.
// Every block must be resident at once (the host launches at most one block per SM at the shipped tile and checks
// it: melnet_fast/ops/lstm_sweep/gemm_steps.py); the CPU grid emulator runs every block as fibers and checks every
// read of another block's data against the flags (tests/cuda_emulation/test_lstm_sweep_gemm_emulated.py).
//
// Layouts as lstm_step.cuh. Arrival counters: arrivals [R, line_blocks] uint32, zeroed by the op before the launch;
// after step k of the phase (k = 0, 1, ...) a counter holds (k + 1) * unit_blocks. The phase covers [s_begin, s_end)
// with s_begin >= 1 (the wide phase runs step 0, which reads h0) and only directions of one axis active in it (so every
// active direction has the same lines and runs to the end of the phase); grid.z walks the list of those directions.
#pragma once

#include <mma.h>

#include <cstdint>
#include <type_traits>

#include "cuda/flags.cuh"
#include "cuda/lstm_cell.cuh"
#include "sweep_geometry.h"

namespace melnet_fast {
namespace sweep_cuda {

using sweep::Dir;
using sweep::flat_position;
using sweep::Geometry;
using sweep::step_position;

constexpr int kNarrowThreads = 256;  // 8 warps
constexpr int kNarrowChunk = 32;  // reduction length of a staged chunk of the streamed operand
// The shipped tile: 128 lines x 32 units, W_hh slice 4*32 x 512 bf16 = 128 KB at H = 512, one block per SM (8 line
// blocks x 16 unit blocks = 128 blocks for 1024 lines on 132 SMs).
constexpr int kNarrowLines = 128;
constexpr int kNarrowUnits = 32;

__host__ __device__ constexpr int64_t narrow_round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

// Shared-memory layout of one block (element counts and byte offsets), forward and backward alike:
//   W slice [rows][ld_w] storage T (forward: rows = 4 kU gate rows k*H + j0 + jj, ld over the H inputs; backward:
//   rows = kU unit columns, ld over the 4H gate rows), A [kL][ld_a] T (a staged chunk), C [kL][ld_c] float32.
// Leading dimensions are multiples of 8 elements (wmma's ldm) and every block starts 128-byte aligned.
template <typename T, int kL, int kU>
struct NarrowSmem {
  int64_t rows, ld_w, ld_a, ld_c, w_bytes, a_bytes, c_bytes;
  __host__ __device__ NarrowSmem(int H, bool backward) {
    rows = backward ? kU : 4 * kU;
    ld_w = narrow_round_up(backward ? 4 * H : H, 8) + 8;
    ld_a = kNarrowChunk + 8;
    ld_c = (backward ? kU : 4 * kU) + 4;
    w_bytes = narrow_round_up(rows * ld_w * (int64_t)sizeof(T), 128);
    a_bytes = narrow_round_up(kL * ld_a * (int64_t)sizeof(T), 128);
    c_bytes = kL * ld_c * (int64_t)sizeof(float);
  }
  __host__ __device__ int64_t bytes() const { return w_bytes + a_bytes + c_bytes; }
};

// Annotations for the CPU emulator's flag checker (flags::note_write / note_read; no code on the GPU). The checker
// tracks 4-byte words, and with 16-bit storage a word of y or dgates may hold elements of two blocks (two unit blocks,
// or the last unit of one direction and the first of the next): a written element is annotated when its whole word
// lies in [lo, hi), the span its block writes of that row, and a read row [lo, hi) by the words wholly inside it.
template <typename T>
__device__ __forceinline__ void note_element_written(const T* p, const T* lo, const T* hi) {
  const uintptr_t word = reinterpret_cast<uintptr_t>(p) & ~uintptr_t{3};
  if (word >= reinterpret_cast<uintptr_t>(lo) && word + 4 <= reinterpret_cast<uintptr_t>(hi)) {
    flags::note_write(reinterpret_cast<const unsigned*>(word), 1);
  }
}
template <typename T>
__device__ __forceinline__ void note_row_read(const T* lo, const T* hi) {
  const uintptr_t first = (reinterpret_cast<uintptr_t>(lo) + 3) & ~uintptr_t{3};
  const uintptr_t end = reinterpret_cast<uintptr_t>(hi) & ~uintptr_t{3};
  if (end > first) flags::note_read(reinterpret_cast<const unsigned*>(first), static_cast<long long>(end - first) / 4);
}

template <typename T>
struct NarrowParams {
  const T* pre;  // forward: [N, R*G]
  const T* grad_y;  // backward: [N, R*H]
  const T* w_hh;  // [R, G, H]
  const T* gates_in;  // backward: [R, N, G] saved activated gates
  const float* cell_in;  // backward: [R, N, H] saved cell states
  T* y;  // forward: [N, R*H] (read at the previous position, written at the step's)
  T* gates;  // forward: [R, N, G] or nullptr when not saving
  float* cell;  // forward: [R, N, H] or nullptr when not saving
  float* c_run;  // forward: c_run, backward: dc_run [R, lines_max, H]
  T* dgates;  // backward: [N, R*G] (read at the next position, written at the step's)
  unsigned* arrivals;  // [R, line_blocks], zero at launch
  int active[sweep::kMaxDirections];  // the directions active in the phase: blockIdx.z indexes this list
  int64_t lines_max;
  int s_begin, s_end, line_blocks;
  Geometry geo;
};

// C[m][c] = sum_q A(m, q) * W[c][q] over q < depth, A streamed from global rows src(m) + q (null: zeros) through the
// staging buffer a. Every thread of the block calls it (it holds barriers).
template <typename T, int kL, int kU, typename RowFn>
__device__ __forceinline__ void narrow_product(const NarrowSmem<T, kL, kU>& lay, const T* w, T* a, float* c, int cols,
                                               int depth, RowFn row_of) {
  const int tid = threadIdx.x;
  if constexpr (use_wmma<T>()) {
    using namespace nvcuda;
    constexpr int kTiles = (kL / 16) * (4 * kU / 16);  // upper bound; forward uses all, backward a quarter
    constexpr int kPerWarp = (kTiles + 7) / 8;
    const int tiles = (kL / 16) * (cols / 16), warp = tid / 32;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[kPerWarp];
#pragma unroll
    for (int i = 0; i < kPerWarp; ++i) wmma::fill_fragment(acc[i], 0.0f);
    for (int q0 = 0; q0 < depth; q0 += kNarrowChunk) {
      for (int idx = tid; idx < kL * kNarrowChunk; idx += kNarrowThreads) {
        const int m = idx / kNarrowChunk, qq = idx % kNarrowChunk, q = q0 + qq;
        const T* row = row_of(m);
        a[m * lay.ld_a + qq] = (row != nullptr && q < depth) ? row[q] : zero_value<T>();
      }
      __syncthreads();
#pragma unroll
      for (int i = 0; i < kPerWarp; ++i) {
        const int t = warp + 8 * i;
        if (t >= tiles) break;
        const int tr = t / (cols / 16), tc = t % (cols / 16);
#pragma unroll
        for (int kk = 0; kk < kNarrowChunk; kk += 16) {
          wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> af;
          wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> bf;  // (q, col) at w[col][q]
          wmma::load_matrix_sync(af, a + tr * 16 * lay.ld_a + kk, static_cast<unsigned>(lay.ld_a));
          wmma::load_matrix_sync(bf, w + tc * 16 * lay.ld_w + q0 + kk, static_cast<unsigned>(lay.ld_w));
          wmma::mma_sync(acc[i], af, bf, acc[i]);
        }
      }
      __syncthreads();  // before the next chunk overwrites a
    }
#pragma unroll
    for (int i = 0; i < kPerWarp; ++i) {
      const int t = warp + 8 * i;
      if (t >= tiles) break;
      const int tr = t / (cols / 16), tc = t % (cols / 16);
      wmma::store_matrix_sync(c + tr * 16 * lay.ld_c + tc * 16, acc[i], static_cast<unsigned>(lay.ld_c),
                              wmma::mem_row_major);
    }
  } else {
    // float32 (and pre-sm_80): each thread accumulates its outputs in C itself, chunk after chunk, so that no
    // register array of kL * 4kU / 256 sums is live across the chunks (it would spill at the shipped tile).
    for (int q0 = 0; q0 < depth; q0 += kNarrowChunk) {
      for (int idx = tid; idx < kL * kNarrowChunk; idx += kNarrowThreads) {
        const int m = idx / kNarrowChunk, qq = idx % kNarrowChunk, q = q0 + qq;
        const T* row = row_of(m);
        a[m * lay.ld_a + qq] = (row != nullptr && q < depth) ? row[q] : zero_value<T>();
      }
      __syncthreads();
      const int n_q = depth - q0 < kNarrowChunk ? depth - q0 : kNarrowChunk;
      for (int idx = tid; idx < kL * cols; idx += kNarrowThreads) {
        const int m = idx / cols, col = idx % cols;
        float sum = q0 == 0 ? 0.0f : c[m * lay.ld_c + col];
        for (int qq = 0; qq < n_q; ++qq) {
          sum = fmaf(to_float(a[m * lay.ld_a + qq]), to_float(w[col * lay.ld_w + q0 + qq]), sum);
        }
        c[m * lay.ld_c + col] = sum;
      }
      __syncthreads();
    }
  }
  __syncthreads();
}

// Grid: (line_blocks, ceil(H / kU), active directions), kNarrowThreads threads, NarrowSmem(H, false).bytes() of
// dynamic shared memory.
template <typename T, int kL, int kU>
__global__ void __launch_bounds__(kNarrowThreads) lstm_fwd_narrow_kernel(const NarrowParams<T> p) {
  extern __shared__ __align__(128) unsigned char narrow_smem[];
  const int r = p.active[blockIdx.z];
  const Dir d = p.geo.dir[r];
  const int64_t m0 = (int64_t)blockIdx.x * kL;
  if (m0 >= d.lines) return;  // whole-block exits only, before any barrier
  const int H = p.geo.H, R = p.geo.R, G = 4 * H, j0 = blockIdx.y * kU, tid = threadIdx.x;
  const int64_t N = p.geo.N;
  const NarrowSmem<T, kL, kU> lay(H, false);
  T* w = reinterpret_cast<T*>(narrow_smem);
  T* a = reinterpret_cast<T*>(narrow_smem + lay.w_bytes);
  float* c = reinterpret_cast<float*>(narrow_smem + lay.w_bytes + lay.a_bytes);
  // The block's W_hh slice, once: row k*kU + jj = w_hh[r][k*H + j0 + jj][:], zero past H.
  const T* w_r = p.w_hh + (int64_t)r * G * H;
  for (int64_t idx = tid; idx < lay.rows * lay.ld_w; idx += kNarrowThreads) {
    const int row = static_cast<int>(idx / lay.ld_w), q = static_cast<int>(idx % lay.ld_w);
    const int k = row / kU, j = j0 + row % kU;
    w[idx] = (j < H && q < H) ? w_r[(int64_t)(k * H + j) * H + q] : zero_value<T>();
  }
  unsigned* arrivals = p.arrivals + (int64_t)r * p.line_blocks + blockIdx.x;
  const unsigned unit_blocks = gridDim.y;
  for (int s = p.s_begin; s < p.s_end; ++s) {
    const unsigned k = static_cast<unsigned>(s - p.s_begin);
    if (k > 0) {
      flags::block_wait(arrivals, k * unit_blocks);  // the previous step of every unit block
    } else {
      __syncthreads();  // the W slice is in place
    }
    const int64_t prev_p = step_position(d, s - 1), now_p = step_position(d, s);
    auto h_prev = [&](int m) -> const T* {
      const int64_t n = m0 + m;
      if (n >= d.lines) return nullptr;
      const T* row = p.y + flat_position(d, n, prev_p, p.geo.T, p.geo.F) * (R * (int64_t)H) + (int64_t)r * H;
      if (k > 0) note_row_read(row, row + H);
      return row;
    };
    narrow_product<T, kL, kU>(lay, w, a, c, 4 * kU, H, h_prev);
    const int jj = tid % kU, j = j0 + jj;
    for (int m = tid / kU; m < kL; m += kNarrowThreads / kU) {
      const int64_t n = m0 + m;
      if (n >= d.lines || j >= H) continue;
      const int64_t pos = flat_position(d, n, now_p, p.geo.T, p.geo.F);
      const T* pre = p.pre + pos * (R * (int64_t)G) + (int64_t)r * G;
      float* c_run = p.c_run + ((int64_t)r * p.lines_max + n) * H + j;
      const float* cm = c + m * lay.ld_c;
      const CellForward st =
          cell_forward(cm[jj] + to_float(pre[j]), cm[kU + jj] + to_float(pre[H + j]),
                       cm[2 * kU + jj] + to_float(pre[2 * H + j]), cm[3 * kU + jj] + to_float(pre[3 * H + j]), *c_run);
      *c_run = st.c;
      T* y_row = p.y + pos * (R * (int64_t)H) + (int64_t)r * H;
      y_row[j] = from_float<T>(st.h);
      note_element_written(y_row + j, y_row + j0, y_row + (j0 + kU < H ? j0 + kU : H));
      save_forward(st, p.gates, p.cell, (int64_t)r * N + pos, H, j);
    }
    flags::block_arrive(arrivals);
  }
}

// Grid: (line_blocks, ceil(H / kU), active directions), kNarrowThreads threads, NarrowSmem(H, true).bytes(). Steps run
// from s_end - 1 down to s_begin; step s reads the dgates the unit blocks of its line block wrote at step s + 1.
template <typename T, int kL, int kU>
__global__ void __launch_bounds__(kNarrowThreads) lstm_bwd_narrow_kernel(const NarrowParams<T> p) {
  extern __shared__ __align__(128) unsigned char narrow_smem[];
  const int r = p.active[blockIdx.z];
  const Dir d = p.geo.dir[r];
  const int64_t m0 = (int64_t)blockIdx.x * kL;
  if (m0 >= d.lines) return;
  const int H = p.geo.H, R = p.geo.R, G = 4 * H, j0 = blockIdx.y * kU, tid = threadIdx.x;
  const int64_t N = p.geo.N;
  const NarrowSmem<T, kL, kU> lay(H, true);
  T* w = reinterpret_cast<T*>(narrow_smem);
  T* a = reinterpret_cast<T*>(narrow_smem + lay.w_bytes);
  float* c = reinterpret_cast<float*>(narrow_smem + lay.w_bytes + lay.a_bytes);
  // Row jj = column j0 + jj of w_hh[r] over the 4H gate rows, zero past H.
  const T* w_r = p.w_hh + (int64_t)r * G * H;
  for (int64_t idx = tid; idx < lay.rows * lay.ld_w; idx += kNarrowThreads) {
    const int jj = static_cast<int>(idx / lay.ld_w), q = static_cast<int>(idx % lay.ld_w), j = j0 + jj;
    w[idx] = (j < H && q < G) ? w_r[(int64_t)q * H + j] : zero_value<T>();
  }
  unsigned* arrivals = p.arrivals + (int64_t)r * p.line_blocks + blockIdx.x;
  const unsigned unit_blocks = gridDim.y;
  const int s_last = p.s_end - 1;
  for (int s = s_last; s >= p.s_begin; --s) {
    const unsigned k = static_cast<unsigned>(s_last - s);
    const bool last = s == d.len - 1;  // the line's last step: nothing flows back from a next step
    if (k > 0) {
      flags::block_wait(arrivals, k * unit_blocks);  // step s + 1 of every unit block
    } else {
      __syncthreads();  // the W slice is in place
    }
    const int64_t now_p = step_position(d, s);
    if (!last) {  // uniform over the block
      const int64_t next_p = step_position(d, s + 1);
      auto dg_next = [&](int m) -> const T* {
        const int64_t n = m0 + m;
        if (n >= d.lines) return nullptr;
        const T* row = p.dgates + flat_position(d, n, next_p, p.geo.T, p.geo.F) * (R * (int64_t)G) + (int64_t)r * G;
        if (k > 0) note_row_read(row, row + G);
        return row;
      };
      narrow_product<T, kL, kU>(lay, w, a, c, kU, G, dg_next);
    }
    const int jj = tid % kU, j = j0 + jj;
    for (int m = tid / kU; m < kL; m += kNarrowThreads / kU) {
      const int64_t n = m0 + m;
      if (n >= d.lines || j >= H) continue;
      const int64_t pos = flat_position(d, n, now_p, p.geo.T, p.geo.F);
      const float dh =
          (last ? 0.0f : c[m * lay.ld_c + jj]) + to_float(p.grad_y[pos * (R * (int64_t)H) + (int64_t)r * H + j]);
      const T* g_in = p.gates_in + ((int64_t)r * N + pos) * G;
      const int64_t prev = flat_position(d, n, step_position(d, s - 1), p.geo.T, p.geo.F);  // s >= 1
      float* dc_run = p.c_run + ((int64_t)r * p.lines_max + n) * H + j;
      const CellBackward g =
          cell_backward(dh, last ? 0.0f : *dc_run, to_float(g_in[j]), to_float(g_in[H + j]), to_float(g_in[2 * H + j]),
                        to_float(g_in[3 * H + j]), p.cell_in[((int64_t)r * N + pos) * H + j],
                        p.cell_in[((int64_t)r * N + prev) * H + j]);
      *dc_run = g.dc_prev;
      T* dg = p.dgates + pos * (R * (int64_t)G) + (int64_t)r * G;
      store_gate_grads(g, dg, H, j);
      const int j_end = j0 + kU < H ? j0 + kU : H;
      for (int gate = 0; gate < 4; ++gate) {
        note_element_written(dg + gate * H + j, dg + gate * H + j0, dg + gate * H + j_end);
      }
    }
    flags::block_arrive(arrivals);
  }
}

}  // namespace sweep_cuda
}  // namespace melnet_fast
