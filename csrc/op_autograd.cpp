// The autograd formulas of the extension's differentiable ops, melnet_fast::lstm_sweep_2d_fwd and gmm_nll_fwd, for
// every device (the CPU kernels and the CUDA ones), as C++ autograd kernels. The same formulas registered from Python
// (torch.library.register_autograd, as the Python-defined ops of the triton and cuda_gemm backends keep them) cost
// about 0.1 ms of interpreter time per forward and as much per backward: a twentieth of a CPU training step of the
// `small` preset, which runs 20 sweeps and 3 mixture likelihoods.
//
// lstm_sweep_2d: forward (y, gates, cell) = fwd(x, w_ih, w_hh, bias, h0, c0, directions, save), keeping x, w_ih, w_hh,
// h0, c0, y, gates, cell; backward: the gradients of x, w_ih, w_hh, bias, h0, c0 = bwd(grad_y, saved..., directions).
// gates and cell are saved state, never differentiated, and their gradients are not materialised (that would fill
// tens of megabytes of zeros every backward). gmm_nll: forward nll = fwd(x, mu, log_sigma, logit_pi), keeping its
// inputs; backward: their gradients = bwd(grad, inputs...), which recomputes the posteriors in one fused pass.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <optional>
#include <tuple>
#include <vector>

namespace melnet_fast {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
using Fwd3 = std::tuple<at::Tensor, at::Tensor, at::Tensor>;
using Bwd6 = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;
using Bwd4 = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

Fwd3 call_fwd(const at::Tensor& x, const at::Tensor& w_ih, const at::Tensor& w_hh, const at::Tensor& bias,
              const at::Tensor& h0, const at::Tensor& c0, at::IntArrayRef directions, bool save) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("melnet_fast::lstm_sweep_2d_fwd", "")
                             .typed<Fwd3(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                         const at::Tensor&, const at::Tensor&, at::IntArrayRef, bool)>();
  return op.call(x, w_ih, w_hh, bias, h0, c0, directions, save);
}

Bwd6 call_bwd(const at::Tensor& grad_y, const variable_list& s, at::IntArrayRef directions) {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("melnet_fast::lstm_sweep_2d_bwd", "")
          .typed<Bwd6(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                      const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, at::IntArrayRef,
                      const std::optional<at::Tensor>&, const std::optional<at::Tensor>&)>();
  return op.call(grad_y, s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], directions, std::nullopt, std::nullopt);
}

struct Sweep : public torch::autograd::Function<Sweep> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w_ih,
                               const at::Tensor& w_hh, const at::Tensor& bias, const at::Tensor& h0,
                               const at::Tensor& c0, at::IntArrayRef directions, bool save) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [y, gates, cell] = call_fwd(x, w_ih, w_hh, bias, h0, c0, directions, save);
    ctx->saved_data["directions"] = directions.vec();
    ctx->set_materialize_grads(false);
    ctx->save_for_backward({x, w_ih, w_hh, h0, c0, y, gates, cell});
    return {y, gates, cell};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto directions = ctx->saved_data["directions"].toIntVector();
    const at::Tensor grad_y = grads[0].defined() ? grads[0] : at::zeros_like(saved[5]);
    auto [dx, dw_ih, dw_hh, dbias, dh0, dc0] = call_bwd(grad_y, saved, directions);
    return {dx, dw_ih, dw_hh, dbias, dh0, dc0, at::Tensor(), at::Tensor()};
  }
};

Fwd3 lstm_sweep_2d_fwd_autograd(const at::Tensor& x, const at::Tensor& w_ih, const at::Tensor& w_hh,
                                const at::Tensor& bias, const at::Tensor& h0, const at::Tensor& c0,
                                at::IntArrayRef directions, bool save) {
  auto out = Sweep::apply(x, w_ih, w_hh, bias, h0, c0, directions, save);
  return {out[0], out[1], out[2]};
}

at::Tensor call_gmm_fwd(const at::Tensor& x, const at::Tensor& mu, const at::Tensor& log_sigma,
                        const at::Tensor& logit_pi) {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("melnet_fast::gmm_nll_fwd", "")
          .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&)>();
  return op.call(x, mu, log_sigma, logit_pi);
}

Bwd4 call_gmm_bwd(const at::Tensor& grad, const variable_list& s) {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("melnet_fast::gmm_nll_bwd", "")
          .typed<Bwd4(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&)>();
  return op.call(grad, s[0], s[1], s[2], s[3]);
}

struct GmmNll : public torch::autograd::Function<GmmNll> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& mu,
                            const at::Tensor& log_sigma, const at::Tensor& logit_pi) {
    at::AutoDispatchBelowADInplaceOrView guard;
    ctx->save_for_backward({x, mu, log_sigma, logit_pi});
    return call_gmm_fwd(x, mu, log_sigma, logit_pi);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto [dx, dmu, dlog_sigma, dlogit_pi] = call_gmm_bwd(grads[0], ctx->get_saved_variables());
    return {dx, dmu, dlog_sigma, dlogit_pi};
  }
};

at::Tensor gmm_nll_fwd_autograd(const at::Tensor& x, const at::Tensor& mu, const at::Tensor& log_sigma,
                                const at::Tensor& logit_pi) {
  return GmmNll::apply(x, mu, log_sigma, logit_pi);
}

}  // namespace

TORCH_LIBRARY_IMPL(melnet_fast, Autograd, m) {
  m.impl("lstm_sweep_2d_fwd", &lstm_sweep_2d_fwd_autograd);
  m.impl("gmm_nll_fwd", &gmm_nll_fwd_autograd);
}

}  // namespace melnet_fast
