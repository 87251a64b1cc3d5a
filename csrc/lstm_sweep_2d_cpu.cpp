// Fused CPU 2D LSTM sweep, forward and backward.
//
// The lines (independent sequences) of every direction are split into blocks, and each thread takes whole
// blocks through all of their steps (sweep_lines_cpu.h): lines never depend on one another, so there is no
// barrier per step, and both cores stay busy with all directions at once. Inside a block each step is one
// register-tiled product per weight matrix over the block's rows, the gate maths fused after it. In backward each
// block also computes the input gradient of its lines and sums its share of every weight and bias gradient while
// its gate gradients are in cache, so those are never written to memory.
//
// The kernels are compiled for AVX-512, AVX2 + FMA and the x86-64 baseline and picked at run time from the
// CPU's features (simd::cpu_level(); MELNET_FAST_CPU_LEVEL caps it, to test the narrower ones).
//
// Layout: x [B, T, F, I] is read as N = B*T*F rows; a direction along time has B*F lines (one per (b, f)),
// along frequency B*T lines (one per (b, t)). Line k at step s maps to the flat position n = flat(b, t, f).
//
// Per-line states (the spans of the segmented recompute, melnet_fast/ops/lstm_sweep/recompute.py): with one
// direction, h0 and c0 may be [1, lines, H], every line's own initial state; backward then returns dh0 and dc0 per
// line and takes dh_last, dc_last [1, lines, H], the gradients reaching each line's last h and c from beyond.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "common.h"
#include "sweep_lines_cpu.h"
#include "vec_math.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <optional>
#include <vector>

namespace melnet_fast {
namespace {

Direction make_direction(int64_t code, int64_t B, int64_t T, int64_t F) {
  TORCH_CHECK(sweep::valid_code(code), "lstm_sweep_2d: direction code must be 0..3, got ", code);
  return sweep::make_dir(code, B, T, F);
}

// The line kernels of each target, and the one this CPU runs.
#define MELNET_FAST_LINES(ATTR, SUFFIX, VB)                                                   \
  template <typename T>                                                                       \
  ATTR void fwd_lines_##SUFFIX(const FwdLines<T>& a, const LineBlock& b, LineScratch<T>& s) { \
    fwd_lines<VB>(a, b, s);                                                                   \
  }                                                                                           \
  template <typename T>                                                                       \
  ATTR void bwd_lines_##SUFFIX(const BwdLines<T>& a, const LineBlock& b, LineScratch<T>& s) { \
    bwd_lines<VB>(a, b, s);                                                                   \
  }
MELNET_FAST_LINES(MELNET_FAST_TARGET_V4, v4, 64)
MELNET_FAST_LINES(MELNET_FAST_TARGET_V3, v3, 32)
MELNET_FAST_LINES(, v1, 16)
#undef MELNET_FAST_LINES

template <typename T>
void run_lines(const FwdLines<T>& a, const LineBlock& b, LineScratch<T>& s) {
  simd::for_level(&fwd_lines_v4<T>, &fwd_lines_v3<T>, &fwd_lines_v1<T>)(a, b, s);
}
template <typename T>
void run_lines(const BwdLines<T>& a, const LineBlock& b, LineScratch<T>& s) {
  simd::for_level(&bwd_lines_v4<T>, &bwd_lines_v3<T>, &bwd_lines_v1<T>)(a, b, s);
}

// The time of a block of `lines` lines of direction d in a cost model, in units of one row tile's step: every step runs
// the block's row tiles (a part-filled tile costs as much as a full one) and streams the weights from L2 once more,
// which costs about half a tile (blocks of one tile ran 1.4-1.7x slower per line than blocks of four).
constexpr double kBlockStepCost = 0.5;

double block_cost(const Direction& d, int64_t lines) {
  constexpr int64_t tile = RowsTile<64>::MR;
  return static_cast<double>(d.len) * (static_cast<double>((lines + tile - 1) / tile) + kBlockStepCost);
}

// The lines of every direction in blocks of `size` lines (the last of a direction may hold fewer), costliest first.
std::vector<LineBlock> blocks_of_size(const std::vector<Direction>& dirs, int64_t size) {
  std::vector<LineBlock> blocks;
  for (int64_t r = 0; r < static_cast<int64_t>(dirs.size()); ++r)
    for (int64_t k = 0; k < dirs[r].lines; k += size) blocks.push_back({r, k, std::min(k + size, dirs[r].lines), 0});
  std::stable_sort(blocks.begin(), blocks.end(), [&](const LineBlock& a, const LineBlock& b) {
    return block_cost(dirs[a.r], a.k1 - a.k0) > block_cost(dirs[b.r], b.k1 - b.k0);
  });
  for (size_t i = 0; i < blocks.size(); ++i) blocks[i].id = static_cast<int64_t>(i);
  return blocks;
}

// When the last thread finishes, in the cost model, if the threads take the blocks in order as run_blocks does.
double makespan(const std::vector<LineBlock>& blocks, const std::vector<Direction>& dirs, int64_t threads) {
  std::vector<double> free_at(static_cast<size_t>(std::max<int64_t>(threads, 1)), 0.0);
  for (const auto& b : blocks) *std::min_element(free_at.begin(), free_at.end()) += block_cost(dirs[b.r], b.k1 - b.k0);
  return *std::max_element(free_at.begin(), free_at.end());
}

// Blocks of lines of every direction, in the order the threads take them. Larger blocks run faster per line (the
// weights stream from L2 once per block and step) but share out less evenly between the threads: of the block sizes
// in whole row tiles up to kMaxBlock, the one that finishes first in the cost model (on ties the smaller, for threads
// that run at different speeds).
std::vector<LineBlock> line_blocks(const std::vector<Direction>& dirs) {
  constexpr int64_t tile = RowsTile<64>::MR;
  static_assert(RowsTile<32>::MR == tile && RowsTile<16>::MR == tile && kMaxBlock % tile == 0);
  const int64_t threads = at::get_num_threads();
  std::vector<LineBlock> best;
  double best_time = std::numeric_limits<double>::infinity();
  for (int64_t size = tile; size <= kMaxBlock; size += tile) {
    auto blocks = blocks_of_size(dirs, size);
    const double t = makespan(blocks, dirs, threads);
    if (t < best_time * (1.0 - 1e-9)) {
      best = std::move(blocks);
      best_time = t;
    }
  }
  return best;
}

// Runs every block, each thread taking the next one from a shared counter until none is left.
template <typename T, typename Args>
void run_blocks(const Args& args, const std::vector<LineBlock>& blocks, int64_t H) {
  std::atomic<size_t> next{0};
  const int64_t threads = std::min<int64_t>(at::get_num_threads(), static_cast<int64_t>(blocks.size()));
  at::parallel_for(0, threads, 1, [&](int64_t, int64_t) {
    LineScratch<T> scratch(H);
    for (size_t i = next.fetch_add(1); i < blocks.size(); i = next.fetch_add(1)) run_lines(args, blocks[i], scratch);
  });
}

// Buffers of tens of megabytes (the saved gates and cell states, backward's per-direction input gradients) come from a
// small per-thread pool instead of fresh allocations: glibc maps anything above 32 MiB afresh on every call, and the
// page faults of zeroing it were a quarter of the backward and a third of the forward at the benchmark size.
// A pooled buffer is handed out again only once nothing else holds its storage (the autograd graph that saved
// it, or a caller), so reuse is never visible; the pool keeps at most kPoolBuffers buffers of kPoolMaxBytes.
constexpr int64_t kPoolMinBytes = int64_t(1) << 20;
constexpr int64_t kPoolMaxBytes = int64_t(256) << 20;
constexpr size_t kPoolBuffers = 4;

at::Tensor pooled(at::IntArrayRef sizes, const at::TensorOptions& options) {
  thread_local std::vector<at::Tensor> pool;
  int64_t numel = 1;
  for (int64_t s : sizes) numel *= s;
  const int64_t bytes = numel * static_cast<int64_t>(options.dtype().itemsize());
  if (bytes < kPoolMinBytes || bytes > kPoolMaxBytes) return new_output(sizes, options);
  at::Tensor buffer;
  for (auto& t : pool) {
    if (t.dtype() == options.dtype() && t.numel() >= numel && t.storage().use_count() == 1) {
      buffer = t;
      break;
    }
  }
  if (!buffer.defined()) {
    buffer = at::empty({numel}, options);
    if (pool.size() >= kPoolBuffers) pool.erase(pool.begin());
    pool.push_back(buffer);
  }
  auto t = buffer.narrow(0, 0, numel).view(sizes);
  if (poison_outputs_flag().load(std::memory_order_relaxed)) t.fill_(std::numeric_limits<double>::quiet_NaN());
  return t;
}

// Whether an initial state (h0 or c0) gives every line its own, [1, lines, H] with one direction, rather than one
// per direction, [R, H].
bool per_line_states(const at::Tensor& state, int64_t R, int64_t lines, const char* name) {
  if (state.dim() == 2) return false;
  TORCH_CHECK(state.dim() == 3 && R == 1 && state.size(0) == 1 && state.size(1) == lines, "lstm_sweep_2d: per-line ",
              name, " must be [1, lines, H] with one direction (", lines, " lines), got ", state.sizes(), " with ", R,
              " directions");
  return true;
}

// Where each direction's lines start in a buffer of the lines of all directions: first[r], and first[R] in all.
std::vector<int64_t> first_lines(const std::vector<Direction>& dirs) {
  std::vector<int64_t> first(dirs.size() + 1, 0);
  for (size_t r = 0; r < dirs.size(); ++r) first[r + 1] = first[r] + dirs[r].lines;
  return first;
}

// out [first[R], H] = each line's initial state: state[r] for every line of direction r ([R, H]), or the line's own
// row (per line, [lines, H] rows of one direction).
template <typename T>
void fill_line_states(const T* state, bool per_line, const std::vector<int64_t>& first, int64_t H, T* out) {
  for (size_t r = 0; r + 1 < first.size(); ++r)
    for (int64_t k = 0; k < first[r + 1] - first[r]; ++k) {
      const T* src = per_line ? state + k * H : state + r * H;
      std::copy(src, src + H, out + (first[r] + k) * H);
    }
}

// dst [R, size] = the sum of the blocks' shares [blocks, size] of each direction, added in block order, so the result
// does not depend on which thread ran which block. The first block of a direction writes its share, so dst needs no
// zeroing first (every direction has at least one block).
template <typename T>
void sum_block_shares(const T* shares, const std::vector<LineBlock>& blocks, int64_t R, int64_t size, T* dst) {
  at::parallel_for(0, size, 4096, [&](int64_t lo, int64_t hi) {
    std::vector<char> written(R, 0);
    for (const auto& b : blocks) {
      const T* src = shares + b.id * size;
      T* out = dst + b.r * size;
      if (written[b.r]) {
        for (int64_t j = lo; j < hi; ++j) out[j] += src[j];
      } else {
        std::copy(src + lo, src + hi, out + lo);
        written[b.r] = 1;
      }
    }
  });
}

// out [n] = the sum over directions of parts [R, n] (the input gradient's share of each direction), in direction order.
template <typename T>
void sum_directions(const T* parts, int64_t R, int64_t n, T* out) {
  at::parallel_for(0, n, 16384, [&](int64_t lo, int64_t hi) {
    std::copy(parts + lo, parts + hi, out + lo);
    for (int64_t r = 1; r < R; ++r) {
      const T* src = parts + r * n;
      for (int64_t j = lo; j < hi; ++j) out[j] += src[j];
    }
  });
}

// out [R, K, G] = w [R, G, K] transposed per direction (w contiguous): the weights in the layout of the per-step
// products, by tiles that stay in L1: contiguous() of the transposed view (a strided copy) cost up to 4% of the forward
// at the model's sizes.
template <typename T>
void transpose_weights(const T* w, int64_t R, int64_t G, int64_t K, T* out) {
  constexpr int64_t kTile = 16;
  for (int64_t r = 0; r < R; ++r) {
    const T* src = w + r * G * K;
    T* dst = out + r * K * G;
    for (int64_t g0 = 0; g0 < G; g0 += kTile)
      for (int64_t k0 = 0; k0 < K; k0 += kTile) {
        const int64_t g1 = std::min(g0 + kTile, G), k1 = std::min(k0 + kTile, K);
        for (int64_t k = k0; k < k1; ++k)
          for (int64_t g = g0; g < g1; ++g) dst[k * G + g] = src[g * K + k];
      }
  }
}

// dst [R, H] = the sum over each direction's lines of state [first[R], H].
template <typename T>
void sum_line_states(const T* state, const std::vector<int64_t>& first, int64_t H, T* dst) {
  for (size_t r = 0; r + 1 < first.size(); ++r) {
    T* out = dst + r * H;
    std::fill(out, out + H, T(0));
    for (int64_t k = first[r]; k < first[r + 1]; ++k)
      for (int64_t j = 0; j < H; ++j) out[j] += state[k * H + j];
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> lstm_sweep_2d_fwd_cpu(const at::Tensor& x_in, const at::Tensor& w_ih_in,
                                                                     const at::Tensor& w_hh_in,
                                                                     const at::Tensor& bias_in, const at::Tensor& h0_in,
                                                                     const at::Tensor& c0_in,
                                                                     at::IntArrayRef directions, bool save) {
  const auto x = x_in.contiguous();
  const auto bias = bias_in.contiguous();
  const int64_t B = x.size(0), T = x.size(1), F = x.size(2), I = x.size(3);
  const int64_t R = w_hh_in.size(0), H = w_hh_in.size(2), G = 4 * H;
  const int64_t N = B * T * F;
  TORCH_CHECK(static_cast<int64_t>(directions.size()) == R, "lstm_sweep_2d: ", R, " weight sets but ",
              directions.size(), " directions");
  TORCH_CHECK(R >= 1, "lstm_sweep_2d: needs at least one direction");

  auto y = new_output({B, T, F, R * H}, x.options());
  // Backward needs the activated gates and the cell states; a forward without gradient keeps neither (its gate
  // rows live only in each thread's block scratch).
  auto gates = save ? pooled({R, B, T, F, G}, x.options()) : at::empty({0}, x.options());
  auto cell = save ? pooled({R, B, T, F, H}, x.options()) : at::empty({0}, x.options());
  if (N == 0 || H == 0) return {y, gates, cell};

  // The weights packed once, in the layout of the per-step products: [R, I, 4H] and [R, H, 4H].
  const auto w_ih = w_ih_in.contiguous(), w_hh = w_hh_in.contiguous();
  auto w_ih_t = at::empty({R, I, G}, x.options()), w_hh_t = at::empty({R, H, G}, x.options());
  std::vector<Direction> dirs;
  for (int64_t r = 0; r < R; ++r) dirs.push_back(make_direction(directions[r], B, T, F));
  const bool h0_per_line = per_line_states(h0_in, R, dirs[0].lines, "h0");
  const bool c0_per_line = per_line_states(c0_in, R, dirs[0].lines, "c0");
  const auto h0 = h0_in.contiguous(), c0 = c0_in.contiguous();
  // The running states of the lines of all directions, direction r's from line first[r]: the kernels update them
  // in place, so they start as copies of h0 / c0, never the caller's tensors.
  const auto first = first_lines(dirs);
  auto h_run = at::empty({first[R], H}, x.options()), c_run = at::empty({first[R], H}, x.options());
  const auto blocks = line_blocks(dirs);

  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lstm_sweep_2d_fwd_cpu", [&] {
    transpose_weights(w_ih.data_ptr<scalar_t>(), R, G, I, w_ih_t.data_ptr<scalar_t>());
    transpose_weights(w_hh.data_ptr<scalar_t>(), R, G, H, w_hh_t.data_ptr<scalar_t>());
    fill_line_states(h0.data_ptr<scalar_t>(), h0_per_line, first, H, h_run.data_ptr<scalar_t>());
    fill_line_states(c0.data_ptr<scalar_t>(), c0_per_line, first, H, c_run.data_ptr<scalar_t>());
    std::vector<scalar_t*> hp(R), cp(R);
    for (int64_t r = 0; r < R; ++r) {
      hp[r] = h_run.data_ptr<scalar_t>() + first[r] * H;
      cp[r] = c_run.data_ptr<scalar_t>() + first[r] * H;
    }
    const FwdLines<scalar_t> args{dirs.data(),
                                  T,
                                  F,
                                  R,
                                  I,
                                  H,
                                  N,
                                  x.data_ptr<scalar_t>(),
                                  w_ih_t.data_ptr<scalar_t>(),
                                  w_hh_t.data_ptr<scalar_t>(),
                                  bias.data_ptr<scalar_t>(),
                                  y.data_ptr<scalar_t>(),
                                  save ? gates.data_ptr<scalar_t>() : nullptr,
                                  save ? cell.data_ptr<scalar_t>() : nullptr,
                                  hp.data(),
                                  cp.data()};
    run_blocks<scalar_t>(args, blocks, H);
  });
  return {y, gates, cell};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> lstm_sweep_2d_bwd_cpu(
    const at::Tensor& grad_y_in, const at::Tensor& x_in, const at::Tensor& w_ih_in, const at::Tensor& w_hh_in,
    const at::Tensor& h0_in, const at::Tensor& c0_in, const at::Tensor& y_in, const at::Tensor& gates_in,
    const at::Tensor& cell_in, at::IntArrayRef directions, const std::optional<at::Tensor>& dh_last,
    const std::optional<at::Tensor>& dc_last) {
  const auto grad_y = grad_y_in.contiguous();
  const auto x = x_in.contiguous();
  const auto w_ih = w_ih_in.contiguous();
  const auto w_hh = w_hh_in.contiguous();
  const auto h0 = h0_in.contiguous();
  const auto c0 = c0_in.contiguous();
  const auto y = y_in.contiguous();
  const auto gates = gates_in.contiguous();
  const auto cell = cell_in.contiguous();
  const int64_t B = x.size(0), T = x.size(1), F = x.size(2), I = x.size(3);
  const int64_t R = w_hh.size(0), H = w_hh.size(2), G = 4 * H;
  const int64_t N = B * T * F;
  TORCH_CHECK(R >= 1 && static_cast<int64_t>(directions.size()) == R, "lstm_sweep_2d backward: ", R,
              " weight sets but ", directions.size(), " directions");
  TORCH_CHECK(gates.numel() == R * N * G && cell.numel() == R * N * H,
              "lstm_sweep_2d backward: the forward did not save its gates (called with save=false)");

  // Every gradient is computed by the line blocks while their gate gradients are in cache (bwd_lines): the input
  // gradient as one share per direction (with one direction, dx itself), summed after the loop; the weight and bias
  // gradients as one share per block, added up per direction in block order (sum_block_shares).
  auto dx = new_output({B, T, F, I}, x.options());
  auto dx_dirs = R == 1 ? dx : pooled({R, N, I}, x.options());
  auto dbias = new_output({R, G}, x.options());
  auto dw_hh = new_output({R, G, H}, x.options());
  auto dw_ih = new_output({R, G, I}, x.options());
  std::vector<Direction> dirs;
  for (int64_t r = 0; r < R; ++r) dirs.push_back(make_direction(directions[r], B, T, F));
  const int64_t lines0 = dirs[0].lines;
  const bool h0_per_line = per_line_states(h0, R, lines0, "h0");
  const bool c0_per_line = per_line_states(c0, R, lines0, "c0");
  // The gradients carried back along every direction's lines (direction r's from line first[r]): what flows into
  // each line's last position from beyond is nothing, or the caller's dh_last / dc_last (one direction).
  const auto first = first_lines(dirs);
  auto dh_run = at::zeros({first[R], H}, x.options()), dc_run = at::zeros({first[R], H}, x.options());
  const auto take_last = [&](const std::optional<at::Tensor>& t, at::Tensor& run, const char* name) {
    if (!t.has_value()) return;
    TORCH_CHECK(R == 1 && t->sizes() == at::IntArrayRef({1, lines0, H}), "lstm_sweep_2d backward: ", name,
                " must be [1, ", lines0, ", ", H, "] with one direction, got ", t->sizes());
    run.copy_(t->select(0, 0));
  };
  take_last(dh_last, dh_run, "dh_last");
  take_last(dc_last, dc_run, "dc_last");
  if (N > 0 && H > 0) {
    const auto blocks = line_blocks(dirs);
    // Each block's shares, zeroed by the block itself.
    auto dbias_blocks = at::empty({static_cast<int64_t>(blocks.size()), G}, x.options());
    auto dw_hh_blocks = at::empty({static_cast<int64_t>(blocks.size()), G, H}, x.options());
    auto dw_ih_blocks = at::empty({static_cast<int64_t>(blocks.size()), G, I}, x.options());
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lstm_sweep_2d_bwd_cpu", [&] {
      std::vector<scalar_t*> dhp(R), dcp(R);
      for (int64_t r = 0; r < R; ++r) {
        dhp[r] = dh_run.data_ptr<scalar_t>() + first[r] * H;
        dcp[r] = dc_run.data_ptr<scalar_t>() + first[r] * H;
      }
      const BwdLines<scalar_t> args{dirs.data(),
                                    T,
                                    F,
                                    R,
                                    I,
                                    H,
                                    N,
                                    grad_y.data_ptr<scalar_t>(),
                                    x.data_ptr<scalar_t>(),
                                    gates.data_ptr<scalar_t>(),
                                    cell.data_ptr<scalar_t>(),
                                    c0.data_ptr<scalar_t>(),
                                    c0_per_line ? H : 0,
                                    w_ih.data_ptr<scalar_t>(),
                                    w_hh.data_ptr<scalar_t>(),
                                    dx_dirs.data_ptr<scalar_t>(),
                                    dbias_blocks.data_ptr<scalar_t>(),
                                    y.data_ptr<scalar_t>(),
                                    h0.data_ptr<scalar_t>(),
                                    h0_per_line ? H : 0,
                                    dw_hh_blocks.data_ptr<scalar_t>(),
                                    dw_ih_blocks.data_ptr<scalar_t>(),
                                    dhp.data(),
                                    dcp.data()};
      run_blocks<scalar_t>(args, blocks, H);
      sum_block_shares(dbias_blocks.data_ptr<scalar_t>(), blocks, R, G, dbias.data_ptr<scalar_t>());
      sum_block_shares(dw_hh_blocks.data_ptr<scalar_t>(), blocks, R, G * H, dw_hh.data_ptr<scalar_t>());
      sum_block_shares(dw_ih_blocks.data_ptr<scalar_t>(), blocks, R, G * I, dw_ih.data_ptr<scalar_t>());
      if (R > 1) sum_directions(dx_dirs.data_ptr<scalar_t>(), R, N * I, dx.data_ptr<scalar_t>());
    });
  } else {
    for (auto* t : {&dx, &dbias, &dw_hh, &dw_ih}) t->zero_();
  }

  // dh0, dc0: [R, H], the sums over each direction's lines, or per line [1, lines, H], the carried gradients.
  const auto initial_grad = [&](const at::Tensor& run, bool per_line) {
    if (per_line) return run.view({1, lines0, H});
    auto out = new_output({R, H}, x.options());
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lstm_sweep_2d_bwd_cpu",
                               [&] { sum_line_states(run.data_ptr<scalar_t>(), first, H, out.data_ptr<scalar_t>()); });
    return out;
  };
  auto dh0 = initial_grad(dh_run, h0_per_line);
  auto dc0 = initial_grad(dc_run, c0_per_line);
  return {dx, dw_ih, dw_hh, dbias, dh0, dc0};
}

}  // namespace

TORCH_LIBRARY_IMPL(melnet_fast, CPU, m) {
  m.impl("lstm_sweep_2d_fwd", &lstm_sweep_2d_fwd_cpu);
  m.impl("lstm_sweep_2d_bwd", &lstm_sweep_2d_bwd_cpu);
}

}  // namespace melnet_fast
