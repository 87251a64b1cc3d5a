// Emulation runtime: runs CUDA kernels on the CPU. Blocks run one after another; every thread of a block is a
// fiber (ucontext) that runs until it reaches __syncthreads or returns, then the next fiber runs. Any failed
// check prints "emu error: ..." with the block and thread and exits with status 3 (the harness runs as its own
// process, so the test reports the message).
//
// Checked here: all threads of a block reach the same __syncthreads call site (no thread returns while others
// wait, no two sites mixed), the threads of a warp make the same sequence of wmma calls with the same arguments
// (warp-collective operations), and __shared__ variables start every block filled with a garbage byte
// (emu::g_poison) instead of the previous block's data. The order in which the fibers run between barriers is
// chosen by emu::g_order (in order, reversed, shuffled anew every round): a shared-memory race gives results
// that depend on it.
#pragma once
#include <ucontext.h>

#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <random>
#include <vector>

struct dim3 {
  unsigned x, y, z;
  dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

namespace emu {

inline dim3 g_thread, g_block, g_block_dim, g_grid_dim;
inline int g_poison = 0xFF;  // byte that fills __shared__ variables at the start of every block
inline int g_order = 0;      // 0: threads in order, 1: reversed, 2: a new random order every round
inline long g_block_serial = 0;

enum State { kRunning, kBarrier, kDone };
struct Fiber {
  ucontext_t ctx;
  std::vector<char> stack;
  State state = kDone;
  const char* barrier_file = nullptr;  // call site of the __syncthreads the fiber waits at
  int barrier_line = 0;
  uint64_t wmma_hash = 0;  // running hash of the fiber's wmma calls and their arguments
};
inline ucontext_t g_sched;
inline std::vector<Fiber> g_fibers;
inline int g_current = -1;  // the running fiber, -1 outside kernels
inline std::function<void()> g_body;

[[noreturn]] inline void fail(const char* fmt, ...) {
  std::fflush(stdout);
  std::fprintf(stderr, "emu error: ");
  va_list args;
  va_start(args, fmt);
  std::vfprintf(stderr, fmt, args);
  va_end(args);
  if (g_current >= 0) {
    std::fprintf(stderr, " [block (%u,%u,%u), thread (%u,%u,%u)]", g_block.x, g_block.y, g_block.z, g_thread.x,
                 g_thread.y, g_thread.z);
  }
  std::fprintf(stderr, "\n");
  std::fflush(stderr);
  std::_Exit(3);  // not exit(): that would free the fiber stacks while running on one
}

inline void fiber_entry() {
  g_body();
  g_fibers[g_current].state = kDone;
  swapcontext(&g_fibers[g_current].ctx, &g_sched);
}

inline void syncthreads(const char* file, int line) {
  Fiber& f = g_fibers[g_current];
  f.state = kBarrier;
  f.barrier_file = file;
  f.barrier_line = line;
  swapcontext(&f.ctx, &g_sched);
}

// Every wmma call of a thread: mixed into its hash, compared across the warp at each barrier and block end.
inline void wmma_record(uint64_t op, const void* ptr, uint64_t ldm, uint64_t extra) {
  if (g_current < 0) fail("wmma call outside a kernel");
  uint64_t& h = g_fibers[g_current].wmma_hash;
  for (uint64_t v : {op, static_cast<uint64_t>(reinterpret_cast<uintptr_t>(ptr)), ldm, extra}) {
    h = (h ^ v) * 0x100000001b3ull + 0x9e3779b97f4a7c15ull;
  }
}

// Called right after each __shared__ declaration (the build helper inserts the call): the first thread of a block
// to get there fills the variable with the garbage byte.
inline void shared_declared(void* p, size_t bytes) {
  static std::map<void*, long> filled_in;  // variable -> serial of the block that last filled it
  long& last = filled_in[p];
  if (last != g_block_serial) {
    std::memset(p, g_poison, bytes);
    last = g_block_serial;
  }
}

// Makes thread t (linear index in the block) the current one: the one fail() names.
inline void set_current(int t) {
  g_current = t;
  g_thread = dim3(t % g_block_dim.x, (t / g_block_dim.x) % g_block_dim.y, t / (g_block_dim.x * g_block_dim.y));
}

inline void check_warps(int n, const char* when) {
  for (int t = 0; t < n; ++t) {
    const int lead = t - t % 32;
    if (g_fibers[t].wmma_hash != g_fibers[lead].wmma_hash) {
      set_current(t);
      fail("lane %d of warp %d made other wmma calls (or arguments) than lane 0 of its warp %s", t % 32, t / 32,
           when);
    }
  }
}

// Runs kernel(p) over grid x block, one block at a time.
template <typename Kernel, typename Params>
void launch(Kernel kernel, dim3 grid, dim3 block, const Params& p) {
  const int n = static_cast<int>(block.x * block.y * block.z);
  if (n <= 0 || n > 1024 || n % 32 != 0) fail("unsupported block size %d", n);
  if (grid.x == 0 || grid.y == 0 || grid.z == 0) fail("empty grid (%u,%u,%u)", grid.x, grid.y, grid.z);
  if (grid.y > 65535 || grid.z > 65535) fail("grid (%u,%u,%u) beyond CUDA's limits", grid.x, grid.y, grid.z);
  if (g_fibers.size() < static_cast<size_t>(n)) g_fibers.resize(n);
  for (auto& f : g_fibers) {
    if (f.stack.empty()) f.stack.resize(128 * 1024);
  }
  g_grid_dim = grid;
  g_block_dim = block;
  g_body = [&]() { kernel(p); };
  std::vector<int> perm(n);
  std::mt19937 rng(12345);
  for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        g_block = dim3(bx, by, bz);
        ++g_block_serial;
        for (int t = 0; t < n; ++t) {
          Fiber& f = g_fibers[t];
          getcontext(&f.ctx);
          f.ctx.uc_stack.ss_sp = f.stack.data();
          f.ctx.uc_stack.ss_size = f.stack.size();
          f.ctx.uc_link = nullptr;
          makecontext(&f.ctx, fiber_entry, 0);
          f.state = kRunning;
          f.wmma_hash = 0;
        }
        for (int round = 0;; ++round) {
          for (int u = 0; u < n; ++u) perm[u] = g_order == 1 ? n - 1 - u : u;
          if (g_order == 2) std::shuffle(perm.begin(), perm.end(), rng);
          for (int t : perm) {
            set_current(t);
            swapcontext(&g_sched, &g_fibers[t].ctx);
          }
          g_current = -1;
          int done = 0, waiting = -1, returned = -1;
          for (int t = 0; t < n; ++t) {
            const Fiber& f = g_fibers[t];
            if (f.state == kDone) {
              ++done;
              if (returned < 0) returned = t;
            } else if (waiting < 0) {
              waiting = t;
            } else if (f.barrier_line != g_fibers[waiting].barrier_line ||
                       std::strcmp(f.barrier_file, g_fibers[waiting].barrier_file) != 0) {
              set_current(t);
              fail("threads wait at different __syncthreads: %s:%d and, thread %d, %s:%d", f.barrier_file,
                   f.barrier_line, waiting, g_fibers[waiting].barrier_file, g_fibers[waiting].barrier_line);
            }
          }
          if (done == n) break;
          if (done != 0) {
            set_current(returned);
            fail("%d threads returned (this one first) while %d wait at __syncthreads (%s:%d)", done, n - done,
                 g_fibers[waiting].barrier_file, g_fibers[waiting].barrier_line);
          }
          check_warps(n, "before a barrier");
          for (int t = 0; t < n; ++t) g_fibers[t].state = kRunning;
        }
        check_warps(n, "by the end of the block");
        g_current = -1;
      }
}

}  // namespace emu

// CUDA's built-in variables and qualifiers. __shared__ variables become function statics (the build helper
// inserts emu::shared_declared after each declaration).
#define threadIdx emu::g_thread
#define blockIdx emu::g_block
#define blockDim emu::g_block_dim
#define gridDim emu::g_grid_dim
#define __syncthreads() emu::syncthreads(__FILE__, __LINE__)
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))

// Device intrinsics the kernels use, with the same IEEE semantics on the host.
// cvt.rni.s32.f32: round to nearest even, saturating, NaN -> 0.
inline int __float2int_rn(float x) {
  if (std::isnan(x)) return 0;
  const float r = std::nearbyint(x);
  return r >= 2147483648.0f ? 2147483647 : (r <= -2147483648.0f ? (-2147483647 - 1) : static_cast<int>(r));
}
inline float __int_as_float(int i) {
  float f;
  std::memcpy(&f, &i, sizeof f);
  return f;
}
inline int __float_as_int(float f) {
  int i;
  std::memcpy(&i, &f, sizeof i);
  return i;
}
inline double __longlong_as_double(long long i) {
  double d;
  std::memcpy(&d, &i, sizeof d);
  return d;
}
inline long long __double_as_longlong(double d) {
  long long i;
  std::memcpy(&i, &d, sizeof i);
  return i;
}
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fdiv_rn(float a, float b) { return a / b; }
