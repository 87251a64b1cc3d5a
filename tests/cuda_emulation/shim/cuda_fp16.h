// Host stand-in for cuda_fp16.h: the storage type and the two conversions (no arithmetic, no implicit
// conversion: the extension builds with __CUDA_NO_HALF_CONVERSIONS__ / __CUDA_NO_HALF_OPERATORS__). Bit-exact
// IEEE conversions (round to nearest even, subnormals, overflow to infinity), checked against torch's on every
// half value and on edge-case floats by test_emulator_self_checks.
#pragma once
#include <cstdint>
#include <cstring>

struct __half {
  uint16_t bits;
};

inline float __half2float(__half v) {
  const uint32_t sign = static_cast<uint32_t>(v.bits & 0x8000u) << 16;
  const uint32_t exp = (v.bits >> 10) & 0x1fu, mant = v.bits & 0x3ffu;
  uint32_t u;
  if (exp == 0) {  // zero or subnormal: mant * 2^-24, exact in float32
    float f = static_cast<float>(mant) * 5.9604644775390625e-8f;
    std::memcpy(&u, &f, sizeof u);
    u |= sign;
  } else if (exp == 31) {  // infinity or NaN
    u = sign | 0x7f800000u | (mant << 13);
  } else {
    u = sign | ((exp + 112) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// F. Giesen's float_to_half_fast3_rtne: round to nearest even with integer arithmetic for normal results and
// one float addition (rounding to nearest even) for subnormal ones.
inline __half __float2half(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  const uint32_t sign = u & 0x80000000u;
  u ^= sign;
  uint32_t out;
  if (u >= (127u + 16u) << 23) {  // |f| >= 65536 or NaN: infinity or NaN
    out = u > 0x7f800000u ? 0x7e00u : 0x7c00u;
  } else if (u < 113u << 23) {  // |f| < 2^-14: subnormal or zero; adding 0.5 leaves the result's bits at the bottom
    float a;
    std::memcpy(&a, &u, sizeof a);
    a += 0.5f;
    std::memcpy(&out, &a, sizeof out);
    out -= 0x3f000000u;
  } else {  // rebias the exponent, round to nearest even (65520 and above carry into infinity)
    const uint32_t mant_odd = (u >> 13) & 1u;
    u += ((15u - 127u) << 23) + 0xfffu;
    u += mant_odd;
    out = u >> 13;
  }
  return {static_cast<uint16_t>(out | (sign >> 16))};
}

inline __half __ushort_as_half(unsigned short bits) { return {bits}; }
