// Register-blocked products for small matrices (a few hundred thousand multiply-adds), where a BLAS or oneDNN
// call costs more in set-up than the arithmetic: the sampler's per-element matrix-vector products and the
// sweep's per-step products at small batch. Force-inlined, so they vectorise inside the caller's target clone.
#pragma once
#include <algorithm>
#include <cstdint>

#include "vec_math.h"

namespace melnet_fast {

// A 64-byte vector of T (GCC vector extension): one zmm register in the AVX-512 clone, two ymm in the AVX2 one,
// four xmm in the default build, so the same source vectorises in every clone.
template <typename T>
struct Vec64 {
  typedef T type __attribute__((vector_size(64), aligned(sizeof(T))));
  static constexpr int lanes = 64 / sizeof(T);
};

// Register-blocked product over rows [r0, r0 + NV * lanes): acc[MB][NV] stays in vector registers across the
// whole k loop, so each weight vector is loaded once per MB inputs and no partial sum goes through memory.
template <typename T, int MB, int NV>
MF_INLINE void product_block(const T* wt, const T* V, int64_t ldv, int64_t rows, int64_t n, int64_t r0, T* out,
                             int64_t ldo) {
  using Vt = typename Vec64<T>::type;
  constexpr int W = Vec64<T>::lanes;
  Vt acc[MB][NV];
  for (int mm = 0; mm < MB; ++mm)
    for (int nv = 0; nv < NV; ++nv) __builtin_memcpy(&acc[mm][nv], out + mm * ldo + r0 + nv * W, sizeof(Vt));
  for (int64_t k = 0; k < n; ++k) {
    Vt w[NV];
    for (int nv = 0; nv < NV; ++nv) __builtin_memcpy(&w[nv], wt + k * rows + r0 + nv * W, sizeof(Vt));
    for (int mm = 0; mm < MB; ++mm) {
      const T v = V[mm * ldv + k];
      for (int nv = 0; nv < NV; ++nv) acc[mm][nv] += v * w[nv];
    }
  }
  for (int mm = 0; mm < MB; ++mm)
    for (int nv = 0; nv < NV; ++nv) __builtin_memcpy(out + mm * ldo + r0 + nv * W, &acc[mm][nv], sizeof(Vt));
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
// transposed weights wt [n, rows]; accumulates into OUT when add.
template <typename T>
MF_INLINE void matmat(const T* wt, const T* V, int64_t M, int64_t ldv, const T* b, int64_t rows, int64_t n, T* out,
                      int64_t ldo, bool add = false) {
  for (int64_t m = 0; m < M; ++m) {
    T* o = out + m * ldo;
    if (!add) std::fill(o, o + rows, T(0));
    if (b) {
      for (int64_t r = 0; r < rows; ++r) o[r] += b[r];
    }
  }
  constexpr int W = Vec64<T>::lanes;
  const int64_t r_vec = rows - rows % W;  // rows covered by whole vectors
  int64_t m = 0;
  for (; m + 4 <= M; m += 4) {  // four inputs x two vectors of rows: eight independent accumulators
    int64_t r0 = 0;
    for (; r0 + 2 * W <= rows; r0 += 2 * W)
      product_block<T, 4, 2>(wt, V + m * ldv, ldv, rows, n, r0, out + m * ldo, ldo);
    for (; r0 + W <= rows; r0 += W) product_block<T, 4, 1>(wt, V + m * ldv, ldv, rows, n, r0, out + m * ldo, ldo);
  }
  for (; m < M; ++m) {  // one input x four vectors of rows, so that the FMA chains overlap
    int64_t r0 = 0;
    for (; r0 + 4 * W <= rows; r0 += 4 * W)
      product_block<T, 1, 4>(wt, V + m * ldv, ldv, rows, n, r0, out + m * ldo, ldo);
    for (; r0 + W <= rows; r0 += W) product_block<T, 1, 1>(wt, V + m * ldv, ldv, rows, n, r0, out + m * ldo, ldo);
  }
  if (r_vec < rows) product_tail(wt, V, M, ldv, rows, n, r_vec, out, ldo);
}

// out[r] (+)= b[r] + sum_k w[r, k] * v[k]: one vector.
template <typename T>
MF_INLINE void matvec(const T* wt, const T* v, const T* b, int64_t rows, int64_t n, T* out, bool add = false) {
  matmat(wt, v, 1, n, b, rows, n, out, rows, add);
}

}  // namespace melnet_fast
