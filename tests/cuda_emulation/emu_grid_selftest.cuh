// Small kernels that each exercise one feature or break one rule of the grid emulator (shim/emu_grid.h), for
// test_grid_emulator.py. Written as CUDA device code and rewritten by build_grid_emulator.py like the kernels.
#pragma once
#include <cooperative_groups.h>
#include <cuda_runtime.h>

namespace grid_selftest {

constexpr int kThreads = 64;  // two warps per block

struct Params {
  float* out;
  int mode;
};
enum Mode { kShuffles, kGridRace, kGridSync, kDivergentShuffle, kEarlyReturn, kSmemPerBlock, kMisaligned,
           kNotCooperative };

__global__ void kernel(const Params p) {
  namespace cg = cooperative_groups;
  __shared__ float s_val[kThreads];
  const int t = threadIdx.x, lane = t % 32, nb = gridDim.x;
  const int g = blockIdx.x * kThreads + t;
  const float v = static_cast<float>(g);
  if (p.mode == kShuffles) {  // out[g * 8 + m]: the results of eight warp collectives
    float* o = p.out + g * 8;
    o[0] = __shfl_xor_sync(0xffffffffu, v, 5);
    o[1] = __shfl_down_sync(0xffffffffu, v, 3);
    o[2] = __shfl_up_sync(0xffffffffu, v, 2);
    o[3] = __shfl_sync(0xffffffffu, v, 7);
    o[4] = __shfl_xor_sync(0xffffffffu, v, 4, 8);
    o[5] = __shfl_down_sync(0xffffffffu, v, 3, 8);
    o[6] = __shfl_sync(0xffffffffu, v, lane + 9, 16);
    o[7] = static_cast<float>(__ballot_sync(0xffffffffu, lane % 3 == 0) & 0xffffu);
  } else if (p.mode == kGridRace || p.mode == kGridSync) {  // out[b]: written by block b, read by block b - 1
    if (t == 0) p.out[blockIdx.x] = static_cast<float>(blockIdx.x + 1);
    if (p.mode == kGridSync) cg::this_grid().sync();
    if (t == 0) p.out[nb + blockIdx.x] = p.out[(blockIdx.x + 1) % nb];
  } else if (p.mode == kDivergentShuffle) {
    if (lane < 16) p.out[g] = __shfl_xor_sync(0xffffffffu, v, 1);
  } else if (p.mode == kEarlyReturn || p.mode == kNotCooperative) {  // the harness launches the latter plainly
    if (blockIdx.x == 1) return;
    cg::this_grid().sync();
  } else if (p.mode == kSmemPerBlock) {  // out[g]: garbage read first, out[nb * kThreads + g]: own block's value
    p.out[g] = s_val[t];
    s_val[t] = static_cast<float>(blockIdx.x);
    cg::this_grid().sync();  // every block has written its copy
    p.out[nb * kThreads + g] = s_val[(t + 1) % kThreads];
  } else if (p.mode == kMisaligned) {
    const float4 q = *reinterpret_cast<const float4*>(p.out + 1);
    p.out[g] = q.x;
  }
}

}  // namespace grid_selftest
