// Fused CPU Gaussian-mixture NLL: forward, and a backward that recomputes the posteriors in the same pass
// that writes all four gradients (nothing but the inputs is kept between the two).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "common.h"

#include <cmath>
#include <limits>
#include <vector>

namespace melnet_fast {
namespace {

constexpr double kLogSqrt2Pi = 0.91893853320467274178;

// For one element: a_k = log softmax(logit)_k + log N(x; mu_k, sigma_k) into a[], log_pi into lp[],
// z_k = (x - mu_k) / sigma_k into z[], and returns logsumexp_k a_k.
template <typename T>
inline T mixture_terms(T x, const T* mu, const T* ls, const T* logit, int64_t K, T* a, T* lp, T* z) {
  T mx = -std::numeric_limits<T>::infinity();
  for (int64_t k = 0; k < K; ++k) mx = std::max(mx, logit[k]);
  T se = 0;
  for (int64_t k = 0; k < K; ++k) se += std::exp(logit[k] - mx);
  const T lse_logit = mx + std::log(se);
  T amax = -std::numeric_limits<T>::infinity();
  for (int64_t k = 0; k < K; ++k) {
    lp[k] = logit[k] - lse_logit;
    z[k] = (x - mu[k]) * std::exp(-ls[k]);
    a[k] = lp[k] - T(0.5) * z[k] * z[k] - ls[k] - T(kLogSqrt2Pi);
    amax = std::max(amax, a[k]);
  }
  if (!std::isfinite(amax)) return amax;
  T sa = 0;
  for (int64_t k = 0; k < K; ++k) sa += std::exp(a[k] - amax);
  return amax + std::log(sa);
}

at::Tensor gmm_nll_fwd_cpu(const at::Tensor& x_in, const at::Tensor& mu_in, const at::Tensor& ls_in,
                           const at::Tensor& lp_in) {
  const auto x = x_in.contiguous();
  const auto mu = mu_in.contiguous();
  const auto ls = ls_in.contiguous();
  const auto logit = lp_in.contiguous();
  const int64_t K = mu.size(-1);
  const int64_t M = x.numel();
  auto out = new_output(x.sizes(), x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "gmm_nll_fwd_cpu", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    const scalar_t* mp = mu.data_ptr<scalar_t>();
    const scalar_t* sp = ls.data_ptr<scalar_t>();
    const scalar_t* pp = logit.data_ptr<scalar_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    at::parallel_for(0, M, 1024, [&](int64_t lo, int64_t hi) {
      std::vector<scalar_t> buf(3 * K);
      for (int64_t e = lo; e < hi; ++e) {
        op[e] = -mixture_terms(xp[e], mp + e * K, sp + e * K, pp + e * K, K, buf.data(), buf.data() + K,
                               buf.data() + 2 * K);
      }
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> gmm_nll_bwd_cpu(
    const at::Tensor& grad_in, const at::Tensor& x_in, const at::Tensor& mu_in, const at::Tensor& ls_in,
    const at::Tensor& lp_in) {
  const auto grad = grad_in.contiguous();
  const auto x = x_in.contiguous();
  const auto mu = mu_in.contiguous();
  const auto ls = ls_in.contiguous();
  const auto logit = lp_in.contiguous();
  const int64_t K = mu.size(-1);
  const int64_t M = x.numel();
  auto gx = new_output(x.sizes(), x.options());
  auto gmu = new_output(mu.sizes(), x.options());
  auto gls = new_output(mu.sizes(), x.options());
  auto glp = new_output(mu.sizes(), x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "gmm_nll_bwd_cpu", [&] {
    const scalar_t* gp = grad.data_ptr<scalar_t>();
    const scalar_t* xp = x.data_ptr<scalar_t>();
    const scalar_t* mp = mu.data_ptr<scalar_t>();
    const scalar_t* sp = ls.data_ptr<scalar_t>();
    const scalar_t* pp = logit.data_ptr<scalar_t>();
    scalar_t* gxp = gx.data_ptr<scalar_t>();
    scalar_t* gmp = gmu.data_ptr<scalar_t>();
    scalar_t* gsp = gls.data_ptr<scalar_t>();
    scalar_t* gpp = glp.data_ptr<scalar_t>();
    at::parallel_for(0, M, 1024, [&](int64_t lo, int64_t hi) {
      std::vector<scalar_t> buf(3 * K);
      scalar_t* a = buf.data();
      scalar_t* lp = a + K;
      scalar_t* z = a + 2 * K;
      for (int64_t e = lo; e < hi; ++e) {
        const scalar_t* ls_e = sp + e * K;
        const scalar_t lse = mixture_terms(xp[e], mp + e * K, ls_e, pp + e * K, K, a, lp, z);
        const scalar_t g = gp[e];
        scalar_t dx = 0;
        for (int64_t k = 0; k < K; ++k) {
          const scalar_t w = std::exp(a[k] - lse);  // posterior of component k
          const scalar_t pi = std::exp(lp[k]);
          // w == 0 skips 0 * inf when z is huge for a component that carries no weight.
          const scalar_t dz = w == scalar_t(0) ? scalar_t(0) : g * w * z[k];  // d nll / d z_k * ...
          const scalar_t inv_s = std::exp(-ls_e[k]);
          dx += dz * inv_s;
          gmp[e * K + k] = -dz * inv_s;
          gsp[e * K + k] = w == scalar_t(0) ? scalar_t(0) : g * w * (scalar_t(1) - z[k] * z[k]);
          gpp[e * K + k] = g * (pi - w);
        }
        gxp[e] = dx;
      }
    });
  });
  return {gx, gmu, gls, glp};
}

}  // namespace

TORCH_LIBRARY_IMPL(melnet_fast, CPU, m) {
  m.impl("gmm_nll_fwd", &gmm_nll_fwd_cpu);
  m.impl("gmm_nll_bwd", &gmm_nll_bwd_cpu);
}

}  // namespace melnet_fast
