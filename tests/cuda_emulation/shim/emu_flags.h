// The grid emulator's model of flag synchronisation between blocks (csrc/cuda/flags.cuh) and of CUDA's integer
// atomics. Included by emu_grid.h, whose scheduler calls the on_* hooks.
//
// Values: fibers are not preempted, so every atomic is atomic and every thread sees every write at once; what the
// GPU's memory model adds (a reader may see stale data unless it acquired a flag that the writer released after
// writing) is checked instead of simulated:
//   - every block has a release epoch (starting at 1; each release by one of its threads publishes the current
//     epoch and starts the next one) and a vector clock of the epochs of every block it has acquired;
//   - a release stores the releasing thread's clock with the flag (store_release replaces it, an atomic add joins
//     it, as an RMW continues a release sequence); an acquire load joins the flag's clock into the thread's; a
//     __syncthreads joins the clocks of the block's threads (grid.sync() of every thread of the grid);
//   - data exchanged between blocks is annotated (flags::note_write / note_read): each written 4-byte word keeps
//     its writer block and the writer's epoch; a read of a word another block wrote is reported unless the reader
//     has acquired that block's epoch, and a release is reported if another thread of the block wrote annotated
//     data after the block's last __syncthreads (its writes are not ordered before the release).
// Waits: every acquire load first yields to the other fibers and every integer atomic yields after its change (a
// spinning wait lets the other blocks run); a round of the scheduler in which no atomic changed a value and no barrier
// was released while some fiber spins is reported as a deadlock. Not modelled: relaxed (non-atomic) flag reads, acquire
// through __threadfence after a relaxed load, and the ordering of plain global writes and reads within one block (a
// __syncthreads race on global memory).
#pragma once

#include <cstdint>
#include <cstring>
#include <unordered_map>
#include <vector>

namespace emu {
namespace flags {

using Clock = std::vector<uint32_t>;  // per block: the highest epoch of that block acquired

struct Word {
  int block;
  uint32_t epoch;
};

inline int g_blocks = 0;
inline std::vector<uint32_t> g_epoch;              // per block: its current release epoch
inline std::vector<Clock> g_thread_clock;          // per thread of the grid
inline std::vector<char> g_dirty;                  // per thread: wrote annotated data since its block's barrier
inline std::vector<char> g_fenced;                 // per thread: __threadfence since its last atomic write
inline std::unordered_map<uintptr_t, Clock> g_flag_clock;
inline std::unordered_map<uintptr_t, Word> g_words;
inline uint64_t g_changes = 0;                     // atomic writes that changed a value

inline void join(Clock& a, const Clock& b) {
  for (size_t i = 0; i < a.size(); ++i) a[i] = a[i] > b[i] ? a[i] : b[i];
}

inline void on_launch(int nblocks, int nthreads) {
  g_blocks = nblocks;
  g_epoch.assign(nblocks, 1);
  g_thread_clock.assign(static_cast<size_t>(nblocks) * nthreads, Clock(nblocks, 0));
  g_dirty.assign(static_cast<size_t>(nblocks) * nthreads, 0);
  g_fenced.assign(static_cast<size_t>(nblocks) * nthreads, 0);
  g_flag_clock.clear();
  g_words.clear();
  g_changes = 0;
}

// A __syncthreads of block b was released: its threads share what each of them acquired.
inline void on_block_barrier(int b) {
  const int nt = grid::g_threads;
  Clock c(g_blocks, 0);
  for (int t = 0; t < nt; ++t) join(c, g_thread_clock[b * nt + t]);
  for (int t = 0; t < nt; ++t) {
    g_thread_clock[b * nt + t] = c;
    g_dirty[b * nt + t] = 0;
  }
}

// A grid.sync() was released: every block has released and acquired everything before it.
inline void on_grid_barrier() {
  Clock c(g_epoch.begin(), g_epoch.end());
  for (auto& t : g_thread_clock) t = c;
  std::fill(g_dirty.begin(), g_dirty.end(), 0);
  for (auto& e : g_epoch) ++e;
}

inline int me() {
  if (g_current < 0) fail("flag or atomic operation outside a kernel");
  return g_current;
}

// Yields to the other fibers: the point where a spinning wait lets them run.
inline void spin_point(const void* flag) {
  grid::g_fibers[g_current].value = reinterpret_cast<uintptr_t>(flag);  // named by a deadlock report
  grid::block_here(grid::kSpin, "a flag wait", 0);
}

inline void release(const void* flag, bool joins) {
  const int g = me(), nt = grid::g_threads, b = g / nt;
  for (int t = b * nt; t < (b + 1) * nt; ++t) {
    if (t != g && g_dirty[t]) {
      fail("release of flag %p while thread %d of this block wrote shared data after the block's last "
           "__syncthreads (those writes are not ordered before the release)",
           flag, t - b * nt);
    }
  }
  Clock c = g_thread_clock[g];
  c[b] = g_epoch[b];
  auto [it, fresh] = g_flag_clock.try_emplace(reinterpret_cast<uintptr_t>(flag), c);
  if (!fresh) {
    if (joins) {
      join(it->second, c);
    } else {
      it->second = c;
    }
  }
  ++g_epoch[b];
  g_fenced[g] = 0;
}

inline void acquire(const void* flag) {
  auto it = g_flag_clock.find(reinterpret_cast<uintptr_t>(flag));
  if (it != g_flag_clock.end()) join(g_thread_clock[me()], it->second);
}

// A relaxed atomic write: a release if the thread fenced since its last atomic write (__threadfence(); atomic).
inline void relaxed_write(const void* flag) {
  const int g = me();
  if (g_fenced[g]) release(flag, true);
}

inline unsigned load_acquire(const unsigned* p) {
  spin_point(p);
  const unsigned v = *p;
  acquire(p);
  return v;
}

inline void store_release(unsigned* p, unsigned v) {
  release(p, false);
  g_changes += *p != v;
  *p = v;
}

inline void add_release(unsigned* p, unsigned v) {
  release(p, true);
  g_changes += v != 0;
  *p += v;
}

inline void fence() { g_fenced[me()] = 1; }

// The annotations of flags.cuh: writes record their block and epoch, reads are checked against them.
inline void note_access(const void* p, long long bytes, bool write) {
  const int g = me(), b = g / grid::g_threads;
  const auto first = reinterpret_cast<uintptr_t>(p) & ~uintptr_t{3};
  const auto end = reinterpret_cast<uintptr_t>(p) + static_cast<uintptr_t>(bytes);
  if (write) g_dirty[g] = 1;
  for (uintptr_t w = first; w < end; w += 4) {
    if (write) {
      g_words[w] = Word{b, g_epoch[b]};
      continue;
    }
    auto it = g_words.find(w);
    if (it == g_words.end() || it->second.block == b) continue;
    const Word& wr = it->second;
    if (g_thread_clock[g][wr.block] < wr.epoch) {
      fail("read of %p, written by block %d in its release epoch %u, without having acquired a flag that block "
           "released after the write (this thread has acquired its epochs up to %u)",
           reinterpret_cast<void*>(w), wr.block, wr.epoch, g_thread_clock[g][wr.block]);
    }
  }
}

// An atomic read-modify-write, then a yield (so that a loop of them, say a lock taken by atomicCAS, lets the other
// fibers run; the next iteration sees their changes).
template <typename T>
T relaxed_rmw(T* p, T v, T (*op)(T, T)) {
  static_assert(sizeof(T) == 4, "32-bit atomics only");
  const T old = *p;
  const T next = op(old, v);
  if (old != next) {
    relaxed_write(p);
    ++g_changes;
    *p = next;
  }
  spin_point(p);
  return old;
}

}  // namespace flags
}  // namespace emu

// CUDA's integer atomics (relaxed; a preceding __threadfence makes the write a release, as on the GPU).
inline int atomicAdd(int* p, int v) {
  return emu::flags::relaxed_rmw<int>(
      p, v, [](int a, int b) { return static_cast<int>(static_cast<unsigned>(a) + static_cast<unsigned>(b)); });
}
inline unsigned atomicAdd(unsigned* p, unsigned v) {
  return emu::flags::relaxed_rmw<unsigned>(p, v, [](unsigned a, unsigned b) { return a + b; });
}
inline int atomicExch(int* p, int v) {
  return emu::flags::relaxed_rmw<int>(p, v, [](int, int b) { return b; });
}
inline unsigned atomicExch(unsigned* p, unsigned v) {
  return emu::flags::relaxed_rmw<unsigned>(p, v, [](unsigned, unsigned b) { return b; });
}
inline int atomicCAS(int* p, int compare, int v) {
  return emu::flags::relaxed_rmw<int>(p, compare == *p ? v : *p, [](int, int b) { return b; });
}
inline unsigned atomicCAS(unsigned* p, unsigned compare, unsigned v) {
  return emu::flags::relaxed_rmw<unsigned>(p, compare == *p ? v : *p, [](unsigned, unsigned b) { return b; });
}
inline void __threadfence() { emu::flags::fence(); }
