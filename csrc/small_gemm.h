// Register-blocked products for small matrices (a few hundred thousand multiply-adds), where a BLAS or oneDNN
// call costs more in set-up than the arithmetic: the sampler's per-element matrix-vector products and the
// sweep's per-step products at small batch. Each is a template on VB, the vector size in bytes of the caller's target
// (64 AVX-512, 32 AVX2, 16 the baseline), and forced inline, so it compiles inside that target's wrapper.
#pragma once
#include <algorithm>
#include <cstdint>

#include "vec_math.h"

namespace melnet_fast {

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"  // 32 / 64-byte vectors in forced-inline helpers: no such call exists

// Register-blocked product over rows [r0, r0 + NV * lanes): acc[MB][NV] stays in vector registers across the
// whole k loop, so each weight vector is loaded once per MB inputs and no partial sum goes through memory. VB is the
// vector size in bytes of the caller's target (64, 32, 16), so the MB x NV accumulators are registers of that target.
template <int VB, typename T, int MB, int NV>
MF_INLINE void product_block(const T* wt, const T* V, int64_t ldv, int64_t rows, int64_t n, int64_t r0, T* out,
                             int64_t ldo) {
  using Vt = simd::Vec<T, VB>;
  constexpr int W = simd::lanes<Vt>();
  Vt acc[MB][NV];
  for (int mm = 0; mm < MB; ++mm)
    for (int nv = 0; nv < NV; ++nv) acc[mm][nv] = simd::load<Vt>(out + mm * ldo + r0 + nv * W);
  for (int64_t k = 0; k < n; ++k) {
    Vt w[NV];
    for (int nv = 0; nv < NV; ++nv) w[nv] = simd::load<Vt>(wt + k * rows + r0 + nv * W);
    for (int mm = 0; mm < MB; ++mm) {
      const T v = V[mm * ldv + k];
      for (int nv = 0; nv < NV; ++nv) acc[mm][nv] += v * w[nv];
    }
  }
  for (int mm = 0; mm < MB; ++mm)
    for (int nv = 0; nv < NV; ++nv) simd::store(out + mm * ldo + r0 + nv * W, acc[mm][nv]);
}

// Rows [r0, rows) that do not fill a vector, in scalar code.
template <typename T>
MF_INLINE void product_tail(const T* wt, const T* V, int64_t M, int64_t ldv, int64_t rows, int64_t n, int64_t r0,
                            T* out, int64_t ldo) {
  for (int64_t m = 0; m < M; ++m)
    for (int64_t r = r0; r < rows; ++r) {
      T acc = out[m * ldo + r];
      for (int64_t k = 0; k < n; ++k) acc += V[m * ldv + k] * wt[k * rows + r];
      out[m * ldo + r] = acc;
    }
}

// OUT[m, r] (+)= b[r] + sum_k wt[k, r] * V[m, k] for M vectors (leading dimensions ldv, ldo), from the
// transposed weights wt [n, rows]; accumulates into OUT when add. VB: the vector size of the caller's target.
template <int VB, typename T>
MF_INLINE void matmat(const T* wt, const T* V, int64_t M, int64_t ldv, const T* b, int64_t rows, int64_t n, T* out,
                      int64_t ldo, bool add = false) {
  for (int64_t m = 0; m < M; ++m) {
    T* o = out + m * ldo;
    if (!add) std::fill(o, o + rows, T(0));
    if (b) {
      for (int64_t r = 0; r < rows; ++r) o[r] += b[r];
    }
  }
  constexpr int W = VB / sizeof(T);
  const int64_t r_vec = rows - rows % W;  // rows covered by whole vectors
  int64_t m = 0;
  for (; m + 4 <= M; m += 4) {  // four inputs x two vectors of rows: eight independent accumulators
    int64_t r0 = 0;
    for (; r0 + 2 * W <= rows; r0 += 2 * W)
      product_block<VB, T, 4, 2>(wt, V + m * ldv, ldv, rows, n, r0, out + m * ldo, ldo);
    for (; r0 + W <= rows; r0 += W) product_block<VB, T, 4, 1>(wt, V + m * ldv, ldv, rows, n, r0, out + m * ldo, ldo);
  }
  for (; m < M; ++m) {  // one input x four vectors of rows, so that the FMA chains overlap
    int64_t r0 = 0;
    for (; r0 + 4 * W <= rows; r0 += 4 * W)
      product_block<VB, T, 1, 4>(wt, V + m * ldv, ldv, rows, n, r0, out + m * ldo, ldo);
    for (; r0 + W <= rows; r0 += W) product_block<VB, T, 1, 1>(wt, V + m * ldv, ldv, rows, n, r0, out + m * ldo, ldo);
  }
  if (r_vec < rows) product_tail(wt, V, M, ldv, rows, n, r_vec, out, ldo);
}

// out[r] (+)= b[r] + sum_k w[r, k] * v[k]: one vector.
template <int VB, typename T>
MF_INLINE void matvec(const T* wt, const T* v, const T* b, int64_t rows, int64_t n, T* out, bool add = false) {
  matmat<VB>(wt, v, 1, n, b, rows, n, out, rows, add);
}

// ---------------------------------------------------------------------------------------------------------------
// Products over rows given by pointers, for the sweep's line blocks (csrc/sweep_lines_cpu.h): the rows of one
// step sit at scattered positions of [B, T, F] tensors, so each row has its own pointer. VB is the vector size
// in bytes of the caller's target (64 for AVX-512, 32 for AVX2, 16 for the baseline), so acc[MR][NV] is sized
// for that target's registers.

// The register tile of each target: MR rows x NV vectors of accumulators, with NV weight vectors and one
// broadcast live beside them. 6 x 4 = 24 of AVX-512's 32 registers, 6 x 2 = 12 of AVX2's (and SSE's) 16: enough
// independent FMA chains to keep two FMA units busy through a 4-cycle latency (1 unit needs half as many), and
// 6 broadcasts + NV loads per 6 NV FMAs, below the two loads a cycle of current cores.
template <int VB>
struct RowsTile {
  static constexpr int MR = 6, NV = VB >= 64 ? 4 : 2;
};

// The register tile of both products below: out_row(m0 + m)[c0 + j] (+)= sum_k a_at(m0 + m, k) * b_row(k)[c0 + j]
// for m < MR, j < NV vectors. acc[MR][NV] stays in registers over the whole k loop; per k, NV vector loads and MR
// broadcasts feed MR x NV FMAs.
template <int VB, int MR, int NV, typename T, typename AAt, typename BRow, typename OutRow>
MF_INLINE void register_tile(AAt a_at, BRow b_row, OutRow out_row, int64_t m0, int64_t K, int64_t c0, bool add) {
  using V = simd::Vec<T, VB>;
  constexpr int W = simd::lanes<V>();
  V acc[MR][NV];
#pragma GCC unroll 8
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[m][v] = add ? simd::load<V>(out_row(m0 + m) + c0 + v * W) : V{};
  for (int64_t k = 0; k < K; ++k) {
    const T* bk = b_row(k) + c0;
    V bv[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) bv[v] = simd::load<V>(bk + v * W);
#pragma GCC unroll 8
    for (int m = 0; m < MR; ++m) {
      const T am = a_at(m0 + m, k);  // a scalar, not simd::splat: GCC then broadcasts it straight from memory
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[m][v] += am * bv[v];
    }
  }
#pragma GCC unroll 8
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) simd::store(out_row(m0 + m) + c0 + v * W, acc[m][v]);
}

// The last rows < MR of a product in one tile of exactly that many rows (a 1-row tile runs at a fraction of the
// rate: NV loads and a broadcast for every NV FMAs).
template <int VB, int MR, int NV, typename T, typename AAt, typename BRow, typename OutRow>
MF_INLINE void register_tile_tail(int64_t rows, AAt a_at, BRow b_row, OutRow out_row, int64_t m0, int64_t K, int64_t c0,
                                  bool add) {
  if constexpr (MR >= 1) {
    if (rows == MR)
      register_tile<VB, MR, NV, T>(a_at, b_row, out_row, m0, K, c0, add);
    else
      register_tile_tail<VB, MR - 1, NV, T>(rows, a_at, b_row, out_row, m0, K, c0, add);
  }
}

// out_row(m)[c] (+)= sum_k a_at(m, k) * b_row(k)[c] for m < M, c < ncols, in register tiles. Column panels
// outside, row tiles inside, so one panel of b (K x NV vectors) stays in L1 while every row passes over it.
template <int VB, typename T, typename AAt, typename BRow, typename OutRow>
MF_INLINE void tiled_product(AAt a_at, BRow b_row, OutRow out_row, int64_t M, int64_t K, int64_t ncols, bool add) {
  constexpr int MR = RowsTile<VB>::MR, NV = RowsTile<VB>::NV, W = VB / sizeof(T);
  const int64_t full = ncols - ncols % W;  // columns in whole vectors
  for (int64_t c = 0; c < full;) {
    const bool wide = c + NV * W <= full;
    int64_t m = 0;
    for (; m + MR <= M; m += MR) {
      if (wide)
        register_tile<VB, MR, NV, T>(a_at, b_row, out_row, m, K, c, add);
      else
        register_tile<VB, MR, 1, T>(a_at, b_row, out_row, m, K, c, add);
    }
    if (m < M) {
      if (wide)
        register_tile_tail<VB, MR - 1, NV, T>(M - m, a_at, b_row, out_row, m, K, c, add);
      else
        register_tile_tail<VB, MR - 1, 1, T>(M - m, a_at, b_row, out_row, m, K, c, add);
    }
    c += wide ? NV * W : W;
  }
  for (int64_t m = 0; m < M; ++m)  // columns that do not fill a vector
    for (int64_t c = full; c < ncols; ++c) {
      T acc = add ? out_row(m)[c] : T(0);
      for (int64_t k = 0; k < K; ++k) acc += a_at(m, k) * b_row(k)[c];
      out_row(m)[c] = acc;
    }
}

// out[m][c] (+)= sum_k a[m][k] * w[k * ldw + c] for m < M, c < ncols: a [M][K] and out [M][ncols] by row
// pointers, w [K, ncols] with leading dimension ldw.
template <int VB, typename T>
MF_INLINE void rows_product(const T* const* a, int64_t M, const T* w, int64_t ldw, int64_t K, int64_t ncols,
                            T* const* out, bool add) {
  tiled_product<VB, T>([&](int64_t m, int64_t k) MF_LAMBDA_INLINE { return a[m][k]; },
                       [&](int64_t k) MF_LAMBDA_INLINE { return w + k * ldw; },
                       [&](int64_t m) MF_LAMBDA_INLINE { return out[m]; }, M, K, ncols, add);
}

// out[g][c] += sum_k a[k][g] * b[k][c] for g < rows, c < ncols: out [rows, ncols] contiguous, a [K][rows] and
// b [K][ncols] by row pointers (out += a^T b, a weight gradient accumulated row by row).
template <int VB, typename T>
MF_INLINE void outer_accumulate(const T* const* a, const T* const* b, int64_t K, int64_t rows, int64_t ncols, T* out) {
  tiled_product<VB, T>([&](int64_t g, int64_t k) MF_LAMBDA_INLINE { return a[k][g]; },
                       [&](int64_t k) MF_LAMBDA_INLINE { return b[k]; },
                       [&](int64_t g) MF_LAMBDA_INLINE { return out + g * ncols; }, rows, K, ncols, true);
}
#pragma GCC diagnostic pop

}  // namespace melnet_fast
