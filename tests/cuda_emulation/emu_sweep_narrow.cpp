// Harness of the narrow phase's emulation test: runs the persistent kernels of csrc/cuda/lstm_narrow.cuh (the
// repository's file, rewritten by build_grid_emulator.py only to give every block its own shared memory) with the
// launch of the narrow ops of csrc/cuda/lstm_sweep_2d.cu (grid of line blocks x unit blocks x active directions, a
// cooperative launch, arrival counters zeroed) and every block alive at once (emu_grid.h), whose flag model checks
// that every read of another block's rows follows an acquire of a counter that block released after writing them.
// The tile is kL = 32 lines x kU = 16 units (EMU_LINES / EMU_UNITS), so that several line and unit blocks fit the
// emulator's 16384 threads and 48 KiB of dynamic shared memory; the GPU runs the same template at 128 x 32.
//
//   emu_sweep_narrow fwd DTYPE B T F H ORDER POISON SAVE S_BEGIN S_END DIR R CODE*R
//   emu_sweep_narrow bwd DTYPE B T F H ORDER POISON S_BEGIN S_END DIR R CODE*R
// Buffers as emu_sweep.cpp's step modes (fwd: pre, w_hh in; y, c_run, gates, cell in and out; bwd: grad_y, w_hh,
// gates, cell in; dgates, dc_run in and out).
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "cuda_bf16.h"
#include "cuda_fp16.h"
#include "emu_buffer.h"
#include "emu_grid.h"
// The rewritten copy of csrc/cuda/lstm_narrow.cuh in the build folder (its #line directive names the original).
#include "lstm_narrow.cuh"

namespace sc = melnet_fast::sweep_cuda;
namespace sw = melnet_fast::sweep;

#ifndef EMU_LINES
#define EMU_LINES 32
#endif
#ifndef EMU_UNITS
#define EMU_UNITS 16
#endif

namespace {

using emu::Buffer;

template <typename T>
void run(bool backward, const sw::Geometry& geo, bool save, int s_begin, int s_end, const std::string& dir) {
  const int64_t N = geo.N, R = geo.R, H = geo.H, G = 4 * H, lines_max = sw::max_lines(geo);
  // The checks and grid of check_narrow in lstm_sweep_2d.cu.
  if (!(1 <= s_begin && s_begin < s_end && s_end <= sw::sweep_steps(geo))) emu::fail("bad phase");
  sc::NarrowParams<T> p{};
  int n_active = 0, axis = -1;
  for (int r = 0; r < R; ++r) {
    if (geo.dir[r].len <= s_begin) continue;
    if ((axis >= 0 && axis != geo.dir[r].along_t) || geo.dir[r].len < s_end) emu::fail("not a narrow phase");
    axis = geo.dir[r].along_t;
    p.active[n_active++] = r;
  }
  const int64_t line_blocks = (sw::active_lines(geo, s_begin) + EMU_LINES - 1) / EMU_LINES;
  const dim3 grid(static_cast<unsigned>(line_blocks), static_cast<unsigned>((H + EMU_UNITS - 1) / EMU_UNITS),
                  static_cast<unsigned>(n_active));
  Buffer arrivals("arrivals", R * line_blocks * sizeof(unsigned));
  std::memset(arrivals.as<unsigned>(), 0, R * line_blocks * sizeof(unsigned));
  Buffer w_hh("w_hh", R * G * H * sizeof(T));
  w_hh.load(dir);
  std::vector<Buffer*> inputs{&w_hh}, outputs;
  Buffer pre("pre", backward ? 0 : N * R * G * sizeof(T)), grad_y("grad_y", backward ? N * R * H * sizeof(T) : 0),
      y("y", backward ? 0 : N * R * H * sizeof(T)), gates("gates", (backward || save) ? R * N * G * sizeof(T) : 0),
      cell("cell", (backward || save) ? R * N * H * sizeof(float) : 0), run("c_run", R * lines_max * H * sizeof(float)),
      dgates("dgates", backward ? N * R * G * sizeof(T) : 0);
  if (backward) {
    for (Buffer* b : {&grad_y, &gates, &cell}) inputs.push_back(b);
    outputs = {&dgates, &run};
  } else {
    inputs.push_back(&pre);
    outputs = {&y, &run};
    if (save) outputs.insert(outputs.end(), {&gates, &cell});
  }
  for (Buffer* b : inputs) b->load(dir);
  for (Buffer* b : outputs) b->load(dir, /*input=*/false);
  p.pre = pre.as<const T>();
  p.grad_y = grad_y.as<const T>();
  p.w_hh = w_hh.as<const T>();
  p.gates_in = gates.as<const T>();
  p.cell_in = cell.as<const float>();
  p.y = y.as<T>();
  p.gates = (!backward && save) ? gates.as<T>() : nullptr;
  p.cell = (!backward && save) ? cell.as<float>() : nullptr;
  p.c_run = run.as<float>();
  p.dgates = dgates.as<T>();
  p.arrivals = arrivals.as<unsigned>();
  p.lines_max = lines_max;
  p.s_begin = s_begin;
  p.s_end = s_end;
  p.line_blocks = static_cast<int>(line_blocks);
  p.geo = geo;
  const sc::NarrowSmem<T, EMU_LINES, EMU_UNITS> lay(static_cast<int>(H), backward);
  // mma.h's per-thread record of wmma calls is indexed by the grid's thread number here.
  emu::g_fibers.resize(static_cast<size_t>(grid.x) * grid.y * grid.z * sc::kNarrowThreads);
  if (backward) {
    emu::grid::launch(sc::lstm_bwd_narrow_kernel<T, EMU_LINES, EMU_UNITS>, grid, dim3(sc::kNarrowThreads),
                      static_cast<size_t>(lay.bytes()), /*cooperative=*/true, p);
  } else {
    emu::grid::launch(sc::lstm_fwd_narrow_kernel<T, EMU_LINES, EMU_UNITS>, grid, dim3(sc::kNarrowThreads),
                      static_cast<size_t>(lay.bytes()), /*cooperative=*/true, p);
  }
  for (Buffer* b : inputs) b->check();
  for (Buffer* b : outputs) {
    b->check();
    b->save(dir);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  const bool backward = mode == "bwd";
  if ((mode != "fwd" && !backward) || argc < (backward ? 14 : 15)) {
    std::fprintf(stderr, "usage: see the head of emu_sweep_narrow.cpp\n");
    return 2;
  }
  const std::string dtype = argv[2];
  const int64_t B = emu::arg_int(argv, 3), T = emu::arg_int(argv, 4), F = emu::arg_int(argv, 5),
                H = emu::arg_int(argv, 6);
  emu::g_order = static_cast<int>(emu::arg_int(argv, 7));
  emu::g_poison = static_cast<int>(emu::arg_int(argv, 8));
  int i = 9;
  const bool save = backward ? true : emu::arg_int(argv, i++) != 0;
  const int s_begin = static_cast<int>(emu::arg_int(argv, i++)), s_end = static_cast<int>(emu::arg_int(argv, i++));
  const std::string dir = argv[i++];
  const int R = static_cast<int>(emu::arg_int(argv, i++));
  if (R < 1 || R > sw::kMaxDirections || argc != i + R) emu::fail("expected %d direction codes", R);
  std::vector<int64_t> codes;
  for (int r = 0; r < R; ++r) codes.push_back(emu::arg_int(argv, i++));
  for (int64_t c : codes) {
    if (!sw::valid_code(c)) emu::fail("direction code %ld", static_cast<long>(c));
  }
  const sw::Geometry geo = sw::make_geometry(B, T, F, H, codes.data(), R);
  if (dtype == "f32") {
    run<float>(backward, geo, save, s_begin, s_end, dir);
  } else if (dtype == "bf16") {
    run<__nv_bfloat16>(backward, geo, save, s_begin, s_end, dir);
  } else if (dtype == "f16") {
    run<__half>(backward, geo, save, s_begin, s_end, dir);
  } else {
    emu::fail("unknown dtype %s", dtype.c_str());
  }
  return 0;
}
