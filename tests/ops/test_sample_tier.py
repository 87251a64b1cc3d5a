"""The tier samplers (reference and cpu) against recomputation of the full tier network per element."""

import pytest
import torch

import melnet_fast
from melnet_fast.ops import gmm_nll_ref, lstm_sweep_2d_ref, sample_tier
from melnet_fast.ops.gmm.reference import draw_noise
from melnet_fast.ops.tier_sampling.layout import layout, unpack


def random_weights(D, L, K, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = []
    for slot in layout(L):
        shape = slot.size(D, K)
        # A small head keeps sigma moderate: the drawn value feeds the next channel's input, and a large head
        # turns that loop into an explosion (inf samples) with random weights.
        scale = 0.06 if slot.key == "head_w" else 0.6 if len(shape) > 1 else 0.3
        w.append(torch.randn(shape, generator=g, dtype=dtype) * scale)
    return w


def tier_forward(x, cz_t, cz_f, weights, L, K):
    """The full tier network under teacher forcing (the paper, section 4; TierNetwork), composed from the reference
    sweep."""
    W = unpack(weights, L, K)
    x_t = torch.nn.functional.pad(x, (0, 0, 1, 0))[:, :-1]  # frame i sees frame i-1
    x_f = torch.nn.functional.pad(x, (1, 0))[..., :-1]  # channel j sees channel j-1
    ht = x_t.unsqueeze(-1) * W.xt_w[:, 0] + W.xt_b + cz_t
    hf = x_f.unsqueeze(-1) * W.xf_w[:, 0] + W.xf_b + cz_f
    for lay in W.layers:
        s = lstm_sweep_2d_ref(ht, lay.t_w_ih, lay.t_w_hh, lay.t_bias, lay.t_h0, lay.t_c0, ["t+", "f+", "f-"])
        ht = ht + s @ lay.t_proj_w.t() + lay.t_proj_b
        s = lstm_sweep_2d_ref(hf + ht, lay.f_w_ih, lay.f_w_hh, lay.f_bias, lay.f_h0, lay.f_c0, ["f+"])
        hf = hf + s @ lay.f_proj_w.t() + lay.f_proj_b
    theta = hf @ W.head_w.t() + W.head_b
    return theta[..., :K], theta[..., K:2 * K], theta[..., 2 * K:]


def make_case(B, T, F, D, L, K, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed + 1)
    weights = random_weights(D, L, K, dtype, seed)
    cz_t = torch.randn(B, T, F, D, generator=g, dtype=dtype) * 0.5
    cz_f = torch.randn(B, T, F, D, generator=g, dtype=dtype) * 0.5
    x0 = torch.randn(B, T, F, generator=g, dtype=dtype)
    u, eps = draw_noise((B, T, F), "cpu", dtype, g)
    return x0, cz_t, cz_f, u, eps, weights


def backends_here():
    return [b for b in ("reference", "cpu") if b in melnet_fast.available_backends()]


CASES = [pytest.param(2, 4, 6, 5, 2, 3, id="B2-T4-F6-D5-L2-K3"),
         pytest.param(1, 3, 5, 4, 1, 1, id="B1-T3-F5-D4-L1-K1"),
         pytest.param(3, 5, 3, 6, 3, 4, id="B3-T5-F3-D6-L3-K4")]


@pytest.mark.parametrize("backend", backends_here())
@pytest.mark.parametrize("B,T,F,D,L,K", CASES)
def test_temperature_zero_equals_recomputation_per_element(backend, B, T, F, D, L, K):
    x0, cz_t, cz_f, u, eps, w = make_case(B, T, F, D, L, K)
    with melnet_fast.use_backend(backend):
        got, _ = sample_tier(x0, cz_t, cz_f, u, eps, w, L, K, temperature=0.0)
    x = torch.zeros_like(x0)
    for i in range(T):
        for j in range(F):
            mu, _, logit = tier_forward(x, cz_t, cz_f, w, L, K)
            k = logit[:, i, j].argmax(-1, keepdim=True)
            x[:, i, j] = mu[:, i, j].gather(-1, k).squeeze(-1)
    torch.testing.assert_close(got, x, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("n_prime", [0, 2])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("B,T,F,D,L,K", CASES)
def test_cpu_equals_reference_and_log_density(B, T, F, D, L, K, temperature, n_prime):
    if "cpu" not in melnet_fast.available_backends():
        pytest.fail("the cpu backend must be built for this test")
    n_prime = min(n_prime, T - 1)
    x0, cz_t, cz_f, u, eps, w = make_case(B, T, F, D, L, K, seed=3)
    out = {}
    for backend in ("reference", "cpu"):
        with melnet_fast.use_backend(backend):
            out[backend] = sample_tier(x0, cz_t, cz_f, u, eps, w, L, K, temperature, n_prime)
    torch.testing.assert_close(out["cpu"][0], out["reference"][0], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(out["cpu"][1], out["reference"][1], rtol=1e-10, atol=1e-10)
    x, log_density = out["cpu"]
    assert torch.equal(x[:, :n_prime], x0[:, :n_prime])
    mu, ls, lp = tier_forward(x, cz_t, cz_f, w, L, K)
    expected = -gmm_nll_ref(x, mu, ls, lp)[:, n_prime:].sum(dim=(1, 2))
    torch.testing.assert_close(log_density, expected, rtol=1e-10, atol=1e-10)


def test_cpu_float32_close_to_float64_reference():
    x0, cz_t, cz_f, u, eps, w = make_case(2, 4, 6, 8, 2, 3, seed=5)
    with melnet_fast.use_backend("reference"):
        ref, ref_ld = sample_tier(x0, cz_t, cz_f, u, eps, w, 2, 3, 0.0)
    with melnet_fast.use_backend("cpu"):
        got, got_ld = sample_tier(x0.float(), cz_t.float(), cz_f.float(), u.float(), eps.float(),
                                  [t.float() for t in w], 2, 3, 0.0)
    torch.testing.assert_close(got.double(), ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got_ld.double(), ref_ld, rtol=1e-4, atol=1e-3)


def test_noncontiguous_inputs():
    x0, cz_t, cz_f, u, eps, w = make_case(2, 4, 6, 5, 2, 3, seed=7)
    with melnet_fast.use_backend("cpu"):
        a = sample_tier(x0, cz_t, cz_f, u, eps, w, 2, 3, 1.0)
        cz_t_nc = cz_t.transpose(1, 2).contiguous().transpose(1, 2)
        u_nc = u.transpose(0, 2).contiguous().transpose(0, 2)
        b = sample_tier(x0, cz_t_nc, cz_f, u_nc, eps, w, 2, 3, 1.0)
    assert not cz_t_nc.is_contiguous()
    assert torch.isfinite(a[0]).all()
    torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("threads", [1, 2], ids=["1-thread", "2-threads"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_cpu_rows_sampled_together_equal_each_row_alone(threads, dtype):
    """The cpu sampler runs the rows of each thread together (one product over them per weight); each row's
    arithmetic is its own, so a batch of 5 (a block of 4 rows and one more, or two groups on two threads) gives,
    bit for bit, what each row gives alone. D = 16: whole vectors of gate rows and a tail of head rows (3K = 9)."""
    B, T, F, D, L, K = 5, 5, 7, 16, 2, 3
    x0, cz_t, cz_f, u, eps, w = make_case(B, T, F, D, L, K, dtype=dtype, seed=11)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with melnet_fast.use_backend("cpu"):
            x, ld = sample_tier(x0, cz_t, cz_f, u, eps, w, L, K, 1.0, 1)
            alone = [sample_tier(x0[b:b + 1], cz_t[b:b + 1], cz_f[b:b + 1], u[b:b + 1], eps[b:b + 1], w, L, K, 1.0, 1)
                     for b in range(B)]
    finally:
        torch.set_num_threads(before)
    assert torch.isfinite(x).all()
    torch.testing.assert_close(x, torch.cat([a[0] for a in alone]), rtol=0, atol=0)
    torch.testing.assert_close(ld, torch.cat([a[1] for a in alone]), rtol=0, atol=0)


def test_bad_input_names_the_argument():
    x0, cz_t, cz_f, u, eps, w = make_case(2, 4, 6, 5, 2, 3)
    with pytest.raises(ValueError, match="weights must hold"):
        sample_tier(x0, cz_t, cz_f, u, eps, w[:-1], 2, 3)
    bad = list(w)
    bad[5] = bad[5][:, :-1]
    with pytest.raises(ValueError, match=r"weights\[5\]"):
        sample_tier(x0, cz_t, cz_f, u, eps, bad, 2, 3)
    with pytest.raises(ValueError, match="cz_f"):
        sample_tier(x0, cz_t, cz_f[:, :, :-1], u, eps, w, 2, 3)
    with pytest.raises(ValueError, match="n_prime"):
        sample_tier(x0, cz_t, cz_f, u, eps, w, 2, 3, n_prime=9)
    with pytest.raises(ValueError, match="temperature"):
        sample_tier(x0, cz_t, cz_f, u, eps, w, 2, 3, temperature=-1.0)


def test_weights_of_another_dtype_than_the_data():
    """bf16/fp16 weights with float32 data are the cuda sampler's mode: other backends and other mixes refuse."""
    x0, cz_t, cz_f, u, eps, w = make_case(2, 4, 6, 5, 2, 3, dtype=torch.float32)
    w16 = [t.to(torch.bfloat16) for t in w]
    for backend in backends_here():
        with melnet_fast.use_backend(backend), pytest.raises(ValueError, match="only the cuda backend"):
            sample_tier(x0, cz_t, cz_f, u, eps, w16, 2, 3)
    with pytest.raises(ValueError, match="bfloat16 or float16 with float32 data"):
        sample_tier(x0.double(), cz_t.double(), cz_f.double(), u.double(), eps.double(), w16, 2, 3)
    mixed = list(w16)
    mixed[3] = w[3]
    with pytest.raises(ValueError, match=r"weights\[3\] has dtype"):
        sample_tier(x0, cz_t, cz_f, u, eps, mixed, 2, 3)


def saturating(weights, L):
    """The weights with every LSTM bias at +1e30 or -1e30 on half of its gate units: those pre-activations saturate
    sigmoid to 1 / 0 and tanh to +-1 (an exp without a clamp gives NaN there)."""
    out = [w.clone() for w in weights]
    for slot in layout(L):
        if slot.key in ("t_bias", "f_bias"):
            flat = out[slot.index].view(-1)
            flat[0::4] = 1e30
            flat[1::4] = -1e30
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_saturated_gates(dtype):
    x0, cz_t, cz_f, u, eps, w = make_case(2, 3, 5, 6, 2, 3, dtype=dtype, seed=11)
    w = saturating(w, 2)
    out = {}
    for backend in backends_here():
        with melnet_fast.use_backend(backend):
            out[backend] = sample_tier(x0, cz_t, cz_f, u, eps, w, 2, 3, 1.0)
    for x, ld in out.values():
        assert torch.isfinite(x).all() and torch.isfinite(ld).all()
    tol = 1e-10 if dtype == torch.float64 else 1e-4
    torch.testing.assert_close(out["cpu"], out["reference"], rtol=tol, atol=tol)
