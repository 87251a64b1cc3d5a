// Fused CPU 2D LSTM sweep, forward and backward.
//
// All R directions of a call advance together: max(T, F) steps; at each step one GEMM per active direction
// for the recurrent term (BLAS through at::mm_out into a reused buffer), then one OpenMP loop over the rows of
// every active direction for the gate pointwise work. The input projections of all directions are one GEMM
// before the loop; in backward, the weight and input gradients are one GEMM each after it.
//
// Layout: x [B, T, F, I] is read as N = B*T*F rows; a direction along time has B*F rows (one per (b, f)),
// along frequency B*T rows (one per (b, t)). Row k at step s maps to the flat position n = flat(b, t, f).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "common.h"

#include <cmath>
#include <vector>

namespace melnet_fast {
namespace {

struct Direction {
  bool along_t;
  bool reverse;
  int64_t len;   // steps of this direction
  int64_t rows;  // independent sequences
};

Direction make_direction(int64_t code, int64_t B, int64_t T, int64_t F) {
  TORCH_CHECK(code >= 0 && code <= 3, "lstm_sweep_2d: direction code must be 0..3, got ", code);
  const bool along_t = code < 2;
  return {along_t, code % 2 == 1, along_t ? T : F, along_t ? B * F : B * T};
}

// Flat index into [B, T, F] of row k of direction d at step s.
inline int64_t position(const Direction& d, int64_t k, int64_t s, int64_t T, int64_t F) {
  const int64_t p = d.reverse ? d.len - 1 - s : s;
  if (d.along_t) {
    const int64_t b = k / F, f = k % F;
    return (b * T + p) * F + f;
  }
  const int64_t b = k / T, t = k % T;
  return (b * T + t) * F + p;
}

template <typename T>
inline T sigmoid(T v) {
  return T(1) / (T(1) + std::exp(-v));
}

// Which (direction, row) a flat work item of one step belongs to.
struct WorkMap {
  std::vector<int64_t> dir, start;  // active directions and the first work item of each
  int64_t total = 0;
  void build(const std::vector<Direction>& dirs, int64_t s) {
    dir.clear();
    start.clear();
    total = 0;
    for (size_t r = 0; r < dirs.size(); ++r) {
      if (s < dirs[r].len) {
        dir.push_back(static_cast<int64_t>(r));
        start.push_back(total);
        total += dirs[r].rows;
      }
    }
  }
};

// Runs fn(r, k) for every row k of every active direction r, in parallel.
template <typename Fn>
void for_each_row(const WorkMap& work, int64_t H, const Fn& fn) {
  const int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(H, 1));
  at::parallel_for(0, work.total, grain, [&](int64_t lo, int64_t hi) {
    size_t a = 0;
    for (int64_t item = lo; item < hi; ++item) {
      while (a + 1 < work.start.size() && item >= work.start[a + 1]) ++a;
      fn(work.dir[a], item - work.start[a]);
    }
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> lstm_sweep_2d_fwd_cpu(
    const at::Tensor& x_in, const at::Tensor& w_ih_in, const at::Tensor& w_hh_in, const at::Tensor& bias_in,
    const at::Tensor& h0_in, const at::Tensor& c0_in, at::IntArrayRef directions, bool save) {
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
  auto gates = save ? new_output({R, B, T, F, G}, x.options()) : at::empty({0}, x.options());
  auto cell = save ? new_output({R, B, T, F, H}, x.options()) : at::empty({0}, x.options());
  if (N == 0 || H == 0) return {y, gates, cell};

  // Input projections of every direction at once: [N, I] x [I, R*4H].
  auto xp = at::addmm(bias.reshape({1, R * G}), x.reshape({N, I}), w_ih.reshape({R * G, I}).t());

  std::vector<Direction> dirs;
  std::vector<at::Tensor> h_prev, c_prev, hh;
  for (int64_t r = 0; r < R; ++r) {
    dirs.push_back(make_direction(directions[r], B, T, F));
    // clone, not contiguous(): with a single row the expanded view is already contiguous and the loop
    // below would then write the running state into the caller's h0 / c0.
    h_prev.push_back(h0[r].unsqueeze(0).expand({dirs[r].rows, H}).clone(at::MemoryFormat::Contiguous));
    c_prev.push_back(c0[r].unsqueeze(0).expand({dirs[r].rows, H}).clone(at::MemoryFormat::Contiguous));
    hh.push_back(at::empty({dirs[r].rows, G}, x.options()));
  }
  const int64_t steps = std::max(T, F);

  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lstm_sweep_2d_fwd_cpu", [&] {
    const scalar_t* xp_p = xp.data_ptr<scalar_t>();
    scalar_t* y_p = y.data_ptr<scalar_t>();
    scalar_t* gates_p = save ? gates.data_ptr<scalar_t>() : nullptr;
    scalar_t* cell_p = save ? cell.data_ptr<scalar_t>() : nullptr;
    std::vector<scalar_t*> hp(R), cp(R);
    std::vector<const scalar_t*> hhp(R);
    for (int64_t r = 0; r < R; ++r) {
      hp[r] = h_prev[r].data_ptr<scalar_t>();
      cp[r] = c_prev[r].data_ptr<scalar_t>();
      hhp[r] = hh[r].data_ptr<scalar_t>();
    }
    WorkMap work;
    for (int64_t s = 0; s < steps; ++s) {
      work.build(dirs, s);
      for (int64_t r : work.dir) at::mm_out(hh[r], h_prev[r], w_hh[r].t());
      for_each_row(work, H, [&](int64_t r, int64_t k) {
        const int64_t n = position(dirs[r], k, s, T, F);
        const scalar_t* xg = xp_p + n * R * G + r * G;
        const scalar_t* hg = hhp[r] + k * G;
        scalar_t* h = hp[r] + k * H;
        scalar_t* c = cp[r] + k * H;
        scalar_t* yo = y_p + n * R * H + r * H;
        scalar_t* gs = save ? gates_p + (r * N + n) * G : nullptr;
        scalar_t* cs = save ? cell_p + (r * N + n) * H : nullptr;
        for (int64_t j = 0; j < H; ++j) {
          const scalar_t gi = sigmoid(xg[j] + hg[j]);
          const scalar_t gf = sigmoid(xg[H + j] + hg[H + j]);
          const scalar_t gg = std::tanh(xg[2 * H + j] + hg[2 * H + j]);
          const scalar_t go = sigmoid(xg[3 * H + j] + hg[3 * H + j]);
          const scalar_t cn = gf * c[j] + gi * gg;
          const scalar_t hn = go * std::tanh(cn);
          c[j] = cn;
          h[j] = hn;
          yo[j] = hn;
          if (gs) {
            gs[j] = gi;
            gs[H + j] = gf;
            gs[2 * H + j] = gg;
            gs[3 * H + j] = go;
            cs[j] = cn;
          }
        }
      });
    }
  });
  return {y, gates, cell};
}

// h of the previous position of every element along direction d (h0 at the first): [N, H].
at::Tensor previous_hidden(const at::Tensor& y_r, const at::Tensor& h0_r, const Direction& d) {
  // y_r [B, T, F, H]
  const int64_t dim = d.along_t ? 1 : 2;
  const int64_t L = y_r.size(dim);
  std::vector<int64_t> shape(y_r.sizes().begin(), y_r.sizes().end());
  shape[dim] = 1;
  auto first = h0_r.view({1, 1, 1, -1}).expand(shape);
  at::Tensor prev;
  if (!d.reverse) {
    prev = at::cat({first, y_r.narrow(dim, 0, L - 1)}, dim);
  } else {
    prev = at::cat({y_r.narrow(dim, 1, L - 1), first}, dim);
  }
  return prev.reshape({-1, y_r.size(3)});
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> lstm_sweep_2d_bwd_cpu(
    const at::Tensor& grad_y_in, const at::Tensor& x_in, const at::Tensor& w_ih_in, const at::Tensor& w_hh_in,
    const at::Tensor& h0_in, const at::Tensor& c0_in, const at::Tensor& y_in, const at::Tensor& gates_in,
    const at::Tensor& cell_in, at::IntArrayRef directions) {
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

  auto dxp = new_output({N, R * G}, x.options());  // gradients of the gate pre-activations
  std::vector<Direction> dirs;
  std::vector<at::Tensor> dh_rec, dc_next, dg_step;
  for (int64_t r = 0; r < R; ++r) {
    dirs.push_back(make_direction(directions[r], B, T, F));
    dh_rec.push_back(at::zeros({dirs[r].rows, H}, x.options()));
    dc_next.push_back(at::zeros({dirs[r].rows, H}, x.options()));
    dg_step.push_back(at::empty({dirs[r].rows, G}, x.options()));
  }
  const int64_t steps = std::max(T, F);

  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lstm_sweep_2d_bwd_cpu", [&] {
    const scalar_t* gy_p = grad_y.data_ptr<scalar_t>();
    const scalar_t* gates_p = gates.data_ptr<scalar_t>();
    const scalar_t* cell_p = cell.data_ptr<scalar_t>();
    const scalar_t* c0_p = c0.data_ptr<scalar_t>();
    scalar_t* dxp_p = dxp.data_ptr<scalar_t>();
    std::vector<scalar_t*> dhp(R), dcp(R), dgp(R);
    for (int64_t r = 0; r < R; ++r) {
      dhp[r] = dh_rec[r].data_ptr<scalar_t>();
      dcp[r] = dc_next[r].data_ptr<scalar_t>();
      dgp[r] = dg_step[r].data_ptr<scalar_t>();
    }
    WorkMap work;
    for (int64_t s = steps - 1; s >= 0; --s) {
      work.build(dirs, s);
      for_each_row(work, H, [&](int64_t r, int64_t k) {
        const int64_t n = position(dirs[r], k, s, T, F);
        const scalar_t* c_prev = s == 0 ? c0_p + r * H : cell_p + (r * N + position(dirs[r], k, s - 1, T, F)) * H;
        const scalar_t* gs = gates_p + (r * N + n) * G;
        const scalar_t* cs = cell_p + (r * N + n) * H;
        const scalar_t* gy = gy_p + n * R * H + r * H;
        scalar_t* dh = dhp[r] + k * H;
        scalar_t* dc = dcp[r] + k * H;
        scalar_t* dg = dgp[r] + k * G;
        scalar_t* dx = dxp_p + n * R * G + r * G;
        for (int64_t j = 0; j < H; ++j) {
          const scalar_t gi = gs[j], gf = gs[H + j], gg = gs[2 * H + j], go = gs[3 * H + j];
          const scalar_t tc = std::tanh(cs[j]);
          const scalar_t dhj = gy[j] + dh[j];
          const scalar_t dcj = dc[j] + dhj * go * (scalar_t(1) - tc * tc);
          const scalar_t di = dcj * gg * gi * (scalar_t(1) - gi);
          const scalar_t df = dcj * c_prev[j] * gf * (scalar_t(1) - gf);
          const scalar_t dgg = dcj * gi * (scalar_t(1) - gg * gg);
          const scalar_t dgo = dhj * tc * go * (scalar_t(1) - go);
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
      });
      // Gradient reaching h at the previous position: [rows, 4H] x [4H, H].
      for (int64_t r : work.dir) at::mm_out(dh_rec[r], dg_step[r], w_hh[r]);
    }
  });

  auto dx = at::mm(dxp, w_ih.reshape({R * G, I})).reshape({B, T, F, I});
  auto dw_ih = at::mm(dxp.t(), x.reshape({N, I})).reshape({R, G, I});
  auto dbias = dxp.sum(0).reshape({R, G});
  auto dw_hh = new_output({R, G, H}, x.options());
  auto dh0 = new_output({R, H}, x.options());
  auto dc0 = new_output({R, H}, x.options());
  for (int64_t r = 0; r < R; ++r) {
    const auto y_r = y.narrow(3, r * H, H);
    auto dw_hh_r = dw_hh[r];
    at::mm_out(dw_hh_r, dxp.narrow(1, r * G, G).t(), previous_hidden(y_r, h0[r], dirs[r]));
    dh0[r].copy_(dh_rec[r].sum(0));
    dc0[r].copy_(dc_next[r].sum(0));
  }
  return {dx, dw_ih, dw_hh, dbias, dh0, dc0};
}

}  // namespace

TORCH_LIBRARY_IMPL(melnet_fast, CPU, m) {
  m.impl("lstm_sweep_2d_fwd", &lstm_sweep_2d_fwd_cpu);
  m.impl("lstm_sweep_2d_bwd", &lstm_sweep_2d_bwd_cpu);
}

}  // namespace melnet_fast
