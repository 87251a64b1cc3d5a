// Harness of the maths test (test_scalar_math.py): evaluates the functions of csrc/scalar_math.h on the values of a
// file. Built twice by build_emulator.build_math: "device" with __CUDA_ARCH__ defined and the shim's intrinsics (the
// path the CUDA kernels compile), "host" without (the path of the C++ CPU kernels), which also runs the vector
// forms of csrc/vec_math.h that the CPU kernels use, at every vector width this machine runs.
//
//   emu_math eval FORM DTYPE IN OUT   FORM below; DTYPE f32|f64; IN, OUT raw arrays of DTYPE
//   emu_math lse DTYPE N IN OUT       IN rows of N values -> OUT one math::log_sum_exp per row
//   emu_math forms                    prints the FORMs this build and machine run, one a line
//   emu_math constants                prints "name value" lines (%.17g) of the header's constants
//
// FORMs: exp, sigmoid, tanh, log (scalar); host build only: vexp, vlog, vsig, vtan with 16 / 32 / 64 (simd::exp,
// log, sigmoid, tanh at 16, 32 or 64-byte vectors, each in the target build the kernels compile it in).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#ifdef __CUDA_ARCH__
#include "cuda_runtime.h"  // the shim: __fdiv_rn, __frcp_rn, __int_as_float, ...
#endif
#include "scalar_math.h"
#ifndef __CUDA_ARCH__
#include "vec_math.h"
#endif

namespace m = melnet_fast::math;

namespace {

[[noreturn]] void fail(const char* what, const std::string& arg) {
  std::fprintf(stderr, "emu_math: %s %s\n", what, arg.c_str());
  std::exit(3);
}

template <typename T>
std::vector<T> read(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) fail("cannot open", path);
  std::vector<T> v;
  T x;
  while (std::fread(&x, sizeof x, 1, f) == 1) v.push_back(x);
  std::fclose(f);
  return v;
}

template <typename T>
void write(const std::string& path, const std::vector<T>& v) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr || std::fwrite(v.data(), sizeof(T), v.size(), f) != v.size()) fail("cannot write", path);
  std::fclose(f);
}

#ifndef __CUDA_ARCH__
namespace mf = melnet_fast;

template <int B, typename T>
MF_INLINE void vec_apply(const std::string& form, std::vector<T>& x) {
  using V = mf::simd::Vec<T, B>;
  constexpr int W = mf::simd::lanes<V>();
  const size_t n = x.size();
  std::vector<T> pad((n + W - 1) / W * W, T(1));
  std::copy(x.begin(), x.end(), pad.begin());
  const std::string f = form.substr(0, 4);
  for (size_t j = 0; j < pad.size(); j += W) {
    const V v = mf::simd::load<V>(&pad[j]);
    mf::simd::store(&pad[j], f == "vexp"   ? mf::simd::exp(v)
                             : f == "vlog" ? mf::simd::log(v)
                             : f == "vsig" ? mf::simd::sigmoid(v)
                                           : mf::simd::tanh(v));
  }
  std::copy(pad.begin(), pad.begin() + n, x.begin());
}
template <typename T>
MELNET_FAST_TARGET_V4 void vec64(const std::string& form, std::vector<T>& x) {
  vec_apply<64>(form, x);
}
template <typename T>
MELNET_FAST_TARGET_V3 void vec32(const std::string& form, std::vector<T>& x) {
  vec_apply<32>(form, x);
}
template <typename T>
void vec16(const std::string& form, std::vector<T>& x) {
  vec_apply<16>(form, x);
}
#endif

template <typename T>
void eval(const std::string& form, std::vector<T>& x) {
  if (form == "exp" || form == "sigmoid" || form == "tanh" || form == "log") {
    for (T& v : x) {
      v = form == "exp" ? m::exp(v) : form == "sigmoid" ? m::sigmoid(v) : form == "tanh" ? m::tanh(v) : m::log(v);
    }
    return;
  }
#ifndef __CUDA_ARCH__
  if (form.size() > 2 && form[0] == 'v') {
    const int level = mf::simd::cpu_level();
    const std::string width = form.substr(4);
    if (width == "64" && level >= 4) return vec64(form, x);
    if (width == "32" && level >= 3) return vec32(form, x);
    if (width == "16") return vec16(form, x);
    fail("form not run on this machine:", form);
  }
#endif
  fail("unknown form", form);
}

template <typename T>
void run(int argc, char** argv) {
  const std::string cmd = argv[1];
  if (cmd == "eval") {
    std::vector<T> x = read<T>(argv[4]);
    eval(argv[2], x);
    write(argv[5], x);
  } else {
    const int n = std::atoi(argv[3]);
    const std::vector<T> x = read<T>(argv[4]);
    if (n < 1 || x.size() % n != 0) fail("bad row length", argv[3]);
    std::vector<T> out(x.size() / n);
    for (size_t r = 0; r < out.size(); ++r) {
      const T* row = &x[r * n];
      out[r] = m::log_sum_exp<T>(n, [&](int k) { return row[k]; });
    }
    write(argv[5], out);
  }
  (void)argc;
}

void print_forms() {
  for (const char* f : {"exp", "sigmoid", "tanh", "log"}) std::printf("%s\n", f);
#ifndef __CUDA_ARCH__
  const int level = mf::simd::cpu_level();
  for (const char* w : {"16", "32", "64"}) {
    if ((w[0] == '3' && level < 3) || (w[0] == '6' && level < 4)) continue;
    std::printf("vexp%s\nvlog%s\nvsig%s\nvtan%s\n", w, w, w, w);
  }
#endif
}

void print_constants() {
  using F = m::ExpConstants<float>;
  using D = m::ExpConstants<double>;
  using LF = m::LogConstants<float>;
  using LD = m::LogConstants<double>;
  const struct {
    const char* name;
    double value;
  } rows[] = {
      {"log_sqrt_2pi", m::kLogSqrt2Pi},
      {"f32.lo", F::lo},
      {"f32.hi", F::hi},
      {"f32.log2e", F::log2e},
      {"f32.ln2_hi", F::ln2_hi},
      {"f32.ln2_lo", F::ln2_lo},
      {"f32.round_magic", F::round_magic},
      {"f32.bias", F::bias},
      {"f32.mantissa_bits", F::mantissa_bits},
      {"f32.degree", F::degree},
      {"f32.tanh_one", F::tanh_one},
      {"f32.lg1", LF::lg1},
      {"f32.lg2", LF::lg2},
      {"f32.lg3", LF::lg3},
      {"f32.lg4", LF::lg4},
      {"f32.log_ln2_hi", LF::ln2_hi},
      {"f32.log_ln2_lo", LF::ln2_lo},
      {"f32.sqrt_half_bits", LF::sqrt_half_bits},
      {"f32.min_normal", LF::min_normal},
      {"f32.subnormal_scale", LF::subnormal_scale},
      {"f32.subnormal_scale_log2", LF::subnormal_scale_log2},
      {"f64.lo", D::lo},
      {"f64.hi", D::hi},
      {"f64.degree", D::degree},
      {"f64.tanh_one", D::tanh_one},
      {"f64.log2e", D::log2e},
      {"f64.ln2_hi", D::ln2_hi},
      {"f64.ln2_lo", D::ln2_lo},
      {"f64.log_ln2_hi", LD::ln2_hi},
      {"f64.log_ln2_lo", LD::ln2_lo},
  };
  for (const auto& r : rows) std::printf("%s %.17g\n", r.name, r.value);
}

}  // namespace

int main(int argc, char** argv) {
  const std::string cmd = argc > 1 ? argv[1] : "";
  if (cmd == "forms" && argc == 2) {
    print_forms();
  } else if (cmd == "constants" && argc == 2) {
    print_constants();
  } else if ((cmd == "eval" || cmd == "lse") && argc == 6) {
    const std::string dtype = cmd == "eval" ? argv[3] : argv[2];
    if (dtype == "f32") {
      run<float>(argc, argv);
    } else if (dtype == "f64") {
      run<double>(argc, argv);
    } else {
      fail("unknown dtype", dtype);
    }
  } else {
    std::fprintf(stderr, "usage: see the head of emu_math.cpp\n");
    return 2;
  }
  return 0;
}
