"""lstm_sweep_2d(recompute=...): the segmented recompute (ops/lstm_sweep/recompute.py) gives the stored mode's
values and gradients on every backend the CPU runs, keeps no gates, and keeps exactly its checkpoints."""

import math

import pytest
import torch

import melnet_fast
from melnet_fast.ops import lstm_sweep_2d
from melnet_fast.ops.lstm_sweep import gpu_host, recompute
from tests.ops.helpers import (
    SWEEP_RESULTS,
    assert_close,
    assert_error_within_reference,
    make_sweep_inputs,
    random_like,
    strided_sweep_inputs,
    sweep_value_and_grads,
)

ALL4 = ["t+", "t-", "f+", "f-"]


def case(B, T, F, I, H, directions, mode):
    return pytest.param(B, T, F, I, H, directions, mode,
                        id=f"B{B}-T{T}-F{F}-I{I}-H{H}-{'.'.join(directions)}-k{mode}")


# Spans that divide the directions' lengths and spans that do not, of one position, of the whole line, longer than
# the line, and the default ceil(sqrt(L)).
CASES = [
    case(2, 7, 5, 3, 6, ALL4, True),  # k = 3 along time (7 = 3+3+1), 3 along frequency (5 = 3+2)
    case(2, 6, 9, 4, 5, ["t+", "f+", "f-"], 3),  # divides both
    case(3, 5, 4, 2, 3, ["f-", "t-"], 2),  # divides F, not T
    case(1, 4, 7, 3, 4, ["f+"], 1),  # one position per span
    case(2, 5, 3, 3, 2, ["t-"], 5),  # one span: the whole line
    case(2, 3, 4, 2, 3, ["t+", "f-"], 50),  # longer than every line
    case(1, 1, 6, 2, 3, ["t+", "f-"], 2),  # lines of one position along time
]


@pytest.mark.parametrize("backend", ["reference", "cpu"])
@pytest.mark.parametrize("B, T, F, I, H, directions, mode", CASES)
def test_float64_recompute_equals_stored(backend, B, T, F, I, H, directions, mode):
    # The same kernels on the same data; only the order of the sums over positions differs (per span, then over
    # spans): float64 rounding near 1e-15, far below the 1e-3 of any wrong index, carry or checkpoint.
    inputs = make_sweep_inputs(B, T, F, I, H, len(directions), torch.float64)
    want = sweep_value_and_grads(backend, inputs, directions, False)
    got = sweep_value_and_grads(backend, inputs, directions, mode)
    for name, g, w in zip(SWEEP_RESULTS, got, want):
        assert_close(name, g, w, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_noncontiguous_inputs(backend):
    directions = ["f-", "t+", "t-"]
    inputs = make_sweep_inputs(2, 5, 4, 3, 3, len(directions), torch.float64)
    want = sweep_value_and_grads(backend, inputs, directions, False)
    got = sweep_value_and_grads(backend, strided_sweep_inputs(inputs), directions, 2)
    for name, g, w in zip(SWEEP_RESULTS, got, want):
        assert_close(name, g, w, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("B, T, F, I, H, directions, mode", [CASES[0], CASES[2], CASES[3]])
def test_triton_interpreter_recompute(B, T, F, I, H, directions, mode, monkeypatch):
    # float32 in the interpreter: the spans' GEMMs sum over fewer rows than the stored mode's, so compare both with
    # the float64 reference at the reference's own float32 error (tests/ops/helpers.py).
    pytest.importorskip("triton")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    inputs = make_sweep_inputs(B, T, F, I, H, len(directions), torch.float32)
    exact = sweep_value_and_grads("reference", [t.double() for t in inputs], directions, False)
    ref32 = sweep_value_and_grads("reference", inputs, directions, False)
    got = sweep_value_and_grads("triton", inputs, directions, mode)
    for name, g, r, e in zip(SWEEP_RESULTS, got, ref32, exact):
        assert_error_within_reference(name, g, r, e)


def test_forward_keeps_no_gates_only_its_checkpoints():
    """What autograd holds between forward and backward: with recompute the inputs, y and one [lines, H] cell
    state per span boundary of every direction; without, also the gates and cell states of every position."""
    B, T, F, I, H, directions = 2, 9, 5, 3, 4, ["t+", "f+", "f-"]
    inputs = [t.requires_grad_() for t in make_sweep_inputs(B, T, F, I, H, len(directions), torch.float64)]
    inputs_bytes = sum(t.numel() for t in inputs) * 8
    y_bytes = B * T * F * len(directions) * H * 8

    def saved_bytes(mode):
        seen = {}

        def pack(t):
            seen[t.data_ptr(), t.numel()] = t.numel() * t.element_size()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), melnet_fast.use_backend("cpu"):
            lstm_sweep_2d(*inputs, directions, recompute=mode)
        return sum(seen.values())

    # k = 3 along time (9 = 3 spans: 2 boundaries of B*F lines), 3 along frequency (5 = 2 spans: 1 boundary of B*T)
    boundaries = 2 * B * F + 2 * (1 * B * T)
    assert saved_bytes(True) == inputs_bytes + y_bytes + boundaries * H * 8
    stored = saved_bytes(False)
    N, R = B * T * F, len(directions)
    bias_bytes = inputs[3].numel() * 8  # the stored mode's backward does not need the bias
    assert stored == inputs_bytes - bias_bytes + y_bytes + R * N * 5 * H * 8  # gates [R, N, 4H], cell [R, N, H]
    # One span of a position: a boundary after every position but each line's last.
    assert saved_bytes(1) == inputs_bytes + y_bytes + ((T - 1) * B * F + 2 * (F - 1) * B * T) * H * 8


def test_span_rule_and_spans():
    assert [recompute.segment_length(L) for L in (1, 2, 4, 5, 9, 10, 64, 215)] == [1, 2, 2, 3, 3, 4, 8, 15]
    assert recompute.segment_length(10, 4) == 4 and recompute.segment_length(3, 50) == 3
    assert recompute.spans_of(0, 7, 3) == [(0, 3), (3, 3), (6, 1)]
    assert recompute.spans_of(1, 7, 3) == [(4, 3), (1, 3), (0, 1)]  # '-': from the end of the axis
    for L in range(1, 40):
        k = recompute.segment_length(L)
        assert k == math.ceil(math.sqrt(L))
        for code in range(4):
            covered = sorted(p for lo, n in recompute.spans_of(code, L, k) for p in range(lo, lo + n))
            assert covered == list(range(L))


@pytest.mark.parametrize("mode", [0, -2, 2.5, "yes", None])
def test_bad_recompute_is_named(mode):
    inputs = make_sweep_inputs(1, 2, 2, 3, 2, 1)
    with pytest.raises(ValueError, match="recompute must be a bool or a span length >= 1"):
        lstm_sweep_2d(*inputs, ["t+"], recompute=mode)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_without_grad_recompute_changes_nothing(backend):
    inputs = make_sweep_inputs(2, 3, 4, 2, 3, 2)
    with torch.no_grad(), melnet_fast.use_backend(backend):
        assert torch.equal(lstm_sweep_2d(*inputs, ["t+", "f-"], recompute=2), lstm_sweep_2d(*inputs, ["t+", "f-"]))


@pytest.mark.parametrize("code", range(4), ids=["t+", "t-", "f+", "f-"])
def test_gpu_host_per_line_states_match_the_reference_spans(code, monkeypatch):
    """The GPU host's padded grid (per-line initial states, carried-in dh_last / dc_last) over the Triton step
    kernels in the interpreter, against torch's LSTM from the same states."""
    pytest.importorskip("triton")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    from melnet_fast.ops.lstm_sweep.triton_backend import TritonSteps

    B, T, F, I, H = 2, 3, 4, 3, 5
    x, w_ih, w_hh, bias, _, _ = make_sweep_inputs(B, T, F, I, H, 1, torch.float32, seed=code)
    lines = B * F if code < 2 else B * T
    h, c, dh_last, dc_last = (torch.randn(lines, H, generator=torch.Generator().manual_seed(i)) for i in range(4))
    y, gates, cell = gpu_host.forward(TritonSteps, x, w_ih, w_hh, bias, h[None], c[None], [code], True)
    grad_y = random_like(y, seed=9)
    got = [y, *gpu_host.backward(TritonSteps, grad_y, x, w_ih, w_hh, h[None], c[None], y, gates, cell, [code],
                                 dh_last[None], dc_last[None])]

    def reference(dtype):
        args = [t.to(dtype) for t in (x, w_ih[0], w_hh[0], bias[0], h, c)]
        y, _ = recompute.REFERENCE_SPANS.forward(*args, code)
        return [y, *recompute.REFERENCE_SPANS.backward(*args, code, grad_y.to(dtype), dh_last.to(dtype),
                                                       dc_last.to(dtype))]

    for name, g, r, e in zip(("y", "dx", "dw_ih", "dw_hh", "dbias", "dh", "dc"), got, reference(torch.float32),
                             reference(torch.float64)):
        assert_error_within_reference(name, g.reshape(e.shape), r, e)


@pytest.mark.parametrize("code", [0, 3], ids=["t+", "f-"])
def test_per_line_form_of_the_cpu_ops_passes_opcheck(code):
    """The sweep ops with per-line initial states and carried-in final gradients (what the spans call): schema,
    fake kernels and autograd formula agree with the kernels (torch.library.opcheck)."""
    ops = torch.ops.melnet_fast
    B, T, F, I, H = 2, 3, 4, 3, 5
    x, w_ih, w_hh, bias, _, _ = make_sweep_inputs(B, T, F, I, H, 1, torch.float64, seed=code)
    lines = B * F if code < 2 else B * T
    h, c, dh_last, dc_last = (torch.randn(1, lines, H, dtype=torch.float64, generator=torch.Generator().manual_seed(i))
                              for i in range(4))
    torch.library.opcheck(ops.lstm_sweep_2d_fwd.default, (x, w_ih, w_hh, bias, h, c, [code], True))
    y, gates, cell = ops.lstm_sweep_2d_fwd(x, w_ih, w_hh, bias, h, c, [code], True)
    grad_y = random_like(y, seed=3)
    torch.library.opcheck(ops.lstm_sweep_2d_bwd.default,
                          (grad_y, x, w_ih, w_hh, h, c, y, gates, cell, [code], dh_last, dc_last))
    dh0, dc0 = ops.lstm_sweep_2d_bwd(grad_y, x, w_ih, w_hh, h, c, y, gates, cell, [code], dh_last, dc_last)[4:]
    assert dh0.shape == dc0.shape == (1, lines, H)
