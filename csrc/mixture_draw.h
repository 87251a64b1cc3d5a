// One draw from a Gaussian mixture and the log density of the drawn value, shared by the CPU sampler
// (csrc/sample_tier_cpu.cpp) and the CUDA sampler (csrc/cuda/sample_tier_kernel.cuh). The rule is the one of
// gmm_sample_from_noise (melnet_fast/ops/gmm/reference.py), so equal noise gives equal samples on every backend.
// Torch-free, host and device.
#pragma once

#include "scalar_math.h"

namespace melnet_fast {

template <typename T>
struct Drawn {
  T value;        // the drawn element
  T log_density;  // log p(value) under the untempered mixture
};

// The drawn value alone (the part of draw_mixture that the next element waits for): theta = [mu (K), log_sigma
// (K), logit_pi (K)]; tau >= 0 the temperature, u ~ U[0, 1) and eps ~ N(0, 1) the noise.
// Component: the first most probable one at tau = 0, else k = #{k : cdf_k <= u} (clamped to K - 1) with cdf the
// running sum of softmax(logit_pi / tau); value mu_k + tau sigma_k eps (tau = 0: mu_k), rounded as the reference
// rounds it (no fused multiply-add), then kept in [lo, hi] (math::keep_in_range).
template <typename T>
MF_MATH T draw_mixture_value(const T* theta, int K, T tau, T u, T eps, T lo, T hi) {
  const T* mu = theta;
  const T* ls = theta + K;
  const T* lp = theta + 2 * K;
  int k_sel = 0;
  T value;
  if (tau == T(0)) {
    for (int k = 1; k < K; ++k) {
      if (lp[k] > lp[k_sel]) k_sel = k;
    }
    value = mu[k_sel];
  } else {
    T mx = -math::infinity<T>();
    for (int k = 0; k < K; ++k) {
      const T v = math::div(lp[k], tau);
      mx = v > mx ? v : mx;
    }
    T sum = T(0);
    for (int k = 0; k < K; ++k) sum += math::exp(math::div(lp[k], tau) - mx);
    T cdf = T(0);
    int below = 0;
    for (int k = 0; k < K; ++k) {
      cdf += math::div(math::exp(math::div(lp[k], tau) - mx), sum);
      below += cdf <= u ? 1 : 0;
    }
    k_sel = below < K - 1 ? below : K - 1;
    value = math::add_rn(mu[k_sel], math::mul_rn(math::mul_rn(tau, math::exp(ls[k_sel])), eps));
  }
  return math::keep_in_range(value, lo, hi);
}

// log sum_k pi_k N(value; mu_k, sigma_k) with pi = softmax(logit_pi) (the untempered mixture): two log-sum-exps.
template <typename T>
MF_MATH T mixture_log_density(const T* theta, int K, T value) {
  const T* mu = theta;
  const T* ls = theta + K;
  const T* lp = theta + 2 * K;
  const T lse = math::log_sum_exp<T>(K, [&](int k) { return lp[k]; });
  return math::log_sum_exp<T>(K, [&](int k) {
    const T z = (value - mu[k]) * math::exp(-ls[k]);
    return lp[k] - lse - T(0.5) * z * z - ls[k] - T(math::kLogSqrt2Pi);
  });
}

// The draw and the log density of the kept value.
template <typename T>
MF_MATH Drawn<T> draw_mixture(const T* theta, int K, T tau, T u, T eps, T lo, T hi) {
  const T value = draw_mixture_value(theta, K, tau, u, eps, lo, hi);
  return {value, mixture_log_density(theta, K, value)};
}

}  // namespace melnet_fast
