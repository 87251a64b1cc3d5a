// Fused CPU 2D LSTM sweep, forward and backward.
//
// All R directions of a call advance together, as many steps as the longest direction has positions (max(T, F)
// when both axes are swept; csrc/sweep_geometry.h); at each step one GEMM per active direction
// for the recurrent term (gemm.h: oneDNN or BLAS, into a reused buffer), then one OpenMP loop over the rows of
// every active direction for the gate pointwise work. The input projections of all directions are one GEMM
// before the loop; in backward, the weight and input gradients are one GEMM each after it.
//
// Layout: x [B, T, F, I] is read as N = B*T*F rows; a direction along time has B*F rows (one per (b, f)),
// along frequency B*T rows (one per (b, t)). Row k at step s maps to the flat position n = flat(b, t, f).
//
// Per-line states (the spans of the segmented recompute, melnet_fast/ops/lstm_sweep/recompute.py): with one
// direction, h0 and c0 may be [1, lines, H], every line's own initial state; backward then returns dh0 and dc0 per
// line and takes dh_last, dc_last [1, lines, H], the gradients reaching each line's last h and c from beyond.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "common.h"
#include "gemm.h"
#include "small_gemm.h"
#include "sweep_geometry.h"
#include "vec_math.h"

#include <cmath>
#include <limits>
#include <optional>
#include <vector>

namespace melnet_fast {
namespace {

using sweep::Dir;  // csrc/sweep_geometry.h: lines, positions and the step rule shared with the GPU backends

Dir make_direction(int64_t code, int64_t B, int64_t T, int64_t F) {
  TORCH_CHECK(sweep::valid_code(code), "lstm_sweep_2d: direction code must be 0..3, got ", code);
  return sweep::make_dir(code, B, T, F);
}

// Flat index into [B, T, F] of row k of direction d at step s.
inline int64_t position(const Dir& d, int64_t k, int64_t s, int64_t T, int64_t F) {
  return sweep::flat_position(d, k, sweep::step_position(d, s), T, F);
}

// The steps of a sweep: the longest direction's length (the rule of csrc/sweep_geometry.h).
int64_t steps_of(const std::vector<Dir>& dirs) {
  int64_t steps = 0;
  for (const Dir& d : dirs) steps = std::max<int64_t>(steps, d.len);
  return steps;
}

// Which (direction, row) a flat work item of one step belongs to.
struct WorkMap {
  std::vector<int64_t> dir, start;  // active directions and the first work item of each
  int64_t total = 0;
  void build(const std::vector<Dir>& dirs, int64_t s) {
    dir.clear();
    start.clear();
    total = 0;
    for (size_t r = 0; r < dirs.size(); ++r) {
      if (s < dirs[r].len) {
        dir.push_back(static_cast<int64_t>(r));
        start.push_back(total);
        total += dirs[r].lines;
      }
    }
  }
};

// Pointers of one forward step. Row k of active direction r finds the input term of its gate pre-activations
// in pre [R, N, 4H] and the recurrent term in hh, and overwrites pre with the activated gates (which backward
// keeps); it writes y and, when saving, the cell state.
template <typename T>
struct FwdStep {
  T* pre;
  const T* bias;  // [R, 4H], added in the pointwise pass
  T* y;
  T* cell;  // null when not saving
  T* const* h;
  T* const* c;
  const T* const* hh;
  const Dir* dirs;
  const WorkMap* work;
  int64_t s, T_, F, R, H, N;
};

template <typename T>
MF_INLINE void fwd_rows(const FwdStep<T>& st, int64_t lo, int64_t hi) {
  const int64_t H = st.H, G = 4 * H, R = st.R;
  PointwiseScratch<T> scratch(G);
  size_t a = 0;
  for (int64_t item = lo; item < hi; ++item) {
    while (a + 1 < st.work->start.size() && item >= st.work->start[a + 1]) ++a;
    const int64_t r = st.work->dir[a], k = item - st.work->start[a];
    const int64_t n = position(st.dirs[r], k, st.s, st.T_, st.F);
    T* act = st.pre + (r * st.N + n) * G;
    T* h = st.h[r] + k * H;
    T* c = st.c[r] + k * H;
    lstm_cell_pointwise(act, st.hh[r] + k * G, act, h, c, H, scratch, st.bias + r * G);
    std::copy(h, h + H, st.y + n * R * H + r * H);
    if (st.cell) std::copy(c, c + H, st.cell + (r * st.N + n) * H);
  }
}

// Pointers of one backward step: gradients flow from grad_y and the step after (dh, dc) into the gate
// pre-activations (dxp, and dg for the recurrent product).
template <typename T>
struct BwdStep {
  const T* grad_y;
  const T* gates;
  const T* cell;
  const T* c0;
  int64_t c0_line;  // c0's stride between lines: 0 when every line starts from c0[r], H when per line
  T* dxp;
  T* const* dh;
  T* const* dc;
  T* const* dg;
  const Dir* dirs;
  const WorkMap* work;
  int64_t s, T_, F, R, H, N;
};

template <typename T>
MF_INLINE void bwd_rows(const BwdStep<T>& st, int64_t lo, int64_t hi) {
  const int64_t H = st.H, G = 4 * H, R = st.R, N = st.N;
  PointwiseScratch<T> scratch(H);
  std::vector<T> tc(H);
  size_t a = 0;
  for (int64_t item = lo; item < hi; ++item) {
    while (a + 1 < st.work->start.size() && item >= st.work->start[a + 1]) ++a;
    const int64_t r = st.work->dir[a], k = item - st.work->start[a];
    const Dir& d = st.dirs[r];
    const int64_t n = position(d, k, st.s, st.T_, st.F);
    const T* c_prev =
        st.s == 0 ? st.c0 + r * H + k * st.c0_line : st.cell + (r * N + position(d, k, st.s - 1, st.T_, st.F)) * H;
    const T* gs = st.gates + (r * N + n) * G;
    const T* gy = st.grad_y + n * R * H + r * H;
    T* dh = st.dh[r] + k * H;
    T* dc = st.dc[r] + k * H;
    T* dg = st.dg[r] + k * G;
    T* dx = st.dxp + n * R * G + r * G;
    tanh_array(st.cell + (r * N + n) * H, tc.data(), H, scratch);
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) {
      const T gi = gs[j], gf = gs[H + j], gg = gs[2 * H + j], go = gs[3 * H + j];
      const T t = tc[j];
      const T dhj = gy[j] + dh[j];
      const T dcj = dc[j] + dhj * go * (T(1) - t * t);
      const T di = dcj * gg * gi * (T(1) - gi);
      const T df = dcj * c_prev[j] * gf * (T(1) - gf);
      const T dgg = dcj * gi * (T(1) - gg * gg);
      const T dgo = dhj * t * go * (T(1) - go);
      dc[j] = dcj * gf;
      dg[j] = di;
      dg[H + j] = df;
      dg[2 * H + j] = dgg;
      dg[3 * H + j] = dgo;
      dx[j] = di;
      dx[H + j] = df;
      dx[2 * H + j] = dgg;
      dx[3 * H + j] = dgo;
    }
  }
}

// The row loops compiled for AVX-512 / AVX2 / baseline, chosen at load time.
#define MELNET_FAST_ROWS(T)                                                                                    \
  MELNET_FAST_CPU_CLONES void run_rows(const FwdStep<T>& st, int64_t lo, int64_t hi) { fwd_rows(st, lo, hi); } \
  MELNET_FAST_CPU_CLONES void run_rows(const BwdStep<T>& st, int64_t lo, int64_t hi) { bwd_rows(st, lo, hi); }
MELNET_FAST_ROWS(float)
MELNET_FAST_ROWS(double)

// out [M, N] = a [M, K] @ wt [K, N] (all contiguous) for the per-step recurrent products when they are small
// (a sweep at small batch, as in the feature networks during sampling): no BLAS call overhead.
MELNET_FAST_CPU_CLONES void small_product(const float* a, const float* wt, float* out, int64_t M, int64_t K,
                                          int64_t N) {
  matmat(wt, a, M, K, static_cast<const float*>(nullptr), N, K, out, N);
}
MELNET_FAST_CPU_CLONES void small_product(const double* a, const double* wt, double* out, int64_t M, int64_t K,
                                          int64_t N) {
  matmat(wt, a, M, K, static_cast<const double*>(nullptr), N, K, out, N);
}

// out = a @ wt with wt [K, N] contiguous: the small kernel below kDnnlMinMacs, else gemm_into.
template <typename T>
void recurrent_product(const at::Tensor& a, const at::Tensor& wt, const at::Tensor& out) {
  const int64_t M = a.size(0), K = a.size(1), N = wt.size(1);
  if (M * K * N < kDnnlMinMacs) {
    small_product(a.data_ptr<T>(), wt.data_ptr<T>(), out.data_ptr<T>(), M, K, N);
  } else {
    gemm_into(a, wt, out);
  }
}

// Runs every row of every active direction of one step, in parallel chunks.
template <typename Step>
void run_step(const Step& st) {
  const int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(st.H, 1));
  at::parallel_for(0, st.work->total, grain, [&](int64_t lo, int64_t hi) { run_rows(st, lo, hi); });
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
  const auto w_ih = w_ih_in.contiguous();
  const auto w_hh = w_hh_in.contiguous();
  const auto bias = bias_in.contiguous();
  const auto h0 = h0_in.contiguous();
  const auto c0 = c0_in.contiguous();
  const int64_t B = x.size(0), T = x.size(1), F = x.size(2), I = x.size(3);
  const int64_t R = w_hh.size(0), H = w_hh.size(2), G = 4 * H;
  const int64_t N = B * T * F;
  TORCH_CHECK(static_cast<int64_t>(directions.size()) == R, "lstm_sweep_2d: ", R, " weight sets but ",
              directions.size(), " directions");

  auto y = new_output({B, T, F, R * H}, x.options());
  // The gate buffer first holds the input terms, then the activated gates: backward needs them, so it is an
  // output when saving and a temporary otherwise (no separate [N, R*4H] projection buffer).
  auto gates = pooled({R, B, T, F, G}, x.options());
  auto cell = save ? pooled({R, B, T, F, H}, x.options()) : at::empty({0}, x.options());
  if (N == 0 || H == 0) return {y, save ? gates : at::empty({0}, x.options()), cell};

  // Input projections of every direction, one GEMM each over all N positions: [N, I] x [I, 4H] (no bias).
  const auto x_flat = x.reshape({N, I});
  for (int64_t r = 0; r < R; ++r) {
    auto pre_r = gates[r].view({N, G});
    gemm_into(x_flat, w_ih[r].t(), pre_r);  // the bias is added in the pointwise pass
  }

  std::vector<Dir> dirs;
  std::vector<at::Tensor> h_prev, c_prev, hh, w_hh_t;
  for (int64_t r = 0; r < R; ++r) {
    w_hh_t.push_back(w_hh[r].t().contiguous());  // [H, 4H]: the layout of the recurrent product
    dirs.push_back(make_direction(directions[r], B, T, F));
    // clone, not contiguous(): with a single row the expanded view is already contiguous and the loop
    // below would then write the running state into the caller's h0 / c0.
    h_prev.push_back(line_states(h0, r, R, dirs[r].lines, "h0").clone(at::MemoryFormat::Contiguous));
    c_prev.push_back(line_states(c0, r, R, dirs[r].lines, "c0").clone(at::MemoryFormat::Contiguous));
    hh.push_back(at::empty({dirs[r].lines, G}, x.options()));
  }
  const int64_t steps = steps_of(dirs);

  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lstm_sweep_2d_fwd_cpu", [&] {
    scalar_t* pre_p = gates.data_ptr<scalar_t>();
    scalar_t* y_p = y.data_ptr<scalar_t>();
    scalar_t* cell_p = save ? cell.data_ptr<scalar_t>() : nullptr;
    std::vector<scalar_t*> hp(R), cp(R);
    std::vector<const scalar_t*> hhp(R);
    for (int64_t r = 0; r < R; ++r) {
      hp[r] = h_prev[r].data_ptr<scalar_t>();
      cp[r] = c_prev[r].data_ptr<scalar_t>();
      hhp[r] = hh[r].data_ptr<scalar_t>();
    }
    WorkMap work;
    FwdStep<scalar_t> st{pre_p,      bias.data_ptr<scalar_t>(),
                         y_p,        cell_p,
                         hp.data(),  cp.data(),
                         hhp.data(), dirs.data(),
                         &work,      0,
                         T,          F,
                         R,          H,
                         N};
    for (int64_t s = 0; s < steps; ++s) {
      work.build(dirs, s);
      for (int64_t r : work.dir) recurrent_product<scalar_t>(h_prev[r], w_hh_t[r], hh[r]);
      st.s = s;
      run_step(st);
    }
  });
  if (!save) gates = at::empty({0}, x.options());
  return {y, gates, cell};
}

// The hidden state each position of one direction's lines saw as h_prev, as rows [B*T*F, H] in y's row order:
// y_r [B, T, F, H] (that direction's channel slice of y) shifted by one position along the direction's axis
// (time when along_t, else frequency), with the lines' initial states h0_r [lines, H] at their first positions.
// dw_hh = dG^T @ this.
at::Tensor previous_hidden(const at::Tensor& y_r, const at::Tensor& h0_r, bool along_t, bool reverse) {
  const int64_t dim = along_t ? 1 : 2;
  const int64_t L = y_r.size(dim);
  std::vector<int64_t> shape(y_r.sizes().begin(), y_r.sizes().end());
  shape[dim] = 1;
  const auto first = h0_r.reshape(shape);  // lines b*F + f (along time) or b*T + t (along frequency)
  const auto prev =
      reverse ? at::cat({y_r.narrow(dim, 1, L - 1), first}, dim) : at::cat({first, y_r.narrow(dim, 0, L - 1)}, dim);
  return prev.reshape({-1, y_r.size(3)});
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
  std::vector<Dir> dirs;
  std::vector<at::Tensor> dh_rec, dc_next, dg_step, h_first;
  for (int64_t r = 0; r < R; ++r) dirs.push_back(make_direction(directions[r], B, T, F));
  const bool per_line = h0.dim() == 3;
  // What step 0 reads as each line's previous cell state (through BwdStep::c0_line).
  const auto c0_lines = per_line ? line_states(c0, 0, R, dirs[0].lines, "c0").contiguous() : c0;
  for (int64_t r = 0; r < R; ++r) {
    const int64_t lines = dirs[r].lines;
    // What flows back into each line's last position from beyond: nothing, or the caller's dh_last / dc_last.
    const auto from = [&](const std::optional<at::Tensor>& t, const char* name) {
      if (!t.has_value()) return at::zeros({lines, H}, x.options());
      TORCH_CHECK(R == 1 && t->sizes() == at::IntArrayRef({1, lines, H}), "lstm_sweep_2d backward: ", name,
                  " must be [1, ", lines, ", ", H, "] with one direction, got ", t->sizes());
      return t->select(0, 0).to(x.options()).clone(at::MemoryFormat::Contiguous);
    };
    dh_rec.push_back(from(dh_last, "dh_last"));
    dc_next.push_back(from(dc_last, "dc_last"));
    dg_step.push_back(at::empty({lines, G}, x.options()));
    h_first.push_back(line_states(h0, r, R, dirs[r].lines, "h0"));
  }
  const int64_t steps = steps_of(dirs);

  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lstm_sweep_2d_bwd_cpu", [&] {
    const scalar_t* gy_p = grad_y.data_ptr<scalar_t>();
    const scalar_t* gates_p = gates.data_ptr<scalar_t>();
    const scalar_t* cell_p = cell.data_ptr<scalar_t>();
    const scalar_t* c0_p = c0_lines.data_ptr<scalar_t>();
    scalar_t* dxp_p = dxp.data_ptr<scalar_t>();
    std::vector<scalar_t*> dhp(R), dcp(R), dgp(R);
    for (int64_t r = 0; r < R; ++r) {
      dhp[r] = dh_rec[r].data_ptr<scalar_t>();
      dcp[r] = dc_next[r].data_ptr<scalar_t>();
      dgp[r] = dg_step[r].data_ptr<scalar_t>();
    }
    WorkMap work;
    BwdStep<scalar_t> st{gy_p,  gates_p,    cell_p,     c0_p,       per_line ? H : 0,
                         dxp_p, dhp.data(), dcp.data(), dgp.data(), dirs.data(),
                         &work, 0,          T,          F,          R,
                         H,     N};
    for (int64_t s = steps - 1; s >= 0; --s) {
      work.build(dirs, s);
      st.s = s;
      run_step(st);
      // Gradient reaching h at the previous position: [rows, 4H] x [4H, H].
      for (int64_t r : work.dir) recurrent_product<scalar_t>(dg_step[r], w_hh[r], dh_rec[r]);
    }
  });

  auto dx = at::empty({N, I}, x.options());
  gemm_into(dxp, w_ih.reshape({R * G, I}), dx);
  dx = dx.view({B, T, F, I});
  auto dw_ih = at::empty({R * G, I}, x.options());
  gemm_into(dxp.t(), x.reshape({N, I}), dw_ih);
  dw_ih = dw_ih.view({R, G, I});
  auto dbias = dxp.sum(0).reshape({R, G});
  auto dw_hh = new_output({R, G, H}, x.options());
  auto dh0 = new_output(h0.sizes(), x.options());  // [R, H], or per line [1, lines, H]
  auto dc0 = new_output(c0.sizes(), x.options());
  for (int64_t r = 0; r < R; ++r) {
    const auto y_r = y.narrow(3, r * H, H);
    auto dw_hh_r = dw_hh[r];
    // BLAS reads the column block of dxp in place through its leading dimension; oneDNN would first copy the
    // transposed block (40 ms of the backward at the benchmark size).
    const auto h_prev = previous_hidden(y_r, h_first[r], dirs[r].along_t, dirs[r].reverse);
    at::mm_out(dw_hh_r, dxp.narrow(1, r * G, G).t(), h_prev);
    dh0[r].copy_(per_line ? dh_rec[r] : dh_rec[r].sum(0));
    dc0[r].copy_(per_line ? dc_next[r] : dc_next[r].sum(0));
  }
  return {dx, dw_ih, dw_hh, dbias, dh0, dc0};
}

}  // namespace

TORCH_LIBRARY_IMPL(melnet_fast, CPU, m) {
  m.impl("lstm_sweep_2d_fwd", &lstm_sweep_2d_fwd_cpu);
  m.impl("lstm_sweep_2d_bwd", &lstm_sweep_2d_bwd_cpu);
}

}  // namespace melnet_fast
