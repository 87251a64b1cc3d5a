// Harness of the Gaussian-mixture NLL's emulation test: runs gmm_nll_kernel of csrc/cuda/gmm_nll_kernel.cuh (the
// repository's file, rewritten by build_grid_emulator.py only to give every block its own shared memory) with
// the launch of csrc/cuda/gmm_nll.cu (rows per tile, pitch, blocks = min(tiles, 16 per SM), dynamic shared memory)
// and all blocks alive at once (emu_grid.h), on buffers read from and written to files.
//
//   emu_gmm fwd|bwd DTYPE N K SMS ORDER POISON DIR       DTYPE f32|f64|bf16|f16, SMS: the multiprocessor count
//
// DIR/layout.txt holds, for x, grad, mu, log_sigma, logit (in that order), "SPAN ROW_STRIDE COMPONENT_STRIDE":
// the elements of DIR/NAME.bin (the storage the strided view spans, from its first element) and the view's
// strides, as the host code passes them after its reshape to [N] / [N, K] (grad only for bwd; the component
// stride of x and grad is ignored). Outputs: out [N] (nll or d/dx) and, for bwd, gmu, gls, glogit [N, K].
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <string>

#include "cuda_bf16.h"
#include "cuda_fp16.h"
#include "emu_buffer.h"
#include "emu_grid.h"
// The rewritten copy of csrc/cuda/gmm_nll_kernel.cuh in the build folder (its #line directive names the original).
#include "gmm_nll_kernel.cuh"

namespace gc = melnet_fast::gmm_cuda;

namespace {

// The 16-bit storage types as the extension's host code instantiates the kernel with them (c10::Half,
// c10::BFloat16): constructible from float (round to nearest even) and convertible to float.
struct Half {
  __half v;
  Half() = default;
  Half(float f) : v(__float2half(f)) {}  // implicit, as c10's
  operator float() const { return __half2float(v); }
};
struct BFloat16 {
  __nv_bfloat16 v;
  BFloat16() = default;
  BFloat16(float f) : v(__float2bfloat16(f)) {}  // implicit, as c10's
  operator float() const { return __bfloat162float(v); }
};

struct View {
  int64_t span, sr, sk;
};

template <typename T, bool kBwd>
void run(int64_t N, int K, int sms, const std::string& dir) {
  using emu::Buffer;
  View v[5];  // x, grad, mu, log_sigma, logit
  FILE* f = std::fopen((dir + "/layout.txt").c_str(), "r");
  if (f == nullptr) emu::fail("cannot open layout.txt");
  for (View& w : v) {
    if (std::fscanf(f, "%ld %ld %ld", &w.span, &w.sr, &w.sk) != 3) emu::fail("bad layout.txt");
  }
  std::fclose(f);
  const char* names[5] = {"x", "grad", "mu", "log_sigma", "logit"};
  Buffer x(names[0], v[0].span * sizeof(T)), grad(names[1], kBwd ? v[1].span * sizeof(T) : 0),
      mu(names[2], v[2].span * sizeof(T)), ls(names[3], v[3].span * sizeof(T)), lp(names[4], v[4].span * sizeof(T));
  for (Buffer* b : {&x, &mu, &ls, &lp}) b->load(dir);
  if (kBwd) grad.load(dir);
  Buffer out("out", N * sizeof(T)), gmu("gmu", kBwd ? N * K * sizeof(T) : 0), gls("gls", kBwd ? N * K * sizeof(T) : 0),
      glogit("glogit", kBwd ? N * K * sizeof(T) : 0);

  // fill_strides and launch of gmm_nll.cu
  gc::GmmArgs<T> a{};
  a.x = x.as<const T>();
  a.mu = mu.as<const T>();
  a.ls = ls.as<const T>();
  a.logit = lp.as<const T>();
  a.sx = v[0].sr;
  a.smu_r = v[2].sr;
  a.smu_k = v[2].sk;
  a.sls_r = v[3].sr;
  a.sls_k = v[3].sk;
  a.slp_r = v[4].sr;
  a.slp_k = v[4].sk;
  a.N = N;
  a.K = K;
  a.R = gc::rows_per_tile(K, sizeof(gc::Math<T>));
  a.pitch = gc::pitch_of(K);
  if (a.R < 1) emu::fail("K = %d does not fit the kernel's shared memory", K);
  a.out = out.as<T>();
  if (kBwd) {
    a.grad = grad.as<const T>();
    a.sg = v[1].sr;
    a.gmu = gmu.as<T>();
    a.gls = gls.as<T>();
    a.glogit = glogit.as<T>();
  }
  const int64_t tiles = (a.N + a.R - 1) / a.R;
  const int blocks = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(tiles, int64_t{sms} * 16)));
  const size_t smem = static_cast<size_t>((kBwd ? 4 : 3) * a.R * a.pitch) * sizeof(gc::Math<T>);
  emu::grid::launch(gc::gmm_nll_kernel<T, kBwd>, dim3(blocks), dim3(gc::kThreads), smem, false, a);

  for (Buffer* b : {&x, &grad, &mu, &ls, &lp, &out, &gmu, &gls, &glogit}) b->check();
  out.save(dir);
  if (kBwd) {
    for (Buffer* b : {&gmu, &gls, &glogit}) b->save(dir);
  }
}

template <typename T>
void run_mode(bool bwd, int64_t N, int K, int sms, const std::string& dir) {
  if (bwd) {
    run<T, true>(N, K, sms, dir);
  } else {
    run<T, false>(N, K, sms, dir);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (argc != 9 || (mode != "fwd" && mode != "bwd")) {
    std::fprintf(stderr, "usage: see the head of emu_gmm.cpp\n");
    return 2;
  }
  const std::string dtype = argv[2];
  const int64_t N = emu::arg_int(argv, 3);
  const int K = static_cast<int>(emu::arg_int(argv, 4));
  const int sms = static_cast<int>(emu::arg_int(argv, 5));
  emu::g_order = static_cast<int>(emu::arg_int(argv, 6));
  emu::g_poison = static_cast<int>(emu::arg_int(argv, 7));
  const std::string dir = argv[8];
  if (N < 1 || K < 1 || sms < 1) emu::fail("bad sizes");
  const bool bwd = mode == "bwd";
  if (dtype == "f32") {
    run_mode<float>(bwd, N, K, sms, dir);
  } else if (dtype == "f64") {
    run_mode<double>(bwd, N, K, sms, dir);
  } else if (dtype == "bf16") {
    run_mode<BFloat16>(bwd, N, K, sms, dir);
  } else if (dtype == "f16") {
    run_mode<Half>(bwd, N, K, sms, dir);
  } else {
    emu::fail("unknown dtype %s", dtype.c_str());
  }
  return 0;
}
