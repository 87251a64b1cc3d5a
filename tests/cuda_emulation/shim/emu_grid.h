// Emulation runtime for kernels whose blocks must run together: every thread of every block of the grid is a
// fiber, all of them alive at once (a small grid: a few blocks), so that grid-wide barriers (cooperative_groups'
// grid.sync()) and warp collectives (__shfl_*_sync, __syncwarp, __ballot_sync) can be emulated as rendezvous:
//   - __syncthreads: a fiber waits until every thread of its block waits at the same call site;
//   - grid.sync(): until every thread of the grid waits at the same call site (it is also a block barrier);
//   - a warp collective: each lane deposits its value and waits until all 32 lanes of its warp wait at the same
//     call site with the same operation, then every lane reads its source lane's value.
// Fibers run until they block, in the order emu::g_order picks (in order, reversed, shuffled anew every round);
// then the scheduler releases every complete rendezvous and starts the next round. A state from which nothing can
// be released (a thread returned while others wait, lanes or threads at different sites, a partial warp) is
// reported with "emu error: ...", exit status 3, like the checks of emu_runtime.h.
//
// Shared memory is per block here (blocks run concurrently): the build helper (build_grid_emulator.py) rewrites
// every __shared__ declaration into a reference to the current block's copy (emu::grid::block_shared) and every
// extern __shared__ array into a pointer to the block's dynamic shared memory (emu::grid::dynamic_shared); both
// start filled with the garbage byte emu::g_poison.
//
// Flags between blocks (csrc/cuda/flags.cuh, which compiles its emulated form when MF_EMU_GRID is defined) and
// integer atomics are modelled by emu_flags.h: a fiber waiting on a flag yields (state kSpin) and runs again every
// round; a round in which nothing changed (no barrier released, no atomic changed a value) while fibers spin is a
// deadlock. Its release/acquire checker is described there.
//
// The context switch is a few lines of x86-64 assembly (callee-saved registers, stack pointer, SSE and x87
// control words): glibc's swapcontext makes a system call per switch, too slow for a switch per lane per shuffle.
#pragma once
#if !defined(__x86_64__)
#error "emu_grid.h: the fiber switch is written for x86-64 (the tests skip elsewhere)"
#endif

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <random>
#include <vector>

#include "emu_runtime.h"

#define MF_EMU_GRID 1

extern "C" void emu_grid_switch(void** save_sp, void* to_sp);
// Saves the callee-saved registers and the control words on the current stack, stores the stack pointer in
// *save_sp, loads to_sp and restores the same from there. A fresh fiber's stack is prepared by prepare_stack.
asm(R"(
  .text
  .globl emu_grid_switch
  .type emu_grid_switch, @function
emu_grid_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $16, %rsp
  stmxcsr 8(%rsp)
  fnstcw (%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr 8(%rsp)
  fldcw (%rsp)
  addq $16, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size emu_grid_switch, .-emu_grid_switch
)");

namespace emu {
namespace grid {

enum State { kRun, kSync, kGridSync, kWarp, kSpin, kDone };
enum WarpOp { kShflIdx, kShflUp, kShflDown, kShflXor, kSyncWarp, kBallot };

struct Fiber {
  void* sp = nullptr;
  char* stack = nullptr;
  State state = kDone;
  const char* file = nullptr;  // call site of the barrier or collective the fiber waits at
  int line = 0;
  // warp collective: operation, argument (source lane, delta or lane mask), width, value bytes and size, result
  int op = 0, arg = 0, width = 32, size = 0;
  uint64_t value = 0, result = 0;
};

constexpr size_t kStackBytes = 256 * 1024;
inline std::vector<Fiber> g_fibers;
inline void* g_sched_sp = nullptr;
inline std::function<void()> g_body;
inline int g_threads = 0;          // threads per block
inline bool g_cooperative = false;  // launched as cudaLaunchCooperativeKernel: grid.sync() allowed
inline std::vector<unsigned char*> g_dynamic;                  // per block: its dynamic shared memory
inline std::vector<std::map<const void*, unsigned char*>> g_static;  // per block: its __shared__ variables

inline int current_block() {
  if (g_current < 0) fail("shared memory used outside a kernel");
  return g_current / g_threads;
}

inline void set_current(int t) {
  g_current = t;
  const int tl = t % g_threads, b = t / g_threads;
  g_thread = dim3(tl % g_block_dim.x, (tl / g_block_dim.x) % g_block_dim.y, tl / (g_block_dim.x * g_block_dim.y));
  g_block = dim3(b % g_grid_dim.x, (b / g_grid_dim.x) % g_grid_dim.y, b / (g_grid_dim.x * g_grid_dim.y));
}

[[noreturn]] inline void fiber_entry() {
  g_body();
  g_fibers[g_current].state = kDone;
  emu_grid_switch(&g_fibers[g_current].sp, g_sched_sp);
  std::abort();  // a finished fiber is never resumed
}

// The stack of a fiber that has not run yet, as emu_grid_switch leaves it: control words, six registers (zero),
// then fiber_entry as the return address, 16-byte aligned so that fiber_entry starts with the ABI's alignment.
inline void* prepare_stack(char* stack) {
  auto top = reinterpret_cast<uintptr_t>(stack + kStackBytes) & ~uintptr_t{15};
  auto* w = reinterpret_cast<uint64_t*>(top) - 10;
  std::memset(w, 0, 10 * sizeof(uint64_t));
  w[0] = 0x037f;              // x87 control word (fnstcw's default)
  w[1] = 0x1f80;              // MXCSR: round to nearest, exceptions masked, no flush-to-zero
  w[8] = reinterpret_cast<uint64_t>(&fiber_entry);
  return w;
}

// Blocks the running fiber in state s (waiting at file:line) and returns to the scheduler.
inline void block_here(State s, const char* file, int line) {
  if (g_current < 0) fail("barrier or warp collective outside a kernel");
  Fiber& f = g_fibers[g_current];
  f.state = s;
  f.file = file;
  f.line = line;
  emu_grid_switch(&f.sp, g_sched_sp);
}

inline void syncthreads(const char* file, int line) { block_here(kSync, file, line); }

inline void grid_sync(const char* file, int line) {
  if (!g_cooperative) fail("grid.sync() in a kernel not launched with cudaLaunchCooperativeKernel");
  block_here(kGridSync, file, line);
}

template <typename T>
T warp_op(int op, unsigned mask, T v, int arg, int width, const char* file, int line) {
  static_assert(sizeof(T) <= 8, "warp collective on a value wider than 8 bytes");
  if (mask != 0xffffffffu) fail("warp collective with mask 0x%08x: only full-warp masks are emulated", mask);
  if (width < 1 || width > 32 || (width & (width - 1)) != 0) fail("warp collective width %d", width);
  if (g_current < 0) fail("warp collective outside a kernel");
  const int me = g_current;
  Fiber& f = g_fibers[me];
  f.op = op;
  f.arg = arg;
  f.width = width;
  f.size = sizeof(T);
  f.value = 0;
  std::memcpy(&f.value, &v, sizeof(T));
  block_here(kWarp, file, line);
  T r;
  std::memcpy(&r, &g_fibers[me].result, sizeof(T));
  return r;
}

// Per-block shared memory (the build helper's rewrite of the declarations calls these).
template <typename T>
T* block_shared(const void* key) {
  auto& vars = g_static[current_block()];
  auto it = vars.find(key);
  if (it == vars.end()) {
    auto* p = static_cast<unsigned char*>(std::aligned_alloc(256, (sizeof(T) + 255) / 256 * 256));
    std::memset(p, g_poison, sizeof(T));
    it = vars.emplace(key, p).first;
  }
  return reinterpret_cast<T*>(it->second);
}
template <typename T>
T* dynamic_shared() {
  return reinterpret_cast<T*>(g_dynamic[current_block()]);
}

inline const char* state_name(State s) {
  switch (s) {
    case kRun: return "running";
    case kSync: return "__syncthreads";
    case kGridSync: return "grid.sync()";
    case kWarp: return "a warp collective";
    case kSpin: return "a flag wait";
    default: return "returned";
  }
}

inline bool same_site(const Fiber& a, const Fiber& b) {
  return a.line == b.line && std::strcmp(a.file, b.file) == 0;
}

// Releases the warp of lanes [w, w + 32) if all of them wait at the same collective; true if released.
inline bool release_warp(int w) {
  Fiber* lanes = &g_fibers[w];
  for (int l = 0; l < 32; ++l) {
    if (lanes[l].state != kWarp) return false;
  }
  for (int l = 1; l < 32; ++l) {
    if (!same_site(lanes[l], lanes[0]) || lanes[l].op != lanes[0].op || lanes[l].size != lanes[0].size ||
        lanes[l].width != lanes[0].width) {
      set_current(w + l);
      fail("lane %d waits at a warp collective at %s:%d, lane 0 of its warp at %s:%d (or another operation)", l,
           lanes[l].file, lanes[l].line, lanes[0].file, lanes[0].line);
    }
  }
  uint64_t ballot = 0;
  for (int l = 0; l < 32; ++l) ballot |= (lanes[l].value != 0 ? 1ull : 0ull) << l;
  for (int l = 0; l < 32; ++l) {
    const Fiber& f = lanes[l];
    const int width = f.width, seg = l / width * width, in_seg = l - seg;
    int src = l;
    switch (f.op) {
      case kShflIdx: src = seg + ((f.arg % width) + width) % width; break;
      case kShflUp: src = in_seg >= f.arg ? l - f.arg : l; break;
      case kShflDown: src = in_seg + f.arg < width ? l + f.arg : l; break;
      case kShflXor: src = (l ^ f.arg) < seg + width ? l ^ f.arg : l; break;  // later groups: own value
      default: break;
    }
    if (src < 0 || src > 31) {
      set_current(w + l);
      fail("warp collective reads lane %d", src);
    }
    lanes[l].result = f.op == kBallot ? ballot : lanes[src].value;
  }
  for (int l = 0; l < 32; ++l) lanes[l].state = kRun;
  return true;
}

// Nothing can be released: names the first inconsistency found.
[[noreturn]] inline void report_deadlock(int nblocks) {
  const int n = nblocks * g_threads;
  for (int w = 0; w < n; w += 32) {
    for (int l = 0; l < 32; ++l) {
      const Fiber& f = g_fibers[w + l];
      if (g_fibers[w].state == kWarp || f.state == kWarp) {
        if (f.state != g_fibers[w].state) {
          set_current(w + l);
          fail("warp divergence at a full-mask warp collective: this lane is at %s, lane 0 of its warp at %s "
               "(%s:%d / %s:%d)", state_name(f.state), state_name(g_fibers[w].state), f.file ? f.file : "-",
               f.line, g_fibers[w].file ? g_fibers[w].file : "-", g_fibers[w].line);
        }
      }
    }
  }
  for (int b = 0; b < nblocks; ++b) {
    const Fiber* t = &g_fibers[b * g_threads];
    int done = 0, first_waiting = -1;
    for (int i = 0; i < g_threads; ++i) {
      if (t[i].state == kDone) {
        ++done;
      } else if (first_waiting < 0) {
        first_waiting = i;
      }
    }
    if (first_waiting < 0) continue;
    const Fiber& w = t[first_waiting];
    if (done > 0) {
      set_current(b * g_threads + first_waiting);
      fail("%d threads of the block returned while this one waits at %s (%s:%d)", done, state_name(w.state),
           w.file, w.line);
    }
    for (int i = 0; i < g_threads; ++i) {
      if (t[i].state != w.state || !same_site(t[i], w)) {
        set_current(b * g_threads + i);
        fail("threads of a block wait at different barriers: this one at %s (%s:%d), thread %d at %s (%s:%d)",
             state_name(t[i].state), t[i].file, t[i].line, first_waiting, state_name(w.state), w.file, w.line);
      }
    }
  }
  for (int t = 0; t < n; ++t) {
    if (g_fibers[t].state == kDone) {
      set_current(t);
      fail("this block returned while other blocks wait at grid.sync()");
    }
  }
  for (int t = 1; t < n; ++t) {
    if (!same_site(g_fibers[t], g_fibers[0])) {
      set_current(t);
      fail("blocks wait at different grid.sync() calls: %s:%d and %s:%d", g_fibers[t].file, g_fibers[t].line,
           g_fibers[0].file, g_fibers[0].line);
    }
  }
  fail("the grid deadlocked");
}

}  // namespace grid
}  // namespace emu

#include "emu_flags.h"

namespace emu {
namespace grid {

// Nothing changed in a round while fibers wait on flags: names one of them and the flag's value.
[[noreturn]] inline void report_spin_deadlock(int n) {
  int t = 0;
  while (g_fibers[t].state != kSpin) ++t;
  set_current(t);
  const auto* flag = reinterpret_cast<const void*>(static_cast<uintptr_t>(g_fibers[t].value));
  fail("deadlock: threads spin on flags that no running thread will change (e.g. the flag at %p, value %u)", flag,
       flag ? *static_cast<const unsigned*>(flag) : 0u);
}

// Runs kernel(p) over the whole grid at once. dynamic_bytes: the launch's dynamic shared memory per block;
// cooperative: launched with cudaLaunchCooperativeKernel (grid.sync() allowed).
template <typename Kernel, typename Params>
void launch(Kernel kernel, dim3 grid, dim3 block, size_t dynamic_bytes, bool cooperative, const Params& p) {
  const int nt = static_cast<int>(block.x * block.y * block.z);
  const long nb = static_cast<long>(grid.x) * grid.y * grid.z;
  if (nt <= 0 || nt > 1024 || nt % 32 != 0) fail("unsupported block size %d", nt);
  if (nb <= 0 || nb * nt > 16384) fail("grid (%u,%u,%u): the emulator runs up to 16384 threads at once", grid.x,
                                       grid.y, grid.z);
  if (dynamic_bytes > 48 * 1024) fail("%zu bytes of dynamic shared memory need the opt-in attribute", dynamic_bytes);
  const int n = static_cast<int>(nb * nt);
  if (g_fibers.size() < static_cast<size_t>(n)) g_fibers.resize(n);
  for (auto& f : g_fibers) {
    if (f.stack == nullptr) f.stack = static_cast<char*>(std::malloc(kStackBytes));  // pages touched on use only
  }
  g_grid_dim = grid;
  g_block_dim = block;
  g_threads = nt;
  g_cooperative = cooperative;
  g_body = [&]() { kernel(p); };
  g_dynamic.assign(nb, nullptr);
  g_static.assign(nb, {});
  for (auto& d : g_dynamic) {
    d = static_cast<unsigned char*>(std::aligned_alloc(256, (dynamic_bytes + 256) / 256 * 256));
    std::memset(d, g_poison, dynamic_bytes + 1);
  }
  for (int t = 0; t < n; ++t) {
    g_fibers[t].state = kRun;
    g_fibers[t].sp = prepare_stack(g_fibers[t].stack);
  }
  flags::on_launch(static_cast<int>(nb), nt);
  std::mt19937 rng(12345);
  std::vector<int> order(n);
  uint64_t changes = flags::g_changes;
  for (;;) {
    for (int t = 0; t < n; ++t) order[t] = g_order == 1 ? n - 1 - t : t;
    if (g_order == 2) std::shuffle(order.begin(), order.end(), rng);
    for (int t : order) {
      if (g_fibers[t].state != kRun && g_fibers[t].state != kSpin) continue;
      g_fibers[t].state = kRun;
      set_current(t);
      emu_grid_switch(&g_sched_sp, g_fibers[t].sp);
    }
    g_current = -1;
    bool released = false, spinning = false;
    int done = 0, at_grid = 0;
    for (int w = 0; w < n; w += 32) released |= release_warp(w);
    for (long b = 0; b < nb; ++b) {
      Fiber* t = &g_fibers[b * nt];
      bool all = true;
      for (int i = 0; i < nt && all; ++i) all = t[i].state == kSync && same_site(t[i], t[0]);
      if (all) {
        for (int i = 0; i < nt; ++i) t[i].state = kRun;
        flags::on_block_barrier(static_cast<int>(b));
        released = true;
      }
    }
    for (int t = 0; t < n; ++t) {
      done += g_fibers[t].state == kDone;
      spinning |= g_fibers[t].state == kSpin;
      at_grid += g_fibers[t].state == kGridSync && same_site(g_fibers[t], g_fibers[0]);
    }
    if (done == n) break;
    if (at_grid == n) {
      for (int t = 0; t < n; ++t) g_fibers[t].state = kRun;
      flags::on_grid_barrier();
      released = true;
    }
    // A spinning fiber runs again next round: that helps only if an atomic changed a value this round.
    if (spinning && !released && flags::g_changes == changes) report_spin_deadlock(n);
    changes = flags::g_changes;
    if (!released && !spinning) report_deadlock(static_cast<int>(nb));
  }
  for (auto& d : g_dynamic) std::free(d);
  for (auto& vars : g_static) {
    for (auto& kv : vars) std::free(kv.second);
  }
  g_dynamic.clear();
  g_static.clear();
}

}  // namespace grid
}  // namespace emu

#undef __syncthreads
#define __syncthreads() emu::grid::syncthreads(__FILE__, __LINE__)

// Warp collectives (full masks only). The call site comes from GCC's __builtin_FILE / __builtin_LINE.
template <typename T>
T __shfl_sync(unsigned mask, T v, int src, int width = 32, const char* file = __builtin_FILE(),
              int line = __builtin_LINE()) {
  return emu::grid::warp_op(emu::grid::kShflIdx, mask, v, src, width, file, line);
}
template <typename T>
T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32, const char* file = __builtin_FILE(),
                 int line = __builtin_LINE()) {
  return emu::grid::warp_op(emu::grid::kShflUp, mask, v, static_cast<int>(delta), width, file, line);
}
template <typename T>
T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32, const char* file = __builtin_FILE(),
                   int line = __builtin_LINE()) {
  return emu::grid::warp_op(emu::grid::kShflDown, mask, v, static_cast<int>(delta), width, file, line);
}
template <typename T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32, const char* file = __builtin_FILE(),
                  int line = __builtin_LINE()) {
  return emu::grid::warp_op(emu::grid::kShflXor, mask, v, lane_mask, width, file, line);
}
inline void __syncwarp(unsigned mask = 0xffffffffu, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  emu::grid::warp_op(emu::grid::kSyncWarp, mask, 0, 0, 32, file, line);
}
inline unsigned __ballot_sync(unsigned mask, int pred, const char* file = __builtin_FILE(),
                              int line = __builtin_LINE()) {
  return static_cast<unsigned>(emu::grid::warp_op<uint64_t>(emu::grid::kBallot, mask, pred != 0, 0, 32, file, line));
}
inline int __any_sync(unsigned mask, int pred, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return __ballot_sync(mask, pred, file, line) != 0;
}
inline int __all_sync(unsigned mask, int pred, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return __ballot_sync(mask, pred, file, line) == mask;
}
