// Small kernels that each exercise one feature or break one rule of the grid emulator (shim/emu_grid.h), for
// test_grid_emulator.py. Written as CUDA device code and rewritten by build_grid_emulator.py like the kernels.
#pragma once
#include <cooperative_groups.h>
#include <cuda_runtime.h>

#include "cuda/flags.cuh"

namespace grid_selftest {

constexpr int kThreads = 64;  // two warps per block

struct Params {
  float* out;
  unsigned* flags;  // [kFlagWords], zeroed by the harness
  int mode;
};
constexpr int kFlagWords = 16;
enum Mode { kShuffles, kGridRace, kGridSync, kDivergentShuffle, kEarlyReturn, kSmemPerBlock, kMisaligned,
           kNotCooperative, kFlagHandoff, kReadBeforeAcquire, kWriteAfterRelease, kUnorderedRelease, kFlagDeadlock,
           kAtomics, kPublishedFlags };

// Block b writes out[b * kThreads + t], then reads block b + 1's values into out[(nb + b) * kThreads + t], with the
// flag protocol of csrc/cuda/flags.cuh (kFlagHandoff, kPublishedFlags) or with one of its rules broken.
__device__ void flag_modes(const Params& p) {
  namespace fl = melnet_fast::flags;
  const int t = threadIdx.x, b = blockIdx.x, nb = gridDim.x;
  unsigned* counter = p.flags;
  float* mine = p.out + b * kThreads + t;
  const float* theirs = p.out + ((b + 1) % nb) * kThreads + t;
  if (p.mode == kWriteAfterRelease) fl::block_arrive(counter);  // released before the write
  *mine = static_cast<float>(b * kThreads + t);
  fl::note_write(mine, 1);
  if (p.mode == kUnorderedRelease) {  // thread 0 releases with no barrier after the other threads' writes
    if (t == 0) fl::add_release(counter, 1u);
  } else if (p.mode == kPublishedFlags) {
    fl::block_publish(p.flags + 1 + b, 1u);  // a flag per block: wait only for the neighbour whose data is read
  } else if (p.mode != kWriteAfterRelease) {
    fl::block_arrive(counter);
  }
  if (p.mode == kPublishedFlags) {
    fl::block_wait(p.flags + 1 + (b + 1) % nb, 1u);
  } else if (p.mode != kReadBeforeAcquire) {
    fl::block_wait(counter, p.mode == kFlagDeadlock ? nb + 1 : nb);
  } else {
    __syncthreads();
  }
  fl::note_read(theirs, 1);
  p.out[(nb + b) * kThreads + t] = *theirs;
}

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
  } else if ((p.mode >= kFlagHandoff && p.mode <= kFlagDeadlock) || p.mode == kPublishedFlags) {
    flag_modes(p);
  } else if (p.mode == kAtomics) {  // out[g]: the value of one shared counter before this thread's increment
    p.out[g] = static_cast<float>(atomicAdd(p.flags, 1u));
    atomicAdd(reinterpret_cast<int*>(p.flags + 1), -1);
    if (atomicCAS(p.flags + 2, 0u, static_cast<unsigned>(g + 1)) == 0u) p.out[nb * kThreads] = static_cast<float>(g);
    atomicExch(reinterpret_cast<int*>(p.flags + 3), 7);
  } else if (p.mode == kMisaligned) {
    const float4 q = *reinterpret_cast<const float4*>(p.out + 1);
    p.out[g] = q.x;
  }
}

}  // namespace grid_selftest
