// Harness of the sampler's emulation tests: runs sample_tier_kernel of csrc/cuda/sample_tier_kernel.cuh (DESIGN 0)
// or sample_tier_flags_kernel of csrc/cuda/sample_tier_flags_kernel.cuh (DESIGN 1, or 2: without the sweep rows in
// shared memory; the repository's files,
// rewritten by build_grid_emulator.py only to give every block its own shared memory) with all blocks of a small
// grid alive at once (emu_grid.h), after redoing the host side of csrc/cuda/sample_tier.cu: constant float32
// copies of the small weights, the weight address table, the 16-byte path condition, the time-LSTM state
// initialisation, chunks of rows, the dynamic shared memory (the head; the flags design's resident weight rows,
// at most RESIDENT layers of them, and its arrival counter zeroed before every launch). The grid size is an argument
// (on the GPU: SMs x occupancy, capped by MELNET_FAST_SAMPLER_MAX_BLOCKS).
//
//   emu_sample_tier DESIGN RESIDENT WDTYPE B T F D L K N_PRIME TAU X_MIN X_MAX BLOCKS ORDER POISON DIR
//   (WDTYPE f32|bf16|f16)
//
// DIR holds x_init, cz_t, cz_f, u, eps (float32) and w0 ... w{n-1} (the flat weight list in WDTYPE, contiguous;
// the folded list of csrc/sampler_layout.h for DESIGN 1);
// the harness writes x (float32 [B, T, F]) and log_density (float32 [B]) there. Every buffer is guarded
// (emu_buffer.h); the scratch starts as NaN, as with the extension's poison_outputs flag.
#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "emu_buffer.h"
#include "emu_grid.h"
// The rewritten copy of csrc/cuda/sample_tier_kernel.cuh in the build folder (its #line directive names the
// original).
#include "sample_tier_flags_kernel.cuh"

namespace sc = melnet_fast::sampler_cuda;

namespace {

namespace sl = melnet_fast::sampler_layout;

// Elements of weights[idx] (csrc/sampler_layout.h).
int64_t weight_numel(const sl::Layout& layout, int64_t idx, int64_t D, int64_t K) {
  const sl::Entry& e = layout.entry(idx);
  int64_t n = 1;
  for (int q = 0; q < e.rank; ++q) n *= sl::dim_size(e.shape[q], D, K);
  return n;
}

template <typename WT>
void run(bool flags_design, bool sweep_rows, int max_resident, int64_t B, int64_t T, int64_t F, int64_t D, int64_t L, int64_t K,
         int64_t n_prime, float tau, float x_min, float x_max, int blocks, const std::string& dir) {
  using emu::Buffer;
  const sl::Layout layout(L, flags_design);
  const int64_t n_weights = layout.size();
  std::vector<std::unique_ptr<Buffer>> w;
  for (int64_t idx = 0; idx < n_weights; ++idx) {
    w.push_back(std::make_unique<Buffer>("w" + std::to_string(idx), weight_numel(layout, idx, D, K) * sizeof(WT)));
    w.back()->load(dir);
  }
  auto wf = [&](int64_t idx, int64_t e) { return sc::to_float(w[idx]->as<const WT>()[e]); };
  Buffer x_init("x_init", B * T * F * 4), cz_t("cz_t", B * T * F * D * 4), cz_f("cz_f", B * T * F * D * 4),
      u("u", B * T * F * 4), eps("eps", B * T * F * 4);
  for (Buffer* b : {&x_init, &cz_t, &cz_f, &u, &eps}) b->load(dir);

  // Weight table and the vector-path condition, as sample_tier_cuda builds them.
  const int64_t vec_n = 16 / static_cast<int64_t>(sizeof(WT));
  bool vec = D % vec_n == 0;
  Buffer table("wtab", n_weights * sizeof(unsigned long long));
  for (int64_t idx = 0; idx < n_weights; ++idx) {
    const auto addr = reinterpret_cast<uintptr_t>(w[idx]->as<const WT>());
    vec = vec && addr % 16 == 0;
    table.as<unsigned long long>()[idx] = addr;
  }
  table.freeze();

  Buffer x("x", B * T * F * 4), log_density("log_density", B * 4);
  std::copy_n(x_init.as<const float>(), B * T * F, x.as<float>());

  const int64_t Bc = std::min<int64_t>(B, flags_design ? sc::flag_batch_rows(K) : sc::kMaxBatch);
  const sc::Scratch so(Bc, F, D, L);
  const sc::FlagScratch fo(so.total, Bc, F, D, L);
  Buffer scratch("scratch", (flags_design ? fo.total : so.total) * 4);  // 0xFF bytes: NaN, like the poison fill
  Buffer arrivals("arrivals", 3 * sizeof(unsigned));
  float* base = scratch.as<float>();
  for (int64_t d = 0; d < D; ++d) base[so.xfw + d] = wf(layout.input(sl::kXfW), d);
  for (int64_t l = 0; l < L; ++l) {
    for (int64_t r = 0; r < 2; ++r) {
      for (int64_t d = 0; d < D; ++d) {
        base[so.swh0 + (l * 2 + r) * D + d] = wf(layout.layer(l, sl::kTH0), (1 + r) * D + d);
        base[so.swc0 + (l * 2 + r) * D + d] = wf(layout.layer(l, sl::kTC0), (1 + r) * D + d);
      }
    }
    for (int64_t d = 0; d < D; ++d) {
      base[so.fh0 + l * D + d] = wf(layout.layer(l, sl::kFH0), d);
      base[so.fc0 + l * D + d] = wf(layout.layer(l, sl::kFC0), d);
    }
  }
  const int64_t head_rows = std::max<int64_t>(1, std::min<int64_t>(Bc, sc::kHeadSmemFloats / (3 * K)));
  size_t dyn_smem = static_cast<size_t>(head_rows * 3 * K) * sizeof(float);
  // The flags design: theta by parity, then the resident rows of up to max_resident layers.
  const int64_t units_per_block = (D + blocks - 1) / blocks;
  const int resident = static_cast<int>(std::min<int64_t>(L, max_resident));
  const int64_t sweep_units = sweep_rows ? sc::flag_sweep_units(D, blocks) : 0;
  if (flags_design) {
    dyn_smem = static_cast<size_t>(sc::flag_theta_floats(Bc, K) * 4 +
                                   resident * sc::flag_layer_bytes(units_per_block, D, sizeof(WT)) +
                                   sc::flag_sweep_bytes(sweep_units, D, sizeof(WT)));
  }

  for (int64_t b0 = 0; b0 < B; b0 += Bc) {
    const int64_t nb = std::min<int64_t>(Bc, B - b0);
    for (int64_t l = 0; l < L; ++l) {  // th parity 0 and tc, laid out with nb rows: h0 / c0 of direction 0
      for (int64_t e = 0; e < nb * F * D; ++e) {
        base[so.th + l * nb * F * D + e] = wf(layout.layer(l, sl::kTH0), e % D);
        base[so.tc + l * nb * F * D + e] = wf(layout.layer(l, sl::kTC0), e % D);
      }
    }
    sc::Params p;
    p.B = static_cast<int>(nb);
    p.T = static_cast<int>(T);
    p.F = static_cast<int>(F);
    p.D = static_cast<int>(D);
    p.L = static_cast<int>(L);
    p.K = static_cast<int>(K);
    p.n_prime = static_cast<int>(n_prime);
    p.head_rows = static_cast<int>(std::min(head_rows, nb));
    p.tau = tau;
    p.x_min = x_min;
    p.x_max = x_max;
    p.vec = vec;
    p.wtab = table.as<const unsigned long long>();
    p.cz_t = cz_t.as<const float>() + b0 * T * F * D;
    p.cz_f = cz_f.as<const float>() + b0 * T * F * D;
    p.u = u.as<const float>() + b0 * T * F;
    p.eps = eps.as<const float>() + b0 * T * F;
    p.x = x.as<float>() + b0 * T * F;
    p.log_density = log_density.as<float>() + b0;
    so.bind(p, base);
    if (flags_design) {
      sc::FlagParams q;
      q.p = p;
      fo.bind(q, base);
      for (int c = 0; c < 3; ++c) arrivals.as<unsigned>()[c] = 0;
      q.sweep_units = static_cast<int>(sweep_units);
      q.arrivals = arrivals.as<unsigned>();
      q.units_per_block = static_cast<int>(units_per_block);
      q.resident_layers = resident;
      q.theta_floats = static_cast<int>(sc::flag_theta_floats(nb, K));
      emu::grid::launch(sc::sample_tier_flags_kernel<WT>, dim3(blocks), dim3(sc::kThreads), dyn_smem, true, q);
    } else {
      emu::grid::launch(sc::sample_tier_kernel<WT>, dim3(blocks), dim3(sc::kThreads), dyn_smem, true, p);
    }
  }
  for (auto& b : w) b->check();
  for (Buffer* b : {&x_init, &cz_t, &cz_f, &u, &eps, &table, &x, &log_density, &scratch, &arrivals}) b->check();
  x.save(dir);
  log_density.save(dir);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 18) {
    std::fprintf(stderr, "usage: see the head of emu_sample_tier.cpp\n");
    return 2;
  }
  const long design = emu::arg_int(argv, 1);
  const bool flags_design = design >= 1, sweep_rows = design == 1;
  const int max_resident = static_cast<int>(emu::arg_int(argv, 2));
  argv += 2;
  const std::string wdtype = argv[1];
  const int64_t B = emu::arg_int(argv, 2), T = emu::arg_int(argv, 3), F = emu::arg_int(argv, 4),
                D = emu::arg_int(argv, 5), L = emu::arg_int(argv, 6), K = emu::arg_int(argv, 7),
                n_prime = emu::arg_int(argv, 8);
  const float tau = static_cast<float>(emu::arg_double(argv, 9));
  const float x_min = static_cast<float>(emu::arg_double(argv, 10));
  const float x_max = static_cast<float>(emu::arg_double(argv, 11));
  const int blocks = static_cast<int>(emu::arg_int(argv, 12));
  emu::g_order = static_cast<int>(emu::arg_int(argv, 13));
  emu::g_poison = static_cast<int>(emu::arg_int(argv, 14));
  const std::string dir = argv[15];
  if (B < 1 || T < 1 || F < 1 || D < 1 || L < 1 || K < 1 || 3 * K > sc::kHeadSmemFloats || n_prime < 0 ||
      n_prime > T || !(x_min < x_max) || blocks < 1) {
    emu::fail("bad sizes");
  }
  if (wdtype == "f32") {
    run<float>(flags_design, sweep_rows, max_resident, B, T, F, D, L, K, n_prime, tau, x_min, x_max, blocks, dir);
  } else if (wdtype == "bf16") {
    run<__nv_bfloat16>(flags_design, sweep_rows, max_resident, B, T, F, D, L, K, n_prime, tau, x_min, x_max, blocks, dir);
  } else if (wdtype == "f16") {
    run<__half>(flags_design, sweep_rows, max_resident, B, T, F, D, L, K, n_prime, tau, x_min, x_max, blocks, dir);
  } else {
    emu::fail("unknown weight dtype %s", wdtype.c_str());
  }
  return 0;
}
