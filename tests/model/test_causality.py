"""Causality: log p(x_ij) depends on x only through the elements before (i, j) in the multiscale order."""

import pytest
import torch

import melnet_fast
from melnet_fast.multiscale import generation_order
from tests.model.helpers import BACKENDS, random_model, random_spectrogram, tiny_config

CASES = [
    pytest.param(3, 4, 8, id="3tiers-T4-F8"),
    pytest.param(4, 4, 8, id="4tiers-T4-F8"),
]


def jacobians(model, x):
    """d log_prob[b, i, j] / d x and d theta[b, i, j] / d x for every output (i, j), as [B*T*F, B*T*F]
    matrices (row = output, column = input). theta is a random combination of all 3K mixture parameters."""
    K = model.config.n_mixtures
    w = torch.randn(3, K, dtype=x.dtype, generator=torch.Generator().manual_seed(7))

    def f(x):
        params = model(x)
        theta = sum((p * w[k]).sum(-1) for k, p in enumerate(params))
        return torch.stack([model.log_prob(x), theta])

    n = x.numel()
    jac = torch.autograd.functional.jacobian(f, x)  # [2, B, T, F, B, T, F]
    return jac[0].reshape(n, n), jac[1].reshape(n, n)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("G,T,F", CASES)
def test_causality_full_jacobian(backend, G, T, F):
    config = tiny_config(n_tiers=G, layers=(2,) * G, n_mels=F)
    model = random_model(config)
    B = 2
    x = random_spectrogram(B, T, F)
    with melnet_fast.use_backend(backend):
        d_logp, d_theta = jacobians(model, x)
    order = generation_order(T, F, G).flatten()
    batch = torch.arange(B).repeat_interleave(T * F)
    rank = order.repeat(B)
    same_batch = batch[:, None] == batch[None, :]
    after = (rank[None, :] > rank[:, None]) | ~same_batch  # input comes after the output (or other example)
    at_or_after = (rank[None, :] >= rank[:, None]) | ~same_batch
    assert torch.all(d_logp[after] == 0), f"log_prob depends on later elements at {after.nonzero()[:5]}"
    assert torch.all(d_theta[at_or_after] == 0), f"theta depends on x_ij or later at {at_or_after.nonzero()[:5]}"
    assert torch.all(d_logp.diagonal() != 0)  # log p(x_ij) depends on x_ij itself
    # ... and theta_ij on the element just before it in the order (the previous channel, the last channel of the
    # previous frame, or the last element of the previous tier through the feature-extraction network).
    by_rank = torch.argsort(order)  # position of each rank
    for b in range(B):
        for r in range(1, T * F):
            out, prev = b * T * F + by_rank[r], b * T * F + by_rank[r - 1]
            assert d_theta[out, prev] != 0, f"theta at rank {r} does not depend on rank {r - 1}"
