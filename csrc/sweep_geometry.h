// The geometry of a 2D LSTM sweep, written once for the CPU kernel (lstm_sweep_2d_cpu.cpp and its line kernels,
// sweep_lines_cpu.h), the CUDA kernels of both designs (cuda/lstm_step.cuh; cuda/lstm_epilogue.cuh and
// cuda/lstm_narrow.cuh) and their launches (cuda/lstm_sweep_2d.cu), and the CUDA emulator: the directions' lines, where
// a line is at step s, and how many steps a sweep takes. Torch-free, host and device.
// (melnet_fast/ops/lstm_sweep/gpu_host.py, the Python host of the GPU backends, mirrors sweep_steps and the line
// counts; tests/ops/test_sweep_step_rule.py pins it to this file.)
//
// Direction codes: 0 = t+, 1 = t-, 2 = f+, 3 = f- (forward / backward along time, one line per (b, f); along
// frequency, one line per (b, t)). Positions are flat indices pos = (b*T + t)*F + f of the [B, T, F] grid.
//
// The step rule: all directions advance together, one position per step, and a sweep takes as many steps as its
// longest direction has positions. Step s serves every direction still active at s (s < its length). When both
// axes are swept that is max(T, F); when every direction runs along one axis it is that axis's length, so there is
// never a step with no active direction (on the GPU it would be a launch of an empty grid, which is an error).
#pragma once

#include <cstdint>

#ifdef __CUDACC__
#define MF_SWEEP __host__ __device__ __forceinline__
#else
#define MF_SWEEP inline
#endif

namespace melnet_fast {
namespace sweep {

constexpr int kMaxDirections = 4;

struct Dir {
  int along_t;  // 1: lines run along time (one per (b, f)); 0: along frequency (one per (b, t))
  int reverse;  // 1: the line is walked from position L-1 down to 0
  int len;  // L_r: positions per line (T or F) = the steps during which the direction is active
  int64_t lines;  // N_r: B*F (along time) or B*T (along frequency)
};

struct Geometry {
  int64_t T, F;  // grid sizes; N = B*T*F
  int64_t N;
  int R, H;
  Dir dir[kMaxDirections];
};

// True when code is a direction code (0..3).
MF_SWEEP bool valid_code(int64_t code) { return code >= 0 && code <= 3; }

MF_SWEEP Dir make_dir(int64_t code, int64_t B, int64_t T, int64_t F) {
  Dir d;
  d.along_t = code < 2;
  d.reverse = static_cast<int>(code % 2);
  d.len = static_cast<int>(d.along_t ? T : F);
  d.lines = d.along_t ? B * F : B * T;
  return d;
}

// The geometry of a sweep of R valid codes (R <= kMaxDirections); unused direction slots are zero.
MF_SWEEP Geometry make_geometry(int64_t B, int64_t T, int64_t F, int64_t H, const int64_t* codes, int R) {
  Geometry g;
  g.T = T;
  g.F = F;
  g.N = B * T * F;
  g.R = R;
  g.H = static_cast<int>(H);
  for (int r = 0; r < kMaxDirections; ++r) g.dir[r] = r < R ? make_dir(codes[r], B, T, F) : Dir{0, 0, 0, 0};
  return g;
}

// Steps of a sweep: the longest direction's length (see the head of this file).
MF_SWEEP int64_t sweep_steps(const Geometry& g) {
  int64_t steps = 0;
  for (int r = 0; r < g.R; ++r) steps = steps > g.dir[r].len ? steps : g.dir[r].len;
  return steps;
}

// The most lines of any direction: the rows of the running-state buffers.
MF_SWEEP int64_t max_lines(const Geometry& g) {
  int64_t lines = 0;
  for (int r = 0; r < g.R; ++r) lines = lines > g.dir[r].lines ? lines : g.dir[r].lines;
  return lines;
}

// The most lines of any direction active at step s: the lines a step's launch covers.
MF_SWEEP int64_t active_lines(const Geometry& g, int64_t s) {
  int64_t lines = 0;
  for (int r = 0; r < g.R; ++r) {
    if (s < g.dir[r].len && g.dir[r].lines > lines) lines = g.dir[r].lines;
  }
  return lines;
}

// Position along the line at step s (valid for 0 <= s < d.len).
MF_SWEEP int64_t step_position(const Dir& d, int64_t s) { return d.reverse ? d.len - 1 - s : s; }

// Flat position of line n of direction d at position p along the line (0 <= p < d.len).
MF_SWEEP int64_t flat_position(const Dir& d, int64_t n, int64_t p, int64_t T, int64_t F) {
  if (d.along_t) {
    const int64_t b = n / F, f = n - b * F;  // n = b*F + f
    return (b * T + p) * F + f;
  }
  return n * F + p;  // n = b*T + t: (b*T + t)*F + p
}

}  // namespace sweep
}  // namespace melnet_fast
