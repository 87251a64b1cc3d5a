// Host stand-in for nvcuda::wmma, 16x16x16 tiles with float32 accumulators: every thread of a warp holds the
// whole tile (the real distribution of elements over lanes is opaque to kernels). Checks what the CUDA
// documentation requires: 256-bit (32-byte) aligned pointers, ldm a multiple of 16 bytes, and (through
// emu::wmma_record) that all lanes of a warp make the same calls with the same arguments. Products accumulate
// in float32 in k order; the tensor cores' own rounding order is not reproduced.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#include "emu_runtime.h"

namespace nvcuda {
namespace wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <typename Use, int M, int N, int K, typename T, typename Layout = void>
struct fragment {
  static_assert(M == 16 && N == 16 && K == 16, "only the 16x16x16 shape is emulated");
  float v[16][16];  // (row, col) of the tile: A (m, k), B (k, n), C (m, n)
};

inline float emu_to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
inline float emu_to_float(__half v) { return __half2float(v); }

inline void emu_check(const void* ptr, unsigned ldm, size_t elt, const char* what) {
  if (reinterpret_cast<uintptr_t>(ptr) % 32 != 0) emu::fail("wmma %s: pointer %p not 32-byte aligned", what, ptr);
  if ((ldm * elt) % 16 != 0) {
    emu::fail("wmma %s: ldm %u (%zu-byte elements) not a multiple of 16 bytes", what, ldm, elt);
  }
}

template <typename T>
void load_matrix_sync(fragment<matrix_a, 16, 16, 16, T, row_major>& f, const T* p, unsigned ldm) {
  emu_check(p, ldm, sizeof(T), "load_matrix_sync(matrix_a, row_major)");
  emu::wmma_record(1, p, ldm, sizeof(T));
  for (int i = 0; i < 16; ++i)
    for (int k = 0; k < 16; ++k) f.v[i][k] = emu_to_float(p[i * ldm + k]);
}

template <typename T>
void load_matrix_sync(fragment<matrix_a, 16, 16, 16, T, col_major>& f, const T* p, unsigned ldm) {
  emu_check(p, ldm, sizeof(T), "load_matrix_sync(matrix_a, col_major)");
  emu::wmma_record(2, p, ldm, sizeof(T));
  for (int i = 0; i < 16; ++i)
    for (int k = 0; k < 16; ++k) f.v[i][k] = emu_to_float(p[k * ldm + i]);
}

template <typename T>
void load_matrix_sync(fragment<matrix_b, 16, 16, 16, T, row_major>& f, const T* p, unsigned ldm) {
  emu_check(p, ldm, sizeof(T), "load_matrix_sync(matrix_b, row_major)");
  emu::wmma_record(3, p, ldm, sizeof(T));
  for (int k = 0; k < 16; ++k)
    for (int j = 0; j < 16; ++j) f.v[k][j] = emu_to_float(p[k * ldm + j]);
}

template <typename T>
void load_matrix_sync(fragment<matrix_b, 16, 16, 16, T, col_major>& f, const T* p, unsigned ldm) {
  emu_check(p, ldm, sizeof(T), "load_matrix_sync(matrix_b, col_major)");
  emu::wmma_record(4, p, ldm, sizeof(T));
  for (int k = 0; k < 16; ++k)
    for (int j = 0; j < 16; ++j) f.v[k][j] = emu_to_float(p[j * ldm + k]);
}

inline void fill_fragment(fragment<accumulator, 16, 16, 16, float>& f, float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  emu::wmma_record(5, nullptr, 0, bits);
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 16; ++j) f.v[i][j] = x;
}

template <typename T, typename LA, typename LB>
void mma_sync(fragment<accumulator, 16, 16, 16, float>& d, const fragment<matrix_a, 16, 16, 16, T, LA>& a,
              const fragment<matrix_b, 16, 16, 16, T, LB>& b, const fragment<accumulator, 16, 16, 16, float>& c) {
  static_assert(std::is_same<T, __half>::value || std::is_same<T, __nv_bfloat16>::value,
                "emulated for 16-bit operands only");
  emu::wmma_record(6, nullptr, 0, sizeof(T));
  float out[16][16];
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 16; ++j) {
      float s = c.v[i][j];
      for (int k = 0; k < 16; ++k) s += a.v[i][k] * b.v[k][j];
      out[i][j] = s;
    }
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 16; ++j) d.v[i][j] = out[i][j];
}

inline void store_matrix_sync(float* p, const fragment<accumulator, 16, 16, 16, float>& f, unsigned ldm,
                              layout_t layout) {
  emu_check(p, ldm, sizeof(float), "store_matrix_sync");
  emu::wmma_record(7, p, ldm, layout);
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 16; ++j) {
      if (layout == mem_row_major) {
        p[i * ldm + j] = f.v[i][j];
      } else {
        p[j * ldm + i] = f.v[i][j];
      }
    }
}

}  // namespace wmma
}  // namespace nvcuda
