// Harness of the grid emulator's self-tests (emu_grid_selftest.cuh, rewritten into the build folder):
//   emu_grid_selftest MODE BLOCKS ORDER POISON DIR      MODE: a grid_selftest::Mode; writes DIR/out.bin and
// DIR/flags.bin
#include <string>

#include "emu_buffer.h"
#include "emu_grid.h"
// Angle brackets: the rewritten copy in the build folder, not the original next to this file.
#include <emu_grid_selftest.cuh>

int main(int argc, char** argv) {
  if (argc != 6) return 2;
  const int mode = static_cast<int>(emu::arg_int(argv, 1)), blocks = static_cast<int>(emu::arg_int(argv, 2));
  emu::g_order = static_cast<int>(emu::arg_int(argv, 3));
  emu::g_poison = static_cast<int>(emu::arg_int(argv, 4));
  emu::Buffer out("out", 8 * blocks * grid_selftest::kThreads * sizeof(float));
  for (size_t i = 0; i < out.bytes() / 4; ++i) out.as<float>()[i] = 0.f;
  emu::Buffer flags("flags", grid_selftest::kFlagWords * sizeof(unsigned));
  for (int i = 0; i < grid_selftest::kFlagWords; ++i) flags.as<unsigned>()[i] = 0;
  const grid_selftest::Params p{out.as<float>(), flags.as<unsigned>(), mode};
  emu::grid::launch(grid_selftest::kernel, dim3(blocks), dim3(grid_selftest::kThreads), 0,
                    mode != grid_selftest::kNotCooperative, p);
  out.check();
  flags.check();
  out.save(argv[5]);
  flags.save(argv[5]);
  return 0;
}
