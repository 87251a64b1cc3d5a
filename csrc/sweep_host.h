// Host-side tensor helpers of the 2D LSTM sweep shared by the CPU (lstm_sweep_2d_cpu.cpp) and CUDA
// (cuda/lstm_sweep_2d.cu) backward passes.
#pragma once

#include <ATen/ATen.h>

#include <vector>

namespace melnet_fast {

// The hidden state each position of one direction's lines saw as h_prev, as rows [B*T*F, H] in y's row order:
// y_r [B, T, F, H] (that direction's channel slice of y) shifted by one position along the direction's axis
// (time when along_t, else frequency), with h0_r [H] at every line's first position. dw_hh = dG^T @ this.
inline at::Tensor previous_hidden(const at::Tensor& y_r, const at::Tensor& h0_r, bool along_t, bool reverse) {
  const int64_t dim = along_t ? 1 : 2;
  const int64_t L = y_r.size(dim);
  std::vector<int64_t> shape(y_r.sizes().begin(), y_r.sizes().end());
  shape[dim] = 1;
  const auto first = h0_r.view({1, 1, 1, -1}).expand(shape);
  const auto prev = reverse ? at::cat({y_r.narrow(dim, 1, L - 1), first}, dim)
                            : at::cat({first, y_r.narrow(dim, 0, L - 1)}, dim);
  return prev.reshape({-1, y_r.size(3)});
}

}  // namespace melnet_fast
