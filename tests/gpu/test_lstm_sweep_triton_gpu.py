"""The triton backend of lstm_sweep_2d on CUDA: float32, bfloat16 and float16 storage at odd sizes (H = 64, H not
a multiple of 16, lines and units spread over several tiles, lines of length 1), non-contiguous inputs, forward
and all six gradients against the float64 reference, and the segmented recompute. Skipped without a GPU."""

import pytest
import torch

pytest.importorskip("triton")

import melnet_fast  # noqa: E402
from melnet_fast.ops import lstm_sweep_2d  # noqa: E402
from tests.ops.helpers import (  # noqa: E402
    SWEEP_ARGS,
    SWEEP_RESULTS,
    assert_error_within_reference,
    make_sweep_inputs,
    random_like,
    strided_sweep_inputs,
    sweep_value_and_grads,
)

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

ALL4 = ["t+", "t-", "f+", "f-"]
DTYPES = [torch.float32, torch.bfloat16, torch.float16]


@pytest.fixture(autouse=True)
def exact_float32(monkeypatch):
    """No TF32 anywhere (the float32 references must be exact fp32 for the bound to be tight). Every buffer the
    kernels must write completely starts as NaN: tests/conftest.py turns the extension's poisoning on."""
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)


def case(B, T, F, I, H, directions):
    return pytest.param(B, T, F, I, H, directions, id=f"B{B}-T{T}-F{F}-I{I}-H{H}-{'.'.join(directions)}")


CASES = [
    case(2, 7, 13, 6, 64, ALL4),  # H = 64, T < F
    case(3, 11, 5, 9, 40, ["t+", "f+", "f-"]),  # H = 40: not a multiple of 16; T > F
    case(4, 20, 33, 16, 72, ["t+", "f-", "t-"]),  # 132 time lines: 3 tiles of 64; H = 72: 3 unit tiles
    case(2, 9, 30, 24, 200, ["f+", "t-"]),  # H = 200: 7 unit tiles, backward product depth 800
    case(2, 6, 6, 5, 1, ALL4),  # H = 1
    case(1, 5, 1, 2, 3, ["t+", "f-"]),  # frequency lines of length 1, a single time line
]


def cuda_inputs(B, T, F, I, H, R, dtype):
    return [t.cuda() for t in make_sweep_inputs(B, T, F, I, H, R, dtype)]


def check_against_reference(inputs, directions, recompute=False):
    """Triton's value and gradients: error against float64 at most twice the reference's own error in the
    inputs' dtype (plus the helper's floor of a few ulps)."""
    dtype = inputs[0].dtype
    exact = sweep_value_and_grads("reference", [t.double() for t in inputs], directions)
    ref = sweep_value_and_grads("reference", [t.contiguous() for t in inputs], directions)
    got = sweep_value_and_grads("triton", inputs, directions, recompute)
    for name, g, r, e in zip(SWEEP_RESULTS, got, ref, exact):
        assert g.dtype == dtype and g.device == inputs[0].device, f"{name}: {g.dtype} on {g.device}"
        assert_error_within_reference(name, g, r, e)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("B, T, F, I, H, directions", CASES)
def test_error_within_reference_error(B, T, F, I, H, directions, dtype):
    check_against_reference(cuda_inputs(B, T, F, I, H, len(directions), dtype), directions)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_noncontiguous_inputs(dtype):
    directions = ["f-", "t+", "t-"]
    inputs = strided_sweep_inputs(cuda_inputs(3, 11, 5, 9, 40, len(directions), dtype))
    copies = [t.clone() for t in inputs]
    check_against_reference(inputs, directions)
    for name, t, c in zip(SWEEP_ARGS, inputs, copies):
        assert torch.equal(t, c), f"{name} was modified"


def _grads(inputs, directions):
    leaves = [t.detach().requires_grad_() for t in inputs]
    with melnet_fast.use_backend("triton"):
        y = lstm_sweep_2d(*leaves, directions)
    return [y.detach(), *torch.autograd.grad(y, leaves, random_like(y, seed=7))]


@pytest.mark.parametrize("mode", [True, 3], ids=["k-sqrt", "k3"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_recompute_within_reference_error(dtype, mode):
    # The segmented recompute (spans from per-line states, per-span GEMMs and carries) held to the stored mode's
    # bounds: spans of ceil(sqrt(L)) and of 3 positions (7 = 3+3+1, 13 = 3+3+3+3+1).
    directions = ["t+", "f+", "f-", "t-"]
    check_against_reference(cuda_inputs(2, 7, 13, 6, 64, len(directions), dtype), directions, recompute=mode)


def test_without_grad_same_output():
    directions = ALL4
    inputs = cuda_inputs(2, 7, 13, 6, 64, len(directions), torch.bfloat16)
    y_grad = _grads(inputs, directions)[0]
    with torch.no_grad(), melnet_fast.use_backend("triton"):
        y = lstm_sweep_2d(*[t.clone().requires_grad_() for t in inputs], directions)
    assert y.grad_fn is None and torch.equal(y, y_grad)

