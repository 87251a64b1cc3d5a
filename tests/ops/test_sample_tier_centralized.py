"""The C++ sampler of a tier with a centralized stack and text attention against the reference sampler: the
same draws give the same values, alignment, stop lengths and log density."""

import pytest
import torch

import melnet_fast
from melnet_fast.ops import sample_tier_centralized
from melnet_fast.ops.tier_sampling.centralized_weights import expected_shapes
from tests.ops.test_sample_tier import make_case


def centralized_case(B, T, F, D, L, K_att, lengths, dtype=torch.float64, seed=0, step_bias=0.6):
    """Random centralized weights (attention part when K_att > 0), memory [B, U, D] and text lengths [B]; the
    window's position steps are biased up (step_bias) so that rows read their texts within T frames."""
    g = torch.Generator().manual_seed(seed + 11)
    w = [torch.randn(s, generator=g, dtype=dtype) * (0.5 if len(s) > 1 else 0.3)
         for s in expected_shapes(D, F, L, K_att)]
    if not K_att:
        return w, None, None
    w[-3][:K_att] += step_bias  # window.bias: (position steps, log widths, weight logits)
    U = max(lengths)
    memory = torch.randn(B, U, D, generator=g, dtype=dtype)
    return w, memory, torch.tensor(lengths)


def both(*args, **kwargs):
    out = {}
    for backend in ("reference", "cpu"):
        with melnet_fast.use_backend(backend):
            out[backend] = sample_tier_centralized(*args, **kwargs)
    return out["reference"], out["cpu"]


def assert_same(ref, got, tol=1e-10):
    x, log_density, alignment, lengths = got
    assert torch.equal(lengths, ref[3]), f"stop lengths {lengths.tolist()} != reference {ref[3].tolist()}"
    torch.testing.assert_close(x, ref[0], rtol=tol, atol=tol)
    torch.testing.assert_close(log_density, ref[1], rtol=tol, atol=tol)
    if ref[2] is None:
        assert alignment is None
    else:
        torch.testing.assert_close(alignment, ref[2], rtol=tol, atol=tol)


CASES = [pytest.param(3, 9, 5, 6, 3, 2, 1, [7, 2, 4], id="B3-T9-F5-D6-L3-K2-a1-U7,2,4"),
         pytest.param(1, 7, 3, 5, 1, 3, 0, [3], id="B1-T7-F3-D5-L1-K3-a0-U3"),
         pytest.param(2, 8, 6, 4, 2, 1, 0, [5, 5], id="B2-T8-F6-D4-L2-K1-a0-U5,5")]


@pytest.mark.parametrize("stop", [None, 0.5], ids=["no-stop", "stop0.5"])
@pytest.mark.parametrize("temperature,n_prime", [(1.0, 0), (0.7, 2), (0.0, 0)])
@pytest.mark.parametrize("B,T,F,D,L,K_att,a,lengths", CASES)
def test_cpu_equals_reference(B, T, F, D, L, K_att, a, lengths, temperature, n_prime, stop):
    x0, cz_t, cz_f, u, eps, w = make_case(B, T, F, D, L, 3, seed=4)
    cw, memory, text_lengths = centralized_case(B, T, F, D, L, K_att, lengths)
    ref, got = both(x0, cz_t, cz_f, u, eps, w, L, 3, temperature, n_prime, cw, a, memory, text_lengths, stop)
    assert_same(ref, got)
    if stop is not None and temperature > 0:  # the cases are chosen so that some row stops before T
        assert int(got[3].min()) < T, f"no row stopped: lengths {got[3].tolist()}"
    assert torch.equal(got[0][:, :n_prime], x0[:, :n_prime])


def test_rows_stop_at_different_frames_and_keep_zeros_after():
    B, T, F, D, L = 3, 12, 4, 6, 2
    x0, cz_t, cz_f, u, eps, w = make_case(B, T, F, D, L, 2, seed=6)
    cw, memory, text_lengths = centralized_case(B, T, F, D, L, 2, [2, 9, 5], step_bias=0.4)
    ref, got = both(x0, cz_t, cz_f, u, eps, w, L, 2, 1.0, 0, cw, 1, memory, text_lengths, 0.5)
    assert_same(ref, got)
    n = got[3].tolist()
    assert len(set(n)) > 1, f"rows should stop at different frames, got {n}"
    for b in range(B):
        assert torch.all(got[0][b, n[b]:] == 0) and torch.all(got[2][b, n[b]:] == 0)
        assert torch.all(got[2][b, :n[b], int(text_lengths[b]):] == 0)  # padding gets no weight


def test_centralized_stack_without_text():
    B, T, F, D, L = 2, 5, 4, 5, 2
    x0, cz_t, cz_f, u, eps, w = make_case(B, T, F, D, L, 2, seed=8)
    cw, _, _ = centralized_case(B, T, F, D, L, 0, [])
    ref, got = both(x0, cz_t, cz_f, u, eps, w, L, 2, 1.0, 1, cw, 0)
    assert_same(ref, got)
    assert got[3].tolist() == [T, T]


def test_padding_and_neighbours_do_not_change_a_row():
    """Row 0 alone and next to a longer text (more padding in its memory, filled with other values)."""
    T, F, D, L = 8, 4, 5, 2
    x0, cz_t, cz_f, u, eps, w = make_case(2, T, F, D, L, 2, seed=9)
    cw, memory, text_lengths = centralized_case(2, T, F, D, L, 2, [3, 7])
    with melnet_fast.use_backend("cpu"):
        pair = sample_tier_centralized(x0, cz_t, cz_f, u, eps, w, L, 2, 1.0, 0, cw, 1, memory, text_lengths, 0.5)
        alone = sample_tier_centralized(x0[:1], cz_t[:1], cz_f[:1], u[:1], eps[:1], w, L, 2, 1.0, 0, cw, 1,
                                        memory[:1, :3], text_lengths[:1], 0.5)
    assert int(pair[3][0]) == int(alone[3][0])
    torch.testing.assert_close(pair[0][:1], alone[0], rtol=0, atol=0)
    torch.testing.assert_close(pair[1][:1], alone[1], rtol=0, atol=0)
    torch.testing.assert_close(pair[2][:1, :, :3], alone[2], rtol=0, atol=0)


def test_noncontiguous_inputs_and_float32():
    B, T, F, D, L = 2, 6, 5, 6, 2
    x0, cz_t, cz_f, u, eps, w = make_case(B, T, F, D, L, 3, seed=10)
    cw, memory, text_lengths = centralized_case(B, T, F, D, L, 2, [4, 6])
    args = (x0, cz_t, cz_f, u, eps, w, L, 3, 0.8, 1, cw, 1, memory, text_lengths, 0.5)
    with melnet_fast.use_backend("cpu"):
        want = sample_tier_centralized(*args)
        memory_nc = memory.transpose(1, 2).contiguous().transpose(1, 2)
        cz_f_nc = cz_f.transpose(1, 3).contiguous().transpose(1, 3)
        cw_nc = [t.t().contiguous().t() if t.dim() == 2 else t for t in cw]
        got = sample_tier_centralized(x0, cz_t, cz_f_nc, u, eps, w, L, 3, 0.8, 1, cw_nc, 1, memory_nc, text_lengths,
                                      0.5)
        assert not memory_nc.is_contiguous() and not cz_f_nc.is_contiguous()
        assert_same(want, got, tol=0)
        f32 = sample_tier_centralized(*[a.float() if isinstance(a, torch.Tensor) and a.is_floating_point() else
                                        [t.float() for t in a] if isinstance(a, list) else a for a in args])
    assert torch.equal(f32[3], want[3])
    torch.testing.assert_close(f32[0].double(), want[0], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(f32[2].double(), want[2], rtol=1e-4, atol=1e-4)

