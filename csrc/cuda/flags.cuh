// Flag synchronisation between the blocks of a persistent kernel: counters and flags in global memory written with
// release semantics and read with acquire semantics at GPU scope, so that a block waits only for the producers of
// the data it reads instead of the whole grid (cooperative_groups' grid.sync()). Torch-free: the CPU grid
// emulator (tests/cuda_emulation/shim/emu_grid.h, which defines MF_EMU_GRID) compiles this header with its own
// model of each primitive: atomics, release/acquire ordering tracked per block, spinning waits that yield to the
// other blocks' fibers, a deadlock report, and a checker of reads of annotated data (note_write / note_read).
//
// The ordering rule every user follows (the block-level helpers below do it):
//   producer: every thread writes its data; __syncthreads(); one thread releases (store_release / arrive);
//   consumer: one thread waits with acquire loads (wait_at_least); __syncthreads(); every thread reads the data.
// The barrier orders the other threads' writes before the releasing thread's release (release is cumulative in
// the PTX memory model) and the acquire before the other threads' reads. Data written during the kernel is read
// with plain loads, never through the non-coherent path (__ldg, const __restrict__): an acquire makes the L1
// consistent only for the coherent path. This is the protocol of cooperative_groups' own grid barrier, minus its
// second half (nobody waits for the slowest block to leave).
#pragma once

#include <cuda_runtime.h>

namespace melnet_fast {
namespace flags {

#ifdef MF_EMU_GRID
// The emulator's model (tests/cuda_emulation/shim/emu_flags.h).
__device__ __forceinline__ unsigned load_acquire(const unsigned* p) { return emu::flags::load_acquire(p); }
__device__ __forceinline__ void store_release(unsigned* p, unsigned v) { emu::flags::store_release(p, v); }
__device__ __forceinline__ void add_release(unsigned* p, unsigned v) { emu::flags::add_release(p, v); }
__device__ __forceinline__ void fence() { emu::flags::fence(); }
// Annotations of data exchanged between blocks: the emulator checks that every read of data another block wrote
// follows an acquire of a flag that block released after the write.
template <typename T>
__device__ __forceinline__ void note_write(const T* p, long long n) {
  emu::flags::note_access(p, n * static_cast<long long>(sizeof(T)), true);
}
template <typename T>
__device__ __forceinline__ void note_read(const T* p, long long n) {
  emu::flags::note_access(p, n * static_cast<long long>(sizeof(T)), false);
}
#else
__device__ __forceinline__ unsigned load_acquire(const unsigned* p) {
  unsigned v;
  asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}
__device__ __forceinline__ void store_release(unsigned* p, unsigned v) {
  asm volatile("st.release.gpu.global.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}
// A reduction (no value returned): the arrival at a counter.
__device__ __forceinline__ void add_release(unsigned* p, unsigned v) {
  asm volatile("red.release.gpu.global.add.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}
__device__ __forceinline__ void fence() { __threadfence(); }
template <typename T>
__device__ __forceinline__ void note_write(const T*, long long) {}
template <typename T>
__device__ __forceinline__ void note_read(const T*, long long) {}
#endif

// True when counter value v has reached target (modulo 2^32: counters may wrap in a long kernel).
__device__ __forceinline__ bool reached(unsigned v, unsigned target) { return static_cast<int>(v - target) >= 0; }

// One thread spins until *counter >= target (acquire: what the releasing threads wrote before is visible after).
__device__ __forceinline__ void wait_at_least(const unsigned* counter, unsigned target) {
  while (!reached(load_acquire(counter), target)) {
  }
}

// ---- block-level protocol (every thread of the block calls these together)

// The block's writes so far are published: *counter += 1 with release, after a block barrier.
__device__ __forceinline__ void block_arrive(unsigned* counter) {
  __syncthreads();
  if (threadIdx.x == 0 && threadIdx.y == 0 && threadIdx.z == 0) {
    fence();  // as cooperative_groups' barrier: the block's writes ordered at GPU scope before the arrival
    add_release(counter, 1u);
  }
}

// Waits until *counter >= target; afterwards every thread of the block may read what the arrivals published.
__device__ __forceinline__ void block_wait(const unsigned* counter, unsigned target) {
  if (threadIdx.x == 0 && threadIdx.y == 0 && threadIdx.z == 0) wait_at_least(counter, target);
  __syncthreads();
}

// Sets *flag = value with release after a block barrier (a flag owned by this block: its value says how far the
// block's published data goes).
__device__ __forceinline__ void block_publish(unsigned* flag, unsigned value) {
  __syncthreads();
  if (threadIdx.x == 0 && threadIdx.y == 0 && threadIdx.z == 0) {
    fence();
    store_release(flag, value);
  }
}

}  // namespace flags
}  // namespace melnet_fast
