// Host stand-in for cooperative_groups.h: the grid group of a cooperative launch, its barrier emulated by
// emu_grid.h (every thread of the grid waits at the same grid.sync() call site).
#pragma once
#include "emu_grid.h"

namespace cooperative_groups {

class grid_group {
 public:
  void sync(const char* file = __builtin_FILE(), int line = __builtin_LINE()) const {
    emu::grid::grid_sync(file, line);
  }
  bool is_valid() const { return emu::grid::g_cooperative; }
  unsigned long long size() const {
    return static_cast<unsigned long long>(gridDim.x) * gridDim.y * gridDim.z * blockDim.x * blockDim.y *
           blockDim.z;
  }
};

inline grid_group this_grid() { return grid_group(); }

}  // namespace cooperative_groups
