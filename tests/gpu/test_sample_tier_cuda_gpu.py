"""The persistent CUDA tier sampler (csrc/cuda/sample_tier.cu) against the reference sampler.

Every comparison uses the same noise (u, eps drawn on the device from a seeded CUDA generator, as MelNet.sample
does). The kernel computes in float32, so its error against a float64 reference is judged against the error of
the reference sampler run in float32 on the same CUDA tensors (tests/ops/helpers.assert_error_within_reference).
Factor 4 instead of the helper's 2: a sample is a feedback chain (each draw is the next element's input through
L layers), so both float32 errors are rounding noise amplified by the same chain, and the reference's is one
sample of it; a wrong index or formula still costs orders of magnitude more.
"""

import copy
import math

import pytest
import torch

import melnet_fast
from melnet_fast.log_mel_scale import SAMPLE_RANGE
from melnet_fast.ops import gmm_nll_ref, sample_tier
from melnet_fast.ops.gmm.reference import draw_noise
from melnet_fast.ops.tier_sampling.layout import layout
from melnet_fast.ops.tier_sampling.reference import sample_tier_ref
from tests.model.helpers import random_model, tiny_config
from tests.ops.helpers import assert_error_within_reference
from tests.ops.test_sample_tier import make_case, tier_forward

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

FACTOR = 4.0


@pytest.fixture(autouse=True)
def cuda_backend_and_exact_matmul():
    """The cuda backend must be built for these tests; the float32 reference must not use TF32 matmuls."""
    missing = melnet_fast.backends.why_unavailable("cuda")
    if missing:
        pytest.fail(f"the cuda backend must be available for the GPU tests: {missing}")
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32 = previous


def scaled_weights(D, L, K, seed=0):
    """Random float64 tier weights scaled like tests/model/helpers.random_model: matrices by 1 / sqrt(fan-in),
    h0 / c0 and the input projections 0.5, biases 0.3, the head 0.3 / sqrt(D). The unscaled weights of the op
    tests make the feedback chain ill-conditioned at D = 40 (samples up to |x| ~ 16, float32 noise of 1e-3 that
    flips draws in every float32 implementation, the C++ one included); these keep it near 1e-7."""
    g = torch.Generator().manual_seed(seed)
    weights = []
    for slot in layout(L):
        shape = slot.size(D, K)
        w = torch.randn(shape, generator=g, dtype=torch.float64)
        if slot.section == "inputs":  # x_time_proj / x_freq_proj weight [D, 1] and bias [D]
            scale = 0.5 if len(shape) == 2 else 0.3
        elif slot.section == "head":  # head weight [3K, D], bias [3K]
            scale = 0.3 / math.sqrt(D) if slot.kind == "matrix" else 0.3
        elif slot.kind == "matrix":  # LSTM w_ih / w_hh, projections
            scale = 1 / math.sqrt(shape[-1])
        elif slot.kind == "state":  # h0, c0
            scale = 0.5
        else:  # biases
            scale = 0.3
        weights.append(w * scale)
    return weights


def cuda_case(B, T, F, D, L, K, seed=0, weight_dtype=torch.float32):
    """Inputs on the device: float32 data, weights in weight_dtype, noise from a seeded CUDA generator.
    Also returns the float64 copies (on the CPU) of exactly the same values, for the float64 reference."""
    x0, cz_t, cz_f, _, _, _ = make_case(B, T, F, D, L, K, seed=seed)
    w = scaled_weights(D, L, K, seed)
    data = [t.float().cuda() for t in (x0, cz_t, cz_f)]
    u, eps = draw_noise((B, T, F), "cuda", torch.float32, torch.Generator(device="cuda").manual_seed(seed + 100))
    weights = [t.to(weight_dtype).cuda() for t in w]
    exact = [t.double().cpu() for t in data + [u, eps]], [t.double().cpu() for t in weights]
    return data + [u, eps], weights, exact


def run_cuda(inputs, weights, L, K, tau, n_prime=0):
    with melnet_fast.use_backend("cuda"):
        return sample_tier(*inputs, weights, L, K, tau, n_prime)


def expected_log_density(x64, cz_t64, cz_f64, w64, L, K, n_prime):
    """log p of a sample's drawn frames under the untempered mixtures, teacher-forced in float64."""
    mu, ls, lp = tier_forward(x64, cz_t64, cz_f64, w64, L, K)
    return -gmm_nll_ref(x64, mu, ls, lp)[:, n_prime:].sum(dim=(1, 2))


def chosen_components(x64, cz_t64, cz_f64, w64, L, K, tau, u64, n_prime):
    """The component index each draw took (the rule of gmm_sample_from_noise) under x's own mixtures."""
    _, _, lp = tier_forward(x64, cz_t64, cz_f64, w64, L, K)
    lp = lp[:, n_prime:]
    if tau == 0:
        return lp.argmax(-1)
    cdf = torch.softmax(lp / tau, dim=-1).cumsum(-1)
    return (cdf <= u64[:, n_prime:].unsqueeze(-1)).sum(-1).clamp(max=K - 1)


def compare_to_reference(B, T, F, D, L, K, tau, n_prime, weight_dtype=torch.float32, seed=0):
    inputs, weights, (exact_in, exact_w) = cuda_case(B, T, F, D, L, K, seed, weight_dtype)
    got, got_ld = run_cuda(inputs, weights, L, K, tau, n_prime)
    # The float32 reference on the same CUDA tensors (weights cast to float32: bf16 / fp16 -> fp32 is exact, so
    # it and the kernel compute the same function of the same numbers; only the float32 arithmetic differs).
    ref32, ref32_ld = sample_tier_ref(*inputs, [t.float() for t in weights], L, K, tau, n_prime)
    ref64, ref64_ld = sample_tier_ref(*exact_in, exact_w, L, K, tau, n_prime)
    assert got.dtype == torch.float32 and got.device == inputs[0].device
    assert torch.equal(got[:, :n_prime], inputs[0][:, :n_prime]), "the prime frames must be kept"
    tag = f"B{B}-T{T}-F{F}-D{D}-L{L}-K{K}-tau{tau}-prime{n_prime}-{weight_dtype}"
    assert_error_within_reference(f"x {tag}", got.cpu(), ref32.cpu(), ref64, FACTOR)
    assert_error_within_reference(f"log_density {tag}", got_ld.cpu(), ref32_ld.cpu(), ref64_ld, FACTOR)
    # Same discrete choices: the component each draw took, recomputed from each sample's own mixtures.
    _, cz_t64, cz_f64, u64, _ = exact_in
    k_got = chosen_components(got.double().cpu(), cz_t64, cz_f64, exact_w, L, K, tau, u64, n_prime)
    k_ref = chosen_components(ref64, cz_t64, cz_f64, exact_w, L, K, tau, u64, n_prime)
    assert torch.equal(k_got, k_ref), f"{tag}: {(k_got != k_ref).sum().item()} draws took another component"
    # The accumulated log density is the density of the sample the kernel drew.
    want = expected_log_density(got.double().cpu(), cz_t64, cz_f64, exact_w, L, K, n_prime)
    ref_want = expected_log_density(ref32.double().cpu(), cz_t64, cz_f64, exact_w, L, K, n_prime)
    err = (got_ld.double().cpu() - want).abs().max().item()
    ref_err = (ref32_ld.double().cpu() - ref_want).abs().max().item()
    floor = 8 * torch.finfo(torch.float32).eps * want.abs().max().item()
    assert err <= FACTOR * ref_err + floor, (f"{tag}: accumulated log density off the sample's density by {err:.3e} "
                                             f"(float32 reference: {ref_err:.3e})")


# (B, T, F, D, L, K): odd F everywhere; D = 16 / 40 take the 16-byte weight loads (D % 8 == 0), D = 7 and 5 the
# scalar path, D = 12 the vector path for float32 weights only; B = 67 runs as two launches (64 + 3 rows, the
# second with one batch column per task).
CASES = [pytest.param(1, 4, 7, 16, 2, 3, id="B1-T4-F7-D16-L2-K3"),
         pytest.param(3, 3, 5, 7, 2, 4, id="B3-T3-F5-D7-L2-K4"),
         pytest.param(64, 2, 3, 12, 1, 2, id="B64-T2-F3-D12-L1-K2"),
         pytest.param(67, 2, 3, 8, 2, 3, id="B67-T2-F3-D8-L2-K3"),
         pytest.param(2, 3, 9, 40, 3, 10, id="B2-T3-F9-D40-L3-K10"),
         pytest.param(1, 3, 1, 5, 1, 1, id="B1-T3-F1-D5-L1-K1")]


@pytest.mark.parametrize("B,T,F,D,L,K", CASES)
def test_temperature_zero_matches_reference(B, T, F, D, L, K):
    compare_to_reference(B, T, F, D, L, K, 0.0, 0)


@pytest.mark.parametrize("n_prime", [0, 2])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("B,T,F,D,L,K", CASES)
def test_temperature_matches_reference(B, T, F, D, L, K, temperature, n_prime):
    compare_to_reference(B, T, F, D, L, K, temperature, min(n_prime, T - 1))


@pytest.mark.parametrize("weight_dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("B,T,F,D,L,K", [CASES[0], CASES[1], CASES[3], CASES[4]])
def test_low_precision_weights(B, T, F, D, L, K, weight_dtype):
    """bf16 / fp16 weights with float32 data against the reference run on the same weights cast to float32:
    the same function of the same numbers, so the float32 bound applies unchanged."""
    compare_to_reference(B, T, F, D, L, K, 1.0, 1, weight_dtype=weight_dtype)


def test_low_precision_data_is_computed_in_float32():
    """All-bf16 inputs: the kernel converts the data to float32, so its result is the float32-data run's rounded."""
    inputs, weights, _ = cuda_case(2, 3, 5, 16, 2, 3, weight_dtype=torch.bfloat16)
    low = [t.bfloat16() for t in inputs]
    got, got_ld = run_cuda(low, weights, 2, 3, 1.0, 1)
    want, want_ld = run_cuda([t.float() for t in low], weights, 2, 3, 1.0, 1)
    assert got.dtype == torch.bfloat16 and got_ld.dtype == torch.bfloat16
    assert torch.equal(got, want.bfloat16()) and torch.equal(got_ld, want_ld.bfloat16())


def test_deterministic_and_noncontiguous_inputs():
    inputs, weights, _ = cuda_case(3, 3, 5, 16, 2, 3, seed=4)
    a = run_cuda(inputs, weights, 2, 3, 1.0)
    x0, cz_t, cz_f, u, eps = inputs
    cz_t_nc = cz_t.transpose(1, 2).contiguous().transpose(1, 2)
    u_nc = u.transpose(0, 2).contiguous().transpose(0, 2)
    w_nc = list(weights)
    w_nc[4] = weights[4].transpose(1, 2).contiguous().transpose(1, 2)  # layer 0 time w_ih
    assert not (cz_t_nc.is_contiguous() or u_nc.is_contiguous() or w_nc[4].is_contiguous())
    b = run_cuda([x0, cz_t_nc, cz_f, u_nc, eps], w_nc, 2, 3, 1.0)
    assert torch.isfinite(a[0]).all()
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_result_does_not_depend_on_the_grid_size(monkeypatch):
    """Each task computes the same numbers whichever warp runs it, and every block draws the same values: a
    grid of 7 blocks (many passes per task loop) gives bitwise the same as the full grid, at batch 5 (batch
    columns per task) and 1."""
    for B in (5, 1):
        inputs, weights, _ = cuda_case(B, 2, 5, 16, 2, 3, seed=6)
        monkeypatch.delenv("MELNET_FAST_SAMPLER_MAX_BLOCKS", raising=False)
        a = run_cuda(inputs, weights, 2, 3, 0.7)
        monkeypatch.setenv("MELNET_FAST_SAMPLER_MAX_BLOCKS", "7")
        b = run_cuda(inputs, weights, 2, 3, 0.7)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_draws_follow_the_mixture(temperature):
    """A 1-frame, 1-channel tier whose batch rows share one mixture: 64 rows x 32 seeds = 2048 draws, whose
    empirical CDF must match the tempered mixture's (softmax(logit / tau), sigma * tau): Kolmogorov-Smirnov
    statistic below its 0.1% critical value 1.95 / sqrt(n). The head's bias spreads the components apart (means
    -3, 0, 3, sigma ~ 0.37) so that a wrong component rule or scale shows."""
    B, D, L, K = 64, 16, 2, 3
    w = scaled_weights(D, L, K, seed=11)
    w[-1][:K] += torch.tensor([-3.0, 0.0, 3.0], dtype=torch.float64)
    w[-1][K:2 * K] -= 1.0
    g = torch.Generator().manual_seed(12)
    cz_t = (torch.randn(1, 1, 1, D, generator=g, dtype=torch.float64) * 0.5).expand(B, 1, 1, D)
    cz_f = (torch.randn(1, 1, 1, D, generator=g, dtype=torch.float64) * 0.5).expand(B, 1, 1, D)
    w32 = [t.float() for t in w]  # the mixture of the float32 weights, computed in float64
    mu, ls, lp = (p[0, 0, 0] for p in tier_forward(torch.zeros(1, 1, 1, dtype=torch.float64), cz_t[:1].float().double(),
                                                  cz_f[:1].float().double(), [t.double() for t in w32], L, K))
    x0 = torch.zeros(B, 1, 1, device="cuda")
    draws = []
    for seed in range(32):
        u, eps = draw_noise((B, 1, 1), "cuda", torch.float32, torch.Generator(device="cuda").manual_seed(seed))
        x, _ = run_cuda([x0, cz_t.float().cuda(), cz_f.float().cuda(), u, eps], [t.cuda() for t in w32], L, K,
                        temperature)
        draws.append(x.flatten().double().cpu())
    xs = torch.cat(draws).sort().values
    n = xs.numel()
    pi = torch.softmax(lp / temperature, dim=-1)
    sigma = temperature * ls.exp()
    cdf = (pi * 0.5 * (1 + torch.erf((xs.unsqueeze(-1) - mu) / (sigma * math.sqrt(2))))).sum(-1)
    i = torch.arange(1, n + 1, dtype=torch.float64)
    ks = torch.maximum(i / n - cdf, cdf - (i - 1) / n).max().item()
    assert ks < 1.95 / math.sqrt(n), f"KS statistic {ks:.4f} >= {1.95 / math.sqrt(n):.4f} (n={n})"


def test_model_log_prob_of_sample_equals_accumulated_density():
    """Through MelNet.sample on the device (backend "auto": sample_tier takes the cuda kernel, other ops whatever
    serves CUDA tensors) against MelNet.log_prob in float64 of the same weights; judged against the same check
    on the reference backend's float32 sample."""
    config = tiny_config()
    model = random_model(config, dtype=torch.float32).cuda()
    model64 = copy.deepcopy(model).double().cpu()
    batch, frames, P = 3, 8, 4
    prime = torch.randn(batch, P, config.n_mels, generator=torch.Generator().manual_seed(2)).cuda()
    drawn = torch.ones(frames, config.n_mels, dtype=torch.bool)
    drawn[:P] = False
    errors, scale = {}, 0.0
    for backend in ("auto", "reference"):
        with melnet_fast.use_backend(backend):
            x, ld = model.sample(batch, frames, temperature=1.0, prime=prime, return_log_prob=True,
                                 generator=torch.Generator(device="cuda").manual_seed(0))
        assert torch.equal(x[:, :P], prime) and torch.isfinite(x).all()
        with melnet_fast.use_backend("reference"):
            log_prob = model64.log_prob(x.double().cpu())[:, drawn].sum(-1)
        errors[backend] = (ld.double().cpu() - log_prob).abs().max().item()
        scale = max(scale, log_prob.abs().max().item())
    floor = 8 * torch.finfo(torch.float32).eps * scale
    assert errors["auto"] <= FACTOR * errors["reference"] + floor, errors


def test_bad_input_names_the_argument():
    """Direct calls of the registered op (the Python wrapper checks these first) get errors naming the argument."""
    inputs, weights, _ = cuda_case(2, 2, 3, 8, 1, 2)
    x0, cz_t, cz_f, u, eps = inputs
    op = torch.ops.melnet_fast.sample_tier
    with pytest.raises(RuntimeError, match="u is on cpu"):
        op(x0, cz_t, cz_f, u.cpu(), eps, weights, 1, 2, 1.0, 0, *SAMPLE_RANGE)
    with pytest.raises(RuntimeError, match=r"weights\[5\] must have shape"):
        op(x0, cz_t, cz_f, u, eps, weights[:5] + [weights[5][:, :-1]] + weights[6:], 1, 2, 1.0, 0, *SAMPLE_RANGE)
    with pytest.raises(RuntimeError, match="all weights must share one dtype"):
        op(x0, cz_t, cz_f, u, eps, weights[:3] + [weights[3].half()] + weights[4:], 1, 2, 1.0, 0, *SAMPLE_RANGE)
    with pytest.raises(RuntimeError, match="n_prime"):
        op(x0, cz_t, cz_f, u, eps, weights, 1, 2, 1.0, 3, *SAMPLE_RANGE)
    with pytest.raises(RuntimeError, match="eps has dtype"):
        op(x0, cz_t, cz_f, u, eps.double(), weights, 1, 2, 1.0, 0, *SAMPLE_RANGE)
    with pytest.raises(RuntimeError, match="value range"):
        op(x0, cz_t, cz_f, u, eps, weights, 1, 2, 1.0, 0, 1.0, float("nan"))


def test_text_model_on_cuda_is_sampled_by_the_reference_sampler_visibly():
    """The cuda sampler does not run the centralized stack / text attention: "auto" names the sampler it uses
    instead, and an explicit "cuda" backend is an error rather than a sample without text."""
    from tests.model.helpers import text_cond, tts_config

    model = random_model(tts_config()).cuda()
    cond = text_cond(1)
    with pytest.warns(melnet_fast.ops.ReferenceSamplerWarning, match="sampled by the reference sampler"):
        model.sample(1, 4, cond, generator=torch.Generator("cuda").manual_seed(0))
    with melnet_fast.use_backend("cuda"), pytest.raises(RuntimeError, match="implemented: cpu, reference"):
        model.sample(1, 4, cond, generator=torch.Generator("cuda").manual_seed(0))
