"""The second design of the CUDA tier sampler (csrc/cuda/sample_tier_flags_kernel.cuh: projections folded into the
next layer's input weights, flag waits instead of grid barriers, weight rows resident in shared memory) run on the
CPU by the grid emulator, with the flag checker of shim/emu_flags.h on (a read of data another block wrote
without the acquire that covers it fails the run), against the reference sampler fed the same u and eps.

Bounds. float32 weights: x and the log density within FACTOR x the float32 reference's error against float64
(the first design's bound; the folded sums are associated differently, which stays within float32 rounding).
bfloat16 / float16 weights: the folded matrices W_ih P and W_head P are rounded once to the weight dtype, a
perturbation of the model of up to 2^-9 / 2^-12 relative per element that the reference does not have; x and the
log density are then held to FOLDED_REL x the weight dtype's unit roundoff, relative to the largest value (a
wrong index or an unfolded term costs orders of magnitude more). In every dtype: the same mixture component for
every draw as the float64 reference, at tau = 0 each drawn value the mean of the most probable component of the
mixture recomputed naively from the sample (teacher-forced, float64), and the accumulated log density that of
the drawn sample. The result must not change by a bit with the grid size (2 to 12 blocks, blocks owning no
hidden unit included), the thread order, how many layers' rows are resident in shared memory, or whether the
frequency sweeps (run on two halves of the grid, each waiting only for its own half) keep their W_hh rows in shared
memory."""

import platform
import sys

import pytest
import torch

from melnet_fast.log_mel_scale import SAMPLE_RANGE
from melnet_fast.ops.tier_sampling.layout import fold_projections
from melnet_fast.ops.tier_sampling.reference import sample_tier_ref
from tests.cuda_emulation import build_emulator, build_grid_emulator
from tests.cuda_emulation.emulated_sample_tier import emulated_sample_tier
from tests.cuda_emulation.test_sample_tier_emulated import make_inputs
from tests.gpu.test_sample_tier_cuda_gpu import FACTOR, chosen_components, expected_log_density, tier_forward
from tests.ops.helpers import assert_error_within_reference

pytestmark = [
    pytest.mark.skipif(build_emulator.find_compiler() is None,
                       reason="no C++ compiler ($CXX, g++, c++ or clang++) to build the CUDA emulator"),
    pytest.mark.skipif(not sys.platform.startswith("linux") or platform.machine() != "x86_64",
                       reason="the grid emulator's fiber switch is x86-64 assembly"),
    pytest.mark.usefixtures("one_thread"),
]

F32, BF16, F16 = torch.float32, torch.bfloat16, torch.float16
# Low-precision weights: |x - x64| <= FOLDED_REL x the weight dtype's unit roundoff x max |x64|. Measured on this
# file's bfloat16 / float16 cases over two seeds: 0.12 to 0.38 for x, 0.04 to 0.20 for the log density.
FOLDED_REL = 2.0
# Float32 weights: the naive-recomputation and log-density checks below, relative to the largest value.
F32_REL = 1e-5


@pytest.fixture(scope="module")
def harness():
    return build_grid_emulator.build("sample_tier")


def run_flags(exe, tmp_path, inputs, weights, L, K, tau, n_prime, blocks, resident, order=0, poison=0xFF,
              value_range=SAMPLE_RANGE, sweep_rows=True):
    folded = list(weights) + fold_projections(weights, L, K)
    return emulated_sample_tier(exe, tmp_path, *inputs, folded, L, K, tau, n_prime, blocks, order=order,
                                poison=poison, value_range=value_range, resident_layers=resident,
                                design="flags" if sweep_rows else "flags-global-sweeps")


def compare_to_reference(exe, tmp_path, B, T, F, D, L, K, tau, n_prime, dt, blocks, resident, seed=0, order=0):
    inputs, w64 = make_inputs(B, T, F, D, L, K, seed)
    weights = [t.to(dt) for t in w64]
    got, got_ld = run_flags(exe, tmp_path, inputs, weights, L, K, tau, n_prime, blocks, resident, order)
    check_against_reference(got, got_ld, inputs, weights, L, K, tau, n_prime,
                            f"B{B}-T{T}-F{F}-D{D}-L{L}-K{K}-tau{tau}-prime{n_prime}-{dt}-blocks{blocks}-r{resident}")
    return got, got_ld


def check_against_reference(got, got_ld, inputs, weights, L, K, tau, n_prime, tag):
    """The bounds of this file's docstring, for a sample (got, got_ld) of the flags design drawn from float32
    `inputs` (x_init, cz_t, cz_f, u, eps) and the flat list `weights` (one dtype); also the GPU test's check."""
    got, got_ld = got.cpu(), got_ld.cpu()
    inputs = [t.cpu() for t in inputs]
    dt = weights[0].dtype
    exact_w = [t.double().cpu() for t in weights]
    exact_in = [t.double() for t in inputs]
    lo, hi = (float(torch.tensor(v, dtype=torch.float32)) for v in SAMPLE_RANGE)
    ref32, ref32_ld = sample_tier_ref(*inputs, [t.float().cpu() for t in weights], L, K, tau, n_prime, lo, hi)
    ref64, ref64_ld = sample_tier_ref(*exact_in, exact_w, L, K, tau, n_prime, lo, hi)
    assert torch.equal(got[:, :n_prime], inputs[0][:, :n_prime]), "the prime frames must be kept"
    rel = F32_REL if dt == F32 else FOLDED_REL * torch.finfo(dt).eps / 2
    if dt == F32:
        assert_error_within_reference(f"x {tag}", got, ref32, ref64, FACTOR)
        assert_error_within_reference(f"log_density {tag}", got_ld, ref32_ld, ref64_ld, FACTOR)
    else:
        u_w = torch.finfo(dt).eps / 2
        for name, a, b in (("x", got, ref64), ("log_density", got_ld, ref64_ld)):
            err = (a.double() - b).abs().max().item()
            bound = FOLDED_REL * u_w * b.abs().max().item()
            assert err <= bound, f"{name} {tag}: error {err:.3e} above {FOLDED_REL} x u_w x max = {bound:.3e}"
    _, cz_t64, cz_f64, u64, _ = exact_in
    k_got = chosen_components(got.double(), cz_t64, cz_f64, exact_w, L, K, tau, u64, n_prime)
    k_ref = chosen_components(ref64, cz_t64, cz_f64, exact_w, L, K, tau, u64, n_prime)
    assert torch.equal(k_got, k_ref), f"{tag}: {(k_got != k_ref).sum().item()} draws took another component"
    if tau == 0:  # naive recomputation: every drawn value is the mean of its most probable component
        mu, _, lp = tier_forward(got.double(), cz_t64, cz_f64, exact_w, L, K)
        want = mu.gather(-1, lp.argmax(-1, keepdim=True)).squeeze(-1).clamp(lo, hi)[:, n_prime:]
        err = (got.double()[:, n_prime:] - want).abs().max().item()
        assert err <= rel * max(1.0, want.abs().max().item()), f"{tag}: tau = 0 draw off the naive mean by {err}"
    want_ld = expected_log_density(got.double(), cz_t64, cz_f64, exact_w, L, K, n_prime)
    err = (got_ld.double() - want_ld).abs().max().item()
    assert err <= rel * max(1.0, want_ld.abs().max().item()), f"{tag}: log density off the sample's by {err:.3e}"


# (B, T, F, D, L, K, temperature, n_prime, weight dtype, blocks, resident layers)
CASES = [
    (1, 3, 5, 8, 1, 3, 1.0, 0, F32, 2, 1),     # one layer: the head folds layer 0's projection; 16-byte path
    (1, 3, 5, 8, 3, 3, 0.0, 0, F32, 3, 2),     # tau = 0 (naive recomputation), a non-resident layer, batch 1
    (1, 3, 5, 8, 2, 3, 0.7, 1, BF16, 3, 2),    # bfloat16 (16-byte path, D % 8 == 0), prime
    (3, 3, 5, 5, 3, 3, 0.7, 0, F32, 5, 1),     # scalar path, odd D, 5 blocks (one owns a single unit)
    (3, 3, 5, 5, 2, 3, 0.0, 2, BF16, 2, 0),    # scalar bfloat16, nothing resident, two primed frames
    (5, 3, 5, 8, 2, 3, 1.0, 0, F32, 3, 2),     # four batch rows per task (B >= 4), one clamped group
    (5, 2, 3, 16, 2, 10, 0.7, 1, F16, 2, 1),   # float16, K = 10
    (2, 3, 1, 5, 1, 1, 1.0, 0, F32, 2, 1),     # one channel, one component
    (2, 2, 4, 8, 2, 3, 1.0, 0, F32, 12, 2),    # 12 blocks for 8 units: four blocks own no unit
    (2, 3, 9, 40, 3, 10, 1.0, 0, F32, 4, 1),   # the GPU test's largest case
    (2, 3, 5, 8, 2, 3, 1.0, 3, F32, 2, 2),     # every frame primed
]


def case_id(c):
    B, T, F, D, L, K, tau, n_prime, dt, blocks, res = c
    return f"B{B}-T{T}-F{F}-D{D}-L{L}-K{K}-tau{tau}-prime{n_prime}-{str(dt)[6:]}-g{blocks}-r{res}"


@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_matches_reference(harness, tmp_path, case):
    B, T, F, D, L, K, tau, n_prime, dt, blocks, resident = case
    compare_to_reference(harness, tmp_path, B, T, F, D, L, K, tau, n_prime, dt, blocks, resident,
                         order=CASES.index(case) % 3)


def test_more_rows_than_one_launch(harness, tmp_path):
    """K = 300: two channels of theta for 3 rows fill the head's shared memory, so B = 5 runs as 3 + 2 rows."""
    compare_to_reference(harness, tmp_path, 5, 2, 2, 8, 1, 300, 1.0, 0, F32, 2, 1)


@pytest.mark.parametrize("B, D, dt", [(1, 8, BF16), (5, 5, F32)])
def test_result_independent_of_grid_size_residency_and_thread_order(harness, tmp_path, B, D, dt):
    """Bitwise the same sample and log density on 2 to 12 blocks, with 0 to 2 layers resident in shared memory,
    the sweep rows in shared or global memory, in any thread order, whatever garbage shared memory starts with:
    every task has one owner and one reduction order whatever the grid, and a race (a missing wait) would show
    here or in the flag checker."""
    inputs, w64 = make_inputs(B, 3, 5, D, 2, 3, seed=3)
    weights = [t.to(dt) for t in w64]
    runs = [run_flags(harness, tmp_path, inputs, weights, 2, 3, 0.7, 1, blocks, resident, order=order, poison=poison,
                      sweep_rows=sweep_rows)
            for blocks, resident, order, poison, sweep_rows in ((2, 2, 0, 0xFF, True), (5, 0, 1, 0x00, False),
                                                                (3, 1, 2, 0x5A, True), (12, 2, 2, 0xFF, False))]
    for x, ld in runs:
        assert torch.isfinite(x).all() and torch.isfinite(ld).all()
    for x, ld in runs[1:]:
        assert torch.equal(x, runs[0][0]) and torch.equal(ld, runs[0][1]), "the result depends on the grid"


def test_drawn_values_kept_in_the_value_range(harness, tmp_path):
    inputs, w64 = make_inputs(3, 3, 5, 8, 2, 3, seed=0)
    weights = [t.float() for t in w64]
    got, _ = run_flags(harness, tmp_path, inputs, weights, 2, 3, 1.0, 0, 3, 1, value_range=(-0.3, 0.4))
    ref, _ = sample_tier_ref(*inputs, weights, 2, 3, 1.0, 0, -0.3, 0.4)
    assert ((got == got.new_tensor(-0.3)) | (got == got.new_tensor(0.4))).any()
    assert torch.allclose(got, ref, atol=1e-5, rtol=0)
