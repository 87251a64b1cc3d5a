// Host stand-in for cuda_runtime.h as far as the emulated kernels use it: the 16-byte vector types (16-byte
// aligned, as on the device, so that the alignment sanitizer of the grid harnesses reports a misaligned vector
// load like the GPU's misaligned-address fault) and the device intrinsics with their IEEE semantics. Fast-math
// intrinsics (__expf) are computed exactly here: the emulator does not model their approximation error.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "emu_runtime.h"

struct alignas(16) float4 {
  float x, y, z, w;
};
struct alignas(16) uint4 {
  unsigned x, y, z, w;
};

// The read-only data path: a plain load on the host.
template <typename T>
inline T __ldg(const T* p) {
  return *p;
}

inline float __uint_as_float(unsigned u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
inline unsigned __float_as_uint(float f) {
  unsigned u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline float __expf(float x) { return std::exp(x); }

// CUDA's global min / max overloads.
using std::max;
using std::min;
