// The LSTM cell on whole vectors at the width of the caller's target (VB bytes: 64 AVX-512, 32 AVX2, 16 the
// baseline): one source of the cell's forward for the CPU sweep (sweep_lines_cpu.h) and the CPU samplers
// (sample_tier_cpu.cpp, centralized_step_cpu.cpp). Forced inline, so it compiles inside each target's wrapper.
#pragma once
#include <algorithm>
#include <cstdint>

#include "vec_math.h"

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"  // 32 / 64-byte vectors in forced-inline helpers: no such call exists
namespace melnet_fast {

// Runs body(j, lanes) over [0, H) a vector at a time; the last, partial vector has fewer lanes (read and written
// through padded copies by load_lanes / store_lanes).
template <typename V, typename Body>
MF_INLINE void over_lanes(int64_t H, Body body) {
  constexpr int W = simd::lanes<V>();
  int64_t j = 0;
  for (; j + W <= H; j += W) body(j, W);
  if (j < H) body(j, H - j);
}

template <typename V>
MF_INLINE V load_lanes(const simd::Elem<V>* p, int64_t lanes) {
  if (lanes == simd::lanes<V>()) return simd::load<V>(p);
  simd::Elem<V> tmp[simd::lanes<V>()] = {};
  std::copy(p, p + lanes, tmp);
  return simd::load<V>(tmp);
}

template <typename V>
MF_INLINE void store_lanes(simd::Elem<V>* p, const V& v, int64_t lanes) {
  if (lanes == simd::lanes<V>()) return simd::store(p, v);
  simd::Elem<V> tmp[simd::lanes<V>()];
  simd::store(tmp, v);
  std::copy(tmp, tmp + lanes, p);
}

// Units [j, j + n) of the LSTM cell below, n <= the lanes of V (fewer: through padded copies).
template <typename V>
MF_INLINE void lstm_cell_lanes(const simd::Elem<V>* pre, simd::Elem<V>* h, simd::Elem<V>* c, simd::Elem<V>* y,
                               simd::Elem<V>* act, simd::Elem<V>* cell, int64_t H, int64_t j, int64_t n) {
  const V i = simd::sigmoid(load_lanes<V>(pre + j, n)), f = simd::sigmoid(load_lanes<V>(pre + H + j, n));
  const V g = simd::tanh(load_lanes<V>(pre + 2 * H + j, n)), o = simd::sigmoid(load_lanes<V>(pre + 3 * H + j, n));
  const V cn = f * load_lanes<V>(c + j, n) + i * g;
  const V hn = o * simd::tanh(cn);
  store_lanes(c + j, cn, n);
  store_lanes(h + j, hn, n);
  store_lanes(y + j, hn, n);
  if (act) {
    store_lanes(act + j, i, n);
    store_lanes(act + H + j, f, n);
    store_lanes(act + 2 * H + j, g, n);
    store_lanes(act + 3 * H + j, o, n);
    store_lanes(cell + j, cn, n);
  }
}

// The LSTM cell of one line from its pre-activations pre [4H] (gates i, f, g, o, as nn.LSTM): c and h [H] updated in
// place, h also written to y (may be h itself), and when act is given the activated gates to act [4H] and the new cell
// state to cell [H]. sigmoid and tanh are simd::sigmoid / simd::tanh (vec_math.h). Units from j0 on; whole vectors of
// VB bytes first, the rest in vectors half as wide (a small H, such as 4 or 20, then costs no padded copies of
// AVX-512 vectors), and the last part-filled 16-byte vector through padded copies.
template <int VB, typename T>
MF_INLINE void lstm_cell_fwd(const T* pre, T* h, T* c, T* y, T* act, T* cell, int64_t H, int64_t j0 = 0) {
  using V = simd::Vec<T, VB>;
  constexpr int W = simd::lanes<V>();
  int64_t j = j0;
  for (; j + W <= H; j += W) lstm_cell_lanes<V>(pre, h, c, y, act, cell, H, j, W);
  if (j == H) return;
  if constexpr (VB > 16)
    lstm_cell_fwd<VB / 2>(pre, h, c, y, act, cell, H, j);
  else
    lstm_cell_lanes<V>(pre, h, c, y, act, cell, H, j, H - j);
}

}  // namespace melnet_fast
#pragma GCC diagnostic pop
