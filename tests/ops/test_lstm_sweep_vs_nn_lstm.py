"""lstm_sweep_2d against torch.nn.LSTM modules run direction by direction: an oracle independent of reference.py."""

import pytest
import torch
from torch.func import functional_call

from tests.ops.helpers import SWEEP_RESULTS, assert_close, make_sweep_inputs, random_like, sweep_value_and_grads


def sweep_with_nn_lstm(x, w_ih, w_hh, bias, h0, c0, directions):
    """Every sequence of every direction through an nn.LSTM (batch_first) holding direction r's weights, with
    bias_ih = bias[r] and bias_hh = 0, from h0[r], c0[r]; backward directions flip the sequence and back."""
    B, T, F, I = x.shape
    H = w_hh.shape[2]
    lstm = torch.nn.LSTM(I, H, batch_first=True).to(x.dtype)
    outs = []
    for r, d in enumerate(directions):
        along_time, backward = d[0] == "t", d[1] == "-"
        # [sequences, length, I]: one sequence per (b, f) along time, per (b, t) along frequency.
        seqs = x.transpose(1, 2).reshape(B * F, T, I) if along_time else x.reshape(B * T, F, I)
        if backward:
            seqs = seqs.flip(1)
        n = seqs.shape[0]
        state = (h0[r].expand(1, n, H), c0[r].expand(1, n, H))
        params = {"weight_ih_l0": w_ih[r], "weight_hh_l0": w_hh[r], "bias_ih_l0": bias[r],
                  "bias_hh_l0": torch.zeros_like(bias[r])}
        h, _ = functional_call(lstm, params, (seqs, state))
        if backward:
            h = h.flip(1)
        outs.append(h.reshape(B, F, T, H).transpose(1, 2) if along_time else h.reshape(B, T, F, H))
    return torch.cat(outs, dim=-1)


def nn_lstm_value_and_grads(inputs, directions):
    leaves = [t.detach().clone().requires_grad_() for t in inputs]
    y = sweep_with_nn_lstm(*leaves, directions)
    grads = torch.autograd.grad(y, leaves, random_like(y, seed=1234))
    return [y.detach()] + list(grads)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
@pytest.mark.parametrize("B, T, F, I, H, directions", [
    pytest.param(2, 5, 7, 3, 4, ["t+", "t-", "f+", "f-"], id="B2-T5-F7-I3-H4-t+.t-.f+.f-"),
    pytest.param(3, 6, 2, 4, 3, ["f-", "t-", "f+"], id="B3-T6-F2-I4-H3-f-.t-.f+"),
])
def test_matches_nn_lstm(backend, B, T, F, I, H, directions):
    inputs = make_sweep_inputs(B, T, F, I, H, len(directions), torch.float64)
    want = nn_lstm_value_and_grads(inputs, directions)
    got = sweep_value_and_grads(backend, inputs, directions)
    for name, g, w in zip(SWEEP_RESULTS, got, want):
        assert_close(name, g, w, rtol=1e-10, atol=1e-10)  # float64: see test_lstm_sweep_backends.py
