// Host-side helpers shared by the C++ and CUDA ops: new output buffers, filled with NaN when the tests ask for it.
#pragma once
#include <ATen/ATen.h>

#include <atomic>
#include <limits>

namespace melnet_fast {

// When set (tests call melnet_fast._C.set_poison_outputs(True)), every output buffer is filled with NaN
// before a kernel writes it, so a kernel that leaves part of its output unwritten fails the comparisons.
inline std::atomic<bool>& poison_outputs_flag() {
  static std::atomic<bool> flag{false};
  return flag;
}

inline at::Tensor new_output(at::IntArrayRef sizes, const at::TensorOptions& options) {
  auto t = at::empty(sizes, options);
  if (poison_outputs_flag().load(std::memory_order_relaxed) && t.is_floating_point()) {
    t.fill_(std::numeric_limits<double>::quiet_NaN());
  }
  return t;
}

}  // namespace melnet_fast
