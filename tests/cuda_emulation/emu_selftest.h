// Small kernels that exercise the emulator's own checks (test_emulator_self_checks): each breaks one CUDA rule
// the runtime must report, or computes something known. Included by emu_sweep.cpp after emu_runtime.h.
#pragma once
#include <mma.h>

#include <cstring>
#include <string>

namespace selftest {

constexpr int kThreads = 64;  // two warps

struct Params {
  float* out;                   // [2 blocks][kThreads], or the wmma results [2][16][16]
  const __nv_bfloat16* a;       // wmma: [16][16] row-major
  const __nv_bfloat16* b;       // wmma: [16][16] row-major
  int mode;
};

enum Mode { kEarlyReturn, kTwoSites, kWmmaMisaligned, kWmmaDivergent, kGuardWrite, kSmemGarbage, kRace, kWmma };

__global__ void kernel(const Params p) {
  __shared__ float s[kThreads];
  __shared__ __align__(128) __nv_bfloat16 tile[2][16][24];
  emu::shared_declared(s, sizeof s);  // what the build helper inserts after the kernels' declarations
  emu::shared_declared(tile, sizeof tile);
  const int t = threadIdx.x;
  switch (p.mode) {
    case kEarlyReturn:  // half the block leaves before a barrier the other half waits at
      if (t >= kThreads / 2) return;
      __syncthreads();
      break;
    case kTwoSites:  // a barrier inside divergent code: odd and even threads wait at different call sites
      if (t % 2) {
        __syncthreads();
      } else {
        __syncthreads();
      }
      break;
    case kWmmaMisaligned: {  // a fragment pointer 2 bytes off a 32-byte boundary
      nvcuda::wmma::fragment<nvcuda::wmma::matrix_a, 16, 16, 16, __nv_bfloat16, nvcuda::wmma::row_major> f;
      nvcuda::wmma::load_matrix_sync(f, &tile[0][0][1], 24);
      break;
    }
    case kWmmaDivergent:  // a warp-collective call made by half a warp
      if (t % 32 < 16) {
        nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 16, float> f;
        nvcuda::wmma::fill_fragment(f, 0.0f);
      }
      __syncthreads();
      break;
    case kGuardWrite:  // one element past the end of out (2 * kThreads floats)
      if (t == 0 && blockIdx.x == 1) p.out[2 * kThreads] = 1.0f;
      break;
    case kSmemGarbage:  // reads shared memory before any write: both blocks must see the garbage byte
      p.out[blockIdx.x * kThreads + t] = s[t];
      __syncthreads();
      s[t] = 1.0f;
      break;
    case kRace:  // reads a neighbour's slot without a barrier in between: the result depends on thread order
      s[t] = static_cast<float>(t);
      p.out[blockIdx.x * kThreads + t] = s[(t + 1) % kThreads];
      break;
    case kWmma: {  // out[0] = A B (row-major loads, row-major store); out[1] = (A^T B^T)^T via col-major ones
      using namespace nvcuda;
      for (int i = t; i < 2 * 16 * 16; i += kThreads) {
        const int m = i / 256, r = i / 16 % 16, c = i % 16;
        tile[m][r][c] = (m == 0 ? p.a : p.b)[r * 16 + c];
      }
      __syncthreads();
      if (blockIdx.x == 0 && t < 32) {  // one whole warp
        wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> ar;
        wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::col_major> ac;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> br;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> bc;
        wmma::fragment<wmma::accumulator, 16, 16, 16, float> c0, c1;
        wmma::load_matrix_sync(ar, &tile[0][0][0], 24);
        wmma::load_matrix_sync(ac, &tile[0][0][0], 24);
        wmma::load_matrix_sync(br, &tile[1][0][0], 24);
        wmma::load_matrix_sync(bc, &tile[1][0][0], 24);
        wmma::fill_fragment(c0, 0.0f);
        wmma::fill_fragment(c1, 0.0f);
        wmma::mma_sync(c0, ar, br, c0);
        wmma::mma_sync(c1, ac, bc, c1);
        wmma::store_matrix_sync(p.out, c0, 16, wmma::mem_row_major);
        wmma::store_matrix_sync(p.out + 256, c1, 16, wmma::mem_col_major);
      }
      break;
    }
  }
}

inline int mode_of(const std::string& name) {
  const char* names[] = {"early_return", "two_sites", "wmma_misaligned", "wmma_divergent",
                         "guard_write",  "smem_garbage", "race",          "wmma"};
  for (int i = 0; i < 8; ++i) {
    if (name == names[i]) return i;
  }
  emu::fail("unknown self-test %s", name.c_str());
}

}  // namespace selftest
