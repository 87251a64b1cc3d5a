// Fused CPU 2D LSTM sweep, forward and backward.
//
// The lines (independent sequences) of every direction are split into blocks, and each thread takes whole
// blocks through all of their steps (sweep_lines_cpu.h): lines never depend on one another, so there is no
// barrier per step, and both cores stay busy with all directions at once. Inside a block each step is one
// register-tiled product per weight matrix over the block's rows, the gate maths fused after it. In backward each
// block also sums its share of the recurrent weight and bias gradients while its gate gradients are in cache; the
// input and input weight gradients are large GEMMs after the loop (gemm.h: oneDNN or BLAS).
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
#include "gemm.h"
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
  const int level = simd::cpu_level();
  if (level >= 4)
    fwd_lines_v4(a, b, s);
  else if (level >= 3)
    fwd_lines_v3(a, b, s);
  else
    fwd_lines_v1(a, b, s);
}
template <typename T>
void run_lines(const BwdLines<T>& a, const LineBlock& b, LineScratch<T>& s) {
  const int level = simd::cpu_level();
  if (level >= 4)
    bwd_lines_v4(a, b, s);
  else if (level >= 3)
    bwd_lines_v3(a, b, s);
  else
    bwd_lines_v1(a, b, s);
}

// Blocks of lines of every direction, longest directions first, sized so that each thread gets several (the
// threads take them in turn, which evens out directions of different lengths): a whole number of row tiles (a
// part-filled tile runs slower), at most kMaxBlock lines each.
std::vector<LineBlock> line_blocks(const std::vector<Direction>& dirs) {
  constexpr int64_t tile = RowsTile<64>::MR;
  static_assert(RowsTile<32>::MR == tile && RowsTile<16>::MR == tile && kMaxBlock % tile == 0);
  int64_t lines = 0;
  for (const auto& d : dirs) lines += d.lines;
  const int64_t target = (lines + 4 * at::get_num_threads() - 1) / (4 * at::get_num_threads());
  const int64_t size = std::min((target + tile - 1) / tile * tile, kMaxBlock);
  std::vector<int64_t> order(dirs.size());
  for (size_t r = 0; r < dirs.size(); ++r) order[r] = static_cast<int64_t>(r);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return dirs[a].len > dirs[b].len; });
  std::vector<LineBlock> blocks;
  for (int64_t r : order)
    for (int64_t k = 0; k < dirs[r].lines; k += size)
      blocks.push_back({r, k, std::min(k + size, dirs[r].lines), static_cast<int64_t>(blocks.size())});
  return blocks;
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

// Buffers of tens of megabytes (the saved gates and cell states, backward's gate gradients) come from a small
// per-thread pool instead of fresh allocations: glibc maps anything above 32 MiB afresh on every call, and the
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

// The initial states of direction r's lines, [lines, H]: state [R, H] broadcast, or per line [1, lines, H] (one
// direction only).
at::Tensor line_states(const at::Tensor& state, int64_t r, int64_t R, int64_t lines, const char* name) {
  if (state.dim() == 2) return state[r].unsqueeze(0).expand({lines, state.size(1)});
  TORCH_CHECK(state.dim() == 3 && R == 1 && state.size(0) == 1 && state.size(1) == lines, "lstm_sweep_2d: per-line ",
              name, " must be [1, lines, H] with one direction (", lines, " lines), got ", state.sizes(), " with ", R,
              " directions");
  return state[0];
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

  auto y = new_output({B, T, F, R * H}, x.options());
  // Backward needs the activated gates and the cell states; a forward without gradient keeps neither (its gate
  // rows live only in each thread's block scratch).
  auto gates = save ? pooled({R, B, T, F, G}, x.options()) : at::empty({0}, x.options());
  auto cell = save ? pooled({R, B, T, F, H}, x.options()) : at::empty({0}, x.options());
  if (N == 0 || H == 0) return {y, gates, cell};

  // The weights packed once, in the layout of the per-step products: [R, I, 4H] and [R, H, 4H].
  const auto w_ih_t = w_ih_in.transpose(1, 2).contiguous();
  const auto w_hh_t = w_hh_in.transpose(1, 2).contiguous();
  std::vector<Direction> dirs;
  std::vector<at::Tensor> h_state, c_state;
  for (int64_t r = 0; r < R; ++r) {
    dirs.push_back(make_direction(directions[r], B, T, F));
    // clone, not contiguous(): with a single line the expanded view is already contiguous and the kernels
    // would then write the running state into the caller's h0 / c0.
    h_state.push_back(line_states(h0_in, r, R, dirs[r].lines, "h0").clone(at::MemoryFormat::Contiguous));
    c_state.push_back(line_states(c0_in, r, R, dirs[r].lines, "c0").clone(at::MemoryFormat::Contiguous));
  }
  const auto blocks = line_blocks(dirs);

  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lstm_sweep_2d_fwd_cpu", [&] {
    std::vector<scalar_t*> hp(R), cp(R);
    for (int64_t r = 0; r < R; ++r) {
      hp[r] = h_state[r].data_ptr<scalar_t>();
      cp[r] = c_state[r].data_ptr<scalar_t>();
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
  TORCH_CHECK(gates.numel() == R * N * G && cell.numel() == R * N * H,
              "lstm_sweep_2d backward: the forward did not save its gates (called with save=false)");

  auto dxp = pooled({N, R * G}, x.options());  // gradients of the gate pre-activations
  // The recurrent weight and bias gradients are summed by each block over its lines and steps while its gate
  // gradients are in cache (bwd_lines), then added up per direction in block order, so the result does not depend
  // on which thread ran which block.
  at::Tensor dbias_blocks, dw_hh_blocks;
  auto dbias = at::zeros({R, G}, x.options());
  auto dw_hh = at::zeros({R, G, H}, x.options());
  std::vector<Direction> dirs;
  std::vector<at::Tensor> dh_state, dc_state;
  for (int64_t r = 0; r < R; ++r) dirs.push_back(make_direction(directions[r], B, T, F));
  const bool per_line = h0.dim() == 3;
  // What step 0 reads as each line's previous cell state: c0 [R, H] (BwdLines::c0_line 0) or per line.
  const auto c0_lines = per_line ? line_states(c0, 0, R, dirs[0].lines, "c0").contiguous() : c0;
  const auto h0_lines = per_line ? line_states(h0, 0, R, dirs[0].lines, "h0").contiguous() : h0;
  for (int64_t r = 0; r < R; ++r) {
    const int64_t lines = dirs[r].lines;
    // What flows back into each line's last position from beyond: nothing, or the caller's dh_last / dc_last.
    const auto from = [&](const std::optional<at::Tensor>& t, const char* name) {
      if (!t.has_value()) return at::zeros({lines, H}, x.options());
      TORCH_CHECK(R == 1 && t->sizes() == at::IntArrayRef({1, lines, H}), "lstm_sweep_2d backward: ", name,
                  " must be [1, ", lines, ", ", H, "] with one direction, got ", t->sizes());
      return t->select(0, 0).to(x.options()).clone(at::MemoryFormat::Contiguous);
    };
    dh_state.push_back(from(dh_last, "dh_last"));
    dc_state.push_back(from(dc_last, "dc_last"));
  }
  if (N > 0 && H > 0) {
    const auto blocks = line_blocks(dirs);
    dbias_blocks = at::zeros({static_cast<int64_t>(blocks.size()), G}, x.options());
    dw_hh_blocks = at::zeros({static_cast<int64_t>(blocks.size()), G, H}, x.options());
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lstm_sweep_2d_bwd_cpu", [&] {
      std::vector<scalar_t*> dhp(R), dcp(R);
      for (int64_t r = 0; r < R; ++r) {
        dhp[r] = dh_state[r].data_ptr<scalar_t>();
        dcp[r] = dc_state[r].data_ptr<scalar_t>();
      }
      const BwdLines<scalar_t> args{dirs.data(),
                                    T,
                                    F,
                                    R,
                                    H,
                                    N,
                                    grad_y.data_ptr<scalar_t>(),
                                    gates.data_ptr<scalar_t>(),
                                    cell.data_ptr<scalar_t>(),
                                    c0_lines.data_ptr<scalar_t>(),
                                    per_line ? H : 0,
                                    w_hh.data_ptr<scalar_t>(),
                                    dxp.data_ptr<scalar_t>(),
                                    dbias_blocks.data_ptr<scalar_t>(),
                                    y.data_ptr<scalar_t>(),
                                    h0_lines.data_ptr<scalar_t>(),
                                    per_line ? H : 0,
                                    dw_hh_blocks.data_ptr<scalar_t>(),
                                    dhp.data(),
                                    dcp.data()};
      run_blocks<scalar_t>(args, blocks, H);
    });
    for (const auto& b : blocks) {
      dbias[b.r].add_(dbias_blocks[b.id]);
      dw_hh[b.r].add_(dw_hh_blocks[b.id]);
    }
  }

  // Input gradient and input weight gradient: large GEMMs over all N positions.
  auto dx = at::empty({N, I}, x.options());
  gemm_into(dxp, w_ih.reshape({R * G, I}), dx);
  dx = dx.view({B, T, F, I});
  auto dw_ih = at::empty({R * G, I}, x.options());
  gemm_into(dxp.t(), x.reshape({N, I}), dw_ih);
  dw_ih = dw_ih.view({R, G, I});
  auto dh0 = new_output(h0.sizes(), x.options());  // [R, H], or per line [1, lines, H]
  auto dc0 = new_output(c0.sizes(), x.options());
  for (int64_t r = 0; r < R; ++r) {
    dh0[r].copy_(per_line ? dh_state[r] : dh_state[r].sum(0));
    dc0[r].copy_(per_line ? dc_state[r] : dc_state[r].sum(0));
  }
  return {dx, dw_ih, dw_hh, dbias, dh0, dc0};
}

}  // namespace

TORCH_LIBRARY_IMPL(melnet_fast, CPU, m) {
  m.impl("lstm_sweep_2d_fwd", &lstm_sweep_2d_fwd_cpu);
  m.impl("lstm_sweep_2d_bwd", &lstm_sweep_2d_bwd_cpu);
}

}  // namespace melnet_fast
