// The library path of large float32 products that the CPU benchmarks time as the machine's limit
// (melnet_fast._C.gemm_into): the one torch's own LSTM, the reference sweep, runs on. (The sweep's kernels
// compute every product in their own register tiles, small_gemm.h.)
//
// at::mm goes to MKL, whose kernels on this project's AMD development machine run the AVX2 path; oneDNN's
// matmul (what torch's own LSTM uses) runs AVX-512 there and was 1.6x faster on the sweep's per-step product
// ([256, 64] x [64, 256]: 55 vs 88 us) and 2.5x on the input projection ([16384, 64] x [64, 256]). torch exports
// it as at::native::mkldnn_matmul but ships no header, so it is looked up at run time: a torch without it (or
// with another signature) falls back to at::mm instead of failing to load the extension.
#pragma once
#include <ATen/ATen.h>
#include <dlfcn.h>

namespace melnet_fast {

// result = beta * result + alpha * (a @ b)
using DnnlMatmulFn = void (*)(const at::Tensor&, const at::Tensor&, const at::Tensor&, float, float);

inline DnnlMatmulFn dnnl_matmul() {
  static const DnnlMatmulFn fn = []() -> DnnlMatmulFn {
    if (!at::globalContext().userEnabledMkldnn()) return nullptr;
    return reinterpret_cast<DnnlMatmulFn>(dlsym(RTLD_DEFAULT, "_ZN2at6native13mkldnn_matmulERKNS_6TensorES3_S3_ff"));
  }();
  return fn;
}

// oneDNN's call costs about 15 us more than MKL's: below about a million multiply-adds MKL wins (measured:
// [16, 64] x [64, 256] 7.7 vs 16 us; [64, 64] x [64, 256] even).
constexpr int64_t kDnnlMinMacs = int64_t(1) << 20;

// out = a @ b; a [M, K], b [K, N] (plain or transposed strides), out [M, N] contiguous.
inline void gemm_into(const at::Tensor& a, const at::Tensor& b, const at::Tensor& out) {
  const bool big = a.size(0) * a.size(1) * b.size(1) >= kDnnlMinMacs;
  const DnnlMatmulFn fn = big && out.scalar_type() == at::kFloat ? dnnl_matmul() : nullptr;
  if (fn) {
    fn(a, b, out, 0.0f, 1.0f);
  } else {
    at::mm_out(const_cast<at::Tensor&>(out), a, b);
  }
}

}  // namespace melnet_fast
