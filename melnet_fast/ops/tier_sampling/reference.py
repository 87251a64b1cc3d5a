"""Reference cached sampler of one tier, in eager PyTorch: O(T*F) cell steps per layer, a Python loop per
element. The oracle of the C++ and CUDA samplers (and what public cached samplers do, minus their GRUs)."""

from __future__ import annotations

import torch

from melnet_fast.log_mel_scale import SAMPLE_RANGE
from melnet_fast.ops.gmm.reference import gmm_nll_ref, gmm_sample_from_noise, keep_in_range
from melnet_fast.ops.lstm_sweep.reference import lstm_cell
from melnet_fast.ops.tier_sampling.centralized_step import CentralizedStep
from melnet_fast.ops.tier_sampling.layout import unpack


def _sweep(seq, w_ih, w_hh, bias, h0, c0, reverse):
    """A 1D LSTM over seq [B, F, D] along F -> [B, F, D]."""
    B, F, D = seq.shape
    h, c = h0.expand(B, D), c0.expand(B, D)
    out = [None] * F
    for j in (range(F - 1, -1, -1) if reverse else range(F)):
        h, c = lstm_cell(seq[:, j], h, c, w_ih, w_hh, bias)
        out[j] = h
    return torch.stack(out, dim=1)


def sample_tier_ref(x_init, cz_t, cz_f, u, eps, weights, n_layers: int, n_mixtures: int, temperature: float,
                    n_prime: int, x_min: float = SAMPLE_RANGE[0], x_max: float = SAMPLE_RANGE[1]):
    """See melnet_fast.ops.sample_tier. Returns (x [B, T, F], log_density [B])."""
    x, log_density, _, _ = _sample(x_init, cz_t, cz_f, u, eps, weights, n_layers, n_mixtures, temperature, n_prime,
                                   x_min, x_max)
    return x, log_density


def sample_tier_centralized_ref(x_init, cz_t, cz_f, u, eps, weights, n_layers: int, n_mixtures: int,
                                temperature: float, n_prime: int, centralized_weights, attention_layer: int,
                                memory=None, text_lengths=None, stop_threshold: float | None = None,
                                x_min: float = SAMPLE_RANGE[0], x_max: float = SAMPLE_RANGE[1]):
    """See melnet_fast.ops.sample_tier_centralized. Returns (x, log_density, alignment [B, T, U] or None,
    lengths [B])."""
    step = CentralizedStep(centralized_weights, n_layers, attention_layer, x_init.shape[0], memory, text_lengths)
    return _sample(x_init, cz_t, cz_f, u, eps, weights, n_layers, n_mixtures, temperature, n_prime, x_min, x_max,
                   step, stop_threshold)


def _sample(x_init, cz_t, cz_f, u, eps, weights, n_layers, n_mixtures, temperature, n_prime, x_min, x_max,
            centralized: CentralizedStep | None = None, stop_threshold: float | None = None):
    """The cached sampler; `centralized` (per-frame step) adds its terms to the frequency-delayed stack's inputs
    and may stop rows (attention mass past the end of the text > stop_threshold, from frame max(n_prime, 1) on).
    Every drawn value is kept in [x_min, x_max] (keep_in_range) before the next element reads it.
    Returns (x, log_density, alignment or None, lengths): frames at and after lengths[b] are zeros."""
    W = unpack(weights, n_layers, n_mixtures)
    B, T, F = x_init.shape
    D = cz_t.shape[-1]
    K = n_mixtures
    x = x_init.clone()
    log_density = x.new_zeros(B)
    lengths = torch.full((B,), T, dtype=torch.long, device=x.device)
    active = torch.ones(B, dtype=torch.bool, device=x.device)
    alignment = None
    # Time LSTM state per layer, one sequence per (b, channel), carried from frame to frame.
    t_state = [(lay.t_h0[0].expand(B * F, D), lay.t_c0[0].expand(B * F, D)) for lay in W.layers]
    for i in range(T):
        prev = x[:, i - 1] if i > 0 else x.new_zeros(B, F)
        ht = prev.unsqueeze(-1) * W.xt_w[:, 0] + W.xt_b + cz_t[:, i]  # [B, F, D]
        ht_layers = []
        for l, lay in enumerate(W.layers):
            h, c = lstm_cell(ht.reshape(B * F, D), *t_state[l], lay.t_w_ih[0], lay.t_w_hh[0], lay.t_bias[0])
            t_state[l] = (h, c)
            up = _sweep(ht, lay.t_w_ih[1], lay.t_w_hh[1], lay.t_bias[1], lay.t_h0[1], lay.t_c0[1], False)
            down = _sweep(ht, lay.t_w_ih[2], lay.t_w_hh[2], lay.t_bias[2], lay.t_h0[2], lay.t_c0[2], True)
            feats = torch.cat([h.reshape(B, F, D), up, down], dim=-1)
            ht = ht + feats @ lay.t_proj_w.t() + lay.t_proj_b
            ht_layers.append(ht)
        if centralized is not None:
            terms, phi, beyond = centralized.step(prev)
            if phi is not None:
                if alignment is None:
                    alignment = x.new_zeros(B, T, phi.shape[1])
                alignment[:, i] = phi
            if stop_threshold is not None and beyond is not None and i >= max(n_prime, 1):
                stopping = active & (beyond > stop_threshold)
                lengths[stopping] = i
                active &= ~stopping
                if not bool(active.any()):
                    break
            ht_layers = [h + t.unsqueeze(1) for h, t in zip(ht_layers, terms)]  # broadcast over frequency
        if i < n_prime:  # primed frame: only the time-delayed (and centralized) caches advance
            continue
        f_state = [(lay.f_h0[0].expand(B, D), lay.f_c0[0].expand(B, D)) for lay in W.layers]
        for j in range(F):
            prev_x = x[:, i, j - 1] if j > 0 else x.new_zeros(B)
            hf = prev_x.unsqueeze(-1) * W.xf_w[:, 0] + W.xf_b + cz_f[:, i, j]
            for l, lay in enumerate(W.layers):
                h, c = lstm_cell(hf + ht_layers[l][:, j], *f_state[l], lay.f_w_ih[0], lay.f_w_hh[0],
                                 lay.f_bias[0])
                f_state[l] = (h, c)
                hf = hf + h @ lay.f_proj_w.t() + lay.f_proj_b
            theta = hf @ W.head_w.t() + W.head_b
            mu, log_sigma, logit_pi = theta[:, :K], theta[:, K:2 * K], theta[:, 2 * K:]
            value = gmm_sample_from_noise(mu, log_sigma, logit_pi, temperature, u[:, i, j], eps[:, i, j])
            value = keep_in_range(value, x_min, x_max)
            x[:, i, j] = value
            log_density -= torch.where(active, gmm_nll_ref(value, mu, log_sigma, logit_pi), 0)
    if centralized is not None:
        after = torch.arange(T, device=x.device)[None, :] >= lengths[:, None]
        x[after] = 0
        if alignment is not None:
            alignment[after] = 0
    return x, log_density, alignment, lengths
