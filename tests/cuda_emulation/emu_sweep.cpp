// Harness of the CUDA emulation test: runs one step of the step kernels of csrc/cuda/lstm_step.cuh (the
// repository's file, rewritten by build_emulator.py only to poison __shared__ variables), launched as the step ops
// of csrc/cuda/lstm_sweep_2d.cu launch it, on buffers read from and written to files. The host around the steps is
// the package's own (melnet_fast/ops/lstm_sweep/gpu_host.py), driven by emulated_sweep.py.
//
//   emu_sweep fwd_step DTYPE B T F H ORDER POISON SAVE STEP DIR CODE...   DTYPE f32|bf16|f16, CODE 0..3 each
//   emu_sweep bwd_step DTYPE B T F H ORDER POISON STEP DIR CODE...
//   emu_sweep fwd_epilogue DTYPE B T F H ORDER POISON SAVE STEP DIR R CODE*R ROWS*R   (csrc/cuda/lstm_epilogue.cuh;
//   emu_sweep bwd_epilogue DTYPE B T F H ORDER POISON STEP DIR R CODE*R ROWS*R         ROWS: rows of recR.bin, 0: none)
//   emu_sweep selftest NAME ORDER POISON DIR                          see emu_selftest.h
//   emu_sweep convert DIR                                             the shim's float <-> 16-bit conversions
//
// Every global buffer sits between guard zones of 0xFF bytes (NaN in every float type, so a read past the end
// poisons the results); a write into a guard zone, or into an input, is reported. The buffers a step writes come
// in as the host left them (the host fills new buffers with NaN under the tests' poisoning), so an element no step
// writes stays NaN. Exit status 3 with "emu error: ..." on stderr on
// any failed check.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "emu_runtime.h"
// The rewritten copy of csrc/cuda/lstm_step.cuh in the build folder (its #line directive names the original).
#include "lstm_step.cuh"
// The second design's epilogues (no __shared__: included from csrc/ unchanged).
#include "cuda/lstm_epilogue.cuh"
#include "emu_buffer.h"
#include "emu_selftest.h"

namespace sc = melnet_fast::sweep_cuda;

namespace {

using emu::Buffer;  // emu_buffer.h: guard zones, NaN start, input-unchanged check

// The sizes and the geometry (csrc/sweep_geometry.h), as the step ops derive them.
struct Sweep {
  int64_t B, T, F, R, H, G, N, lines_max, steps;
  sc::Geometry geo;
};

Sweep make_sweep(int64_t B, int64_t T, int64_t F, int64_t H, const std::vector<int64_t>& codes) {
  Sweep s{};
  s.B = B, s.T = T, s.F = F, s.H = H, s.G = 4 * H, s.N = B * T * F;
  s.R = static_cast<int64_t>(codes.size());
  if (B < 1 || T < 1 || F < 1 || H < 1 || s.R < 1 || s.R > sc::kMaxDirections) emu::fail("bad sizes");
  for (int64_t code : codes) {
    if (!melnet_fast::sweep::valid_code(code)) emu::fail("direction code %ld", static_cast<long>(code));
  }
  s.geo = melnet_fast::sweep::make_geometry(B, T, F, H, codes.data(), static_cast<int>(s.R));
  s.lines_max = melnet_fast::sweep::max_lines(s.geo);
  s.steps = melnet_fast::sweep::sweep_steps(s.geo);
  return s;
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// One forward step: pre, w_hh, h0, c0 in; y, c_run and, with save, gates and cell in and out.
template <typename T>
void forward_step(const Sweep& sw, bool save, int64_t step, const std::string& dir) {
  const int64_t N = sw.N, R = sw.R, G = sw.G, H = sw.H;
  Buffer pre("pre", N * R * G * sizeof(T)), w_hh("w_hh", R * G * H * sizeof(T)), h0("h0", R * H * sizeof(T)),
      c0("c0", R * H * sizeof(T));
  for (Buffer* b : {&pre, &w_hh, &h0, &c0}) b->load(dir);
  Buffer y("y", N * R * H * sizeof(T)), c_run("c_run", R * sw.lines_max * H * sizeof(float)),
      gates("gates", save ? R * N * G * sizeof(T) : 0), cell("cell", save ? R * N * H * sizeof(float) : 0);
  for (Buffer* b : {&y, &c_run, &gates, &cell}) {
    if (b->bytes() > 0) b->load(dir, /*input=*/false);
  }
  sc::FwdParams<T> p;
  p.pre = pre.as<const T>();
  p.w_hh = w_hh.as<const T>();
  p.h0 = h0.as<const T>();
  p.c0 = c0.as<const T>();
  p.y = y.as<T>();
  p.c_run = c_run.as<float>();
  p.gates = save ? gates.as<T>() : nullptr;
  p.cell = save ? cell.as<float>() : nullptr;
  p.lines_max = sw.lines_max;
  p.geo = sw.geo;
  p.s = static_cast<int>(step);
  const int64_t tiles = sc::line_tiles(sw.geo, step);  // emu::launch reports an empty grid
  const dim3 grid(static_cast<unsigned>(tiles), static_cast<unsigned>(ceil_div(H, sc::kFwdUnits)),
                  static_cast<unsigned>(R));
  emu::launch(sc::lstm_fwd_step_kernel<T>, grid, dim3(sc::kThreads), p);
  for (Buffer* b : {&pre, &w_hh, &h0, &c0, &y, &c_run, &gates, &cell}) b->check();
  for (Buffer* b : {&y, &c_run, &gates, &cell}) {
    if (b->bytes() > 0) b->save(dir);
  }
}

// One backward step: grad_y, w_hh, gates, cell, c0 in; dgates and dc_run in and out.
template <typename T>
void backward_step(const Sweep& sw, int64_t step, const std::string& dir) {
  const int64_t N = sw.N, R = sw.R, G = sw.G, H = sw.H;
  Buffer grad_y("grad_y", N * R * H * sizeof(T)), w_hh("w_hh", R * G * H * sizeof(T)),
      gates("gates", R * N * G * sizeof(T)), cell("cell", R * N * H * sizeof(float)), c0("c0", R * H * sizeof(T));
  for (Buffer* b : {&grad_y, &w_hh, &gates, &cell, &c0}) b->load(dir);
  Buffer dgates("dgates", N * R * G * sizeof(T)), dc_run("dc_run", R * sw.lines_max * H * sizeof(float));
  for (Buffer* b : {&dgates, &dc_run}) b->load(dir, /*input=*/false);
  sc::BwdParams<T> p;
  p.grad_y = grad_y.as<const T>();
  p.w_hh = w_hh.as<const T>();
  p.gates = gates.as<const T>();
  p.cell = cell.as<const float>();
  p.c0 = c0.as<const T>();
  p.dgates = dgates.as<T>();
  p.dc_run = dc_run.as<float>();
  p.lines_max = sw.lines_max;
  p.geo = sw.geo;
  p.s = static_cast<int>(step);
  const int64_t tiles = sc::line_tiles(sw.geo, step);  // emu::launch reports an empty grid
  const dim3 grid(static_cast<unsigned>(tiles), static_cast<unsigned>(ceil_div(H, sc::kBwdUnits)),
                  static_cast<unsigned>(R));
  emu::launch(sc::lstm_bwd_step_kernel<T>, grid, dim3(sc::kThreads), p);
  for (Buffer* b : {&grad_y, &w_hh, &gates, &cell, &c0, &dgates, &dc_run}) b->check();
  for (Buffer* b : {&dgates, &dc_run}) b->save(dir);
}

// The recurrent products of an epilogue step, rec0.bin .. rec{R-1}.bin, float32 [rows[r], cols] (none when 0 rows),
// checked as the epilogue ops of lstm_sweep_2d.cu check them: one row per line of an active direction that reads
// one, or (one_row_ok) a single shared row.
struct Products {
  std::vector<std::unique_ptr<Buffer>> bufs;
  const float* ptrs[sc::kMaxDirections] = {};
  int64_t ld[sc::kMaxDirections] = {};
};

void load_products(Products& out, const Sweep& sw, const std::vector<int64_t>& rows, int64_t step, int64_t cols,
                   bool one_row_ok, bool backward, const std::string& dir) {
  for (int r = 0; r < sw.R; ++r) {
    const auto& d = sw.geo.dir[r];
    const bool reads = step < d.len && !(backward && step == d.len - 1);
    if (!reads) {
      if (rows[r] != 0) emu::fail("rec%d must be empty at step %ld", r, static_cast<long>(step));
      continue;
    }
    if (rows[r] != d.lines && !(one_row_ok && rows[r] == 1)) {
      emu::fail("rec%d has %ld rows, expected %ld", r, static_cast<long>(rows[r]), static_cast<long>(d.lines));
    }
    out.bufs.push_back(std::make_unique<Buffer>("rec" + std::to_string(r), rows[r] * cols * sizeof(float)));
    out.bufs.back()->load(dir);
    out.ptrs[r] = out.bufs.back()->as<const float>();
    out.ld[r] = rows[r] == 1 && d.lines != 1 ? 0 : cols;
  }
}

dim3 epilogue_grid(const Sweep& sw, int64_t step) {
  return dim3(static_cast<unsigned>(sc::epilogue_line_tiles(sw.geo, step)),
              static_cast<unsigned>(ceil_div(sw.H, sc::kEpilogueUnits)), static_cast<unsigned>(sw.R));
}

// One forward epilogue: rec*, pre, c0 in; y, c_run and, with save, gates and cell in and out.
template <typename T>
void forward_epilogue(const Sweep& sw, bool save, int64_t step, const std::vector<int64_t>& rows,
                      const std::string& dir) {
  const int64_t N = sw.N, R = sw.R, G = sw.G, H = sw.H;
  Products rec;
  load_products(rec, sw, rows, step, G, /*one_row_ok=*/step == 0, /*backward=*/false, dir);
  Buffer pre("pre", N * R * G * sizeof(T)), c0("c0", R * H * sizeof(T));
  for (Buffer* b : {&pre, &c0}) b->load(dir);
  Buffer y("y", N * R * H * sizeof(T)), c_run("c_run", R * sw.lines_max * H * sizeof(float)),
      gates("gates", save ? R * N * G * sizeof(T) : 0), cell("cell", save ? R * N * H * sizeof(float) : 0);
  for (Buffer* b : {&y, &c_run, &gates, &cell}) {
    if (b->bytes() > 0) b->load(dir, /*input=*/false);
  }
  sc::EpilogueFwdParams<T> p;
  for (int r = 0; r < sc::kMaxDirections; ++r) {
    p.rec[r] = rec.ptrs[r];
    p.rec_ld[r] = rec.ld[r];
  }
  p.pre = pre.as<const T>();
  p.c0 = c0.as<const T>();
  p.y = y.as<T>();
  p.c_run = c_run.as<float>();
  p.gates = save ? gates.as<T>() : nullptr;
  p.cell = save ? cell.as<float>() : nullptr;
  p.lines_max = sw.lines_max;
  p.geo = sw.geo;
  p.s = static_cast<int>(step);
  emu::launch(sc::lstm_fwd_epilogue_kernel<T>, epilogue_grid(sw, step), dim3(sc::kEpilogueThreads), p);
  for (auto& b : rec.bufs) b->check();
  for (Buffer* b : {&pre, &c0, &y, &c_run, &gates, &cell}) b->check();
  for (Buffer* b : {&y, &c_run, &gates, &cell}) {
    if (b->bytes() > 0) b->save(dir);
  }
}

// One backward epilogue: rec*, grad_y, gates, cell, c0 in; dgates and dc_run in and out.
template <typename T>
void backward_epilogue(const Sweep& sw, int64_t step, const std::vector<int64_t>& rows, const std::string& dir) {
  const int64_t N = sw.N, R = sw.R, G = sw.G, H = sw.H;
  Products rec;
  load_products(rec, sw, rows, step, H, /*one_row_ok=*/false, /*backward=*/true, dir);
  Buffer grad_y("grad_y", N * R * H * sizeof(T)), gates("gates", R * N * G * sizeof(T)),
      cell("cell", R * N * H * sizeof(float)), c0("c0", R * H * sizeof(T));
  for (Buffer* b : {&grad_y, &gates, &cell, &c0}) b->load(dir);
  Buffer dgates("dgates", N * R * G * sizeof(T)), dc_run("dc_run", R * sw.lines_max * H * sizeof(float));
  for (Buffer* b : {&dgates, &dc_run}) b->load(dir, /*input=*/false);
  sc::EpilogueBwdParams<T> p;
  for (int r = 0; r < sc::kMaxDirections; ++r) p.rec[r] = rec.ptrs[r];
  p.grad_y = grad_y.as<const T>();
  p.gates = gates.as<const T>();
  p.cell = cell.as<const float>();
  p.c0 = c0.as<const T>();
  p.dgates = dgates.as<T>();
  p.dc_run = dc_run.as<float>();
  p.lines_max = sw.lines_max;
  p.geo = sw.geo;
  p.s = static_cast<int>(step);
  emu::launch(sc::lstm_bwd_epilogue_kernel<T>, epilogue_grid(sw, step), dim3(sc::kEpilogueThreads), p);
  for (auto& b : rec.bufs) b->check();
  for (Buffer* b : {&grad_y, &gates, &cell, &c0, &dgates, &dc_run}) b->check();
  for (Buffer* b : {&dgates, &dc_run}) b->save(dir);
}

template <typename Fn>
void dispatch(const std::string& dtype, Fn&& fn) {
  if (dtype == "f32") {
    fn(float{});
  } else if (dtype == "bf16") {
    fn(__nv_bfloat16{});
  } else if (dtype == "f16") {
    fn(__half{});
  } else {
    emu::fail("unknown dtype %s", dtype.c_str());
  }
}

void run_selftest(const std::string& name, const std::string& dir) {
  const int mode = selftest::mode_of(name);
  Buffer out("out", (mode == selftest::kWmma ? 512 : 2 * selftest::kThreads) * sizeof(float));
  Buffer a("a", 256 * sizeof(__nv_bfloat16)), b("b", 256 * sizeof(__nv_bfloat16));
  if (mode == selftest::kWmma) {
    a.load(dir);
    b.load(dir);
  }
  selftest::Params p{out.as<float>(), a.as<const __nv_bfloat16>(), b.as<const __nv_bfloat16>(), mode};
  emu::launch(selftest::kernel, dim3(2), dim3(selftest::kThreads), p);
  for (Buffer* buf : {&out, &a, &b}) buf->check();
  out.save(dir);
}

// f32.bin (n floats) -> bf16.bin, f16.bin; bits16.bin (all 65536 patterns) -> from_bf16.bin, from_f16.bin.
void convert(const std::string& dir) {
  auto read = [&](const std::string& name, size_t elt) {
    std::vector<unsigned char> v;
    FILE* f = std::fopen((dir + "/" + name).c_str(), "rb");
    if (f == nullptr) emu::fail("cannot open %s", name.c_str());
    for (int c; (c = std::fgetc(f)) != EOF;) v.push_back(static_cast<unsigned char>(c));
    std::fclose(f);
    if (v.size() % elt != 0) emu::fail("%s: size %zu", name.c_str(), v.size());
    return v;
  };
  auto write = [&](const std::string& name, const void* data, size_t bytes) {
    FILE* f = std::fopen((dir + "/" + name).c_str(), "wb");
    if (f == nullptr || std::fwrite(data, 1, bytes, f) != bytes) emu::fail("cannot write %s", name.c_str());
    std::fclose(f);
  };
  const auto f32 = read("f32.bin", 4);
  const size_t n = f32.size() / 4;
  std::vector<uint16_t> bf(n), hf(n);
  for (size_t i = 0; i < n; ++i) {
    float x;
    std::memcpy(&x, &f32[4 * i], 4);
    bf[i] = __float2bfloat16(x).bits;
    hf[i] = __float2half(x).bits;
  }
  write("bf16.bin", bf.data(), 2 * n);
  write("f16.bin", hf.data(), 2 * n);
  const auto bits = read("bits16.bin", 2);
  const size_t m = bits.size() / 2;
  std::vector<float> from_bf(m), from_hf(m);
  for (size_t i = 0; i < m; ++i) {
    uint16_t u;
    std::memcpy(&u, &bits[2 * i], 2);
    from_bf[i] = __bfloat162float(__nv_bfloat16{u});
    from_hf[i] = __half2float(__half{u});
  }
  write("from_bf16.bin", from_bf.data(), 4 * m);
  write("from_f16.bin", from_hf.data(), 4 * m);
}

long arg_int(char** argv, int i) {
  char* end = nullptr;
  const long v = std::strtol(argv[i], &end, 10);
  if (end == argv[i] || *end != '\0') emu::fail("argument %d: not an integer: %s", i, argv[i]);
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "convert" && argc == 3) {
    convert(argv[2]);
    return 0;
  }
  if (mode == "selftest" && argc == 6) {
    emu::g_order = static_cast<int>(arg_int(argv, 3));
    emu::g_poison = static_cast<int>(arg_int(argv, 4));
    run_selftest(argv[2], argv[5]);
    return 0;
  }
  const bool fwd_epi = mode == "fwd_epilogue";
  if ((fwd_epi && argc >= 15) || (mode == "bwd_epilogue" && argc >= 14)) {
    const std::string dtype = argv[2];
    const int64_t B = arg_int(argv, 3), T = arg_int(argv, 4), F = arg_int(argv, 5), H = arg_int(argv, 6);
    emu::g_order = static_cast<int>(arg_int(argv, 7));
    emu::g_poison = static_cast<int>(arg_int(argv, 8));
    int i = 9;
    const bool save = fwd_epi ? arg_int(argv, i++) != 0 : true;
    const int64_t step = arg_int(argv, i++);
    const std::string dir = argv[i++];
    const int64_t R = arg_int(argv, i++);
    if (R < 1 || argc != i + 2 * R) emu::fail("expected %ld codes and %ld row counts", static_cast<long>(R),
                                              static_cast<long>(R));
    std::vector<int64_t> codes, rows;
    for (int r = 0; r < R; ++r) codes.push_back(arg_int(argv, i++));
    for (int r = 0; r < R; ++r) rows.push_back(arg_int(argv, i++));
    const Sweep sw = make_sweep(B, T, F, H, codes);
    if (step < 0 || step >= sw.steps) emu::fail("step %ld outside [0, %ld)", static_cast<long>(step),
                                                static_cast<long>(sw.steps));
    dispatch(dtype, [&](auto tag) {
      using T_ = decltype(tag);
      if (fwd_epi) {
        forward_epilogue<T_>(sw, save, step, rows, dir);
      } else {
        backward_epilogue<T_>(sw, step, rows, dir);
      }
    });
    return 0;
  }
  const bool fwd = mode == "fwd_step";
  if ((fwd && argc >= 13) || (mode == "bwd_step" && argc >= 12)) {
    const std::string dtype = argv[2];
    const int64_t B = arg_int(argv, 3), T = arg_int(argv, 4), F = arg_int(argv, 5), H = arg_int(argv, 6);
    emu::g_order = static_cast<int>(arg_int(argv, 7));
    emu::g_poison = static_cast<int>(arg_int(argv, 8));
    int i = 9;
    const bool save = fwd ? arg_int(argv, i++) != 0 : true;
    const int64_t step = arg_int(argv, i++);
    const std::string dir = argv[i++];
    std::vector<int64_t> codes;
    for (; i < argc; ++i) codes.push_back(arg_int(argv, i));
    const Sweep sw = make_sweep(B, T, F, H, codes);
    if (step < 0 || step >= sw.steps) emu::fail("step %ld outside [0, %ld)", static_cast<long>(step),
                                                static_cast<long>(sw.steps));
    dispatch(dtype, [&](auto tag) {
      using T_ = decltype(tag);
      if (fwd) {
        forward_step<T_>(sw, save, step, dir);
      } else {
        backward_step<T_>(sw, step, dir);
      }
    });
    return 0;
  }
  std::fprintf(stderr, "usage: see the head of emu_sweep.cpp\n");
  return 2;
}
