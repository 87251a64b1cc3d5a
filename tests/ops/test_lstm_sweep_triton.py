"""The triton backend of lstm_sweep_2d in Triton's CPU interpreter (TRITON_INTERPRET=1, set by tests/conftest.py
when no GPU is visible): forward and all six gradients against the float64 reference at tiny odd sizes. Outputs
start as NaN (the extension's poisoning, which tests/conftest.py turns on, covers the GPU host's buffers).

The interpreter runs a step launch in milliseconds, a sweep in about a second: sizes stay tiny (the whole file
takes 13-20 s on this 2-core machine, measured). tests/gpu/test_lstm_sweep_triton_gpu.py runs the same kernels on
CUDA at larger sizes.
"""

import pytest
import torch

pytest.importorskip("triton")


import melnet_fast  # noqa: E402
from melnet_fast import backends  # noqa: E402
from melnet_fast.kernels import lstm_sweep_2d as kernels  # noqa: E402
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
from tests.triton_interpreter import problem  # noqa: E402

INTERPRETER_PROBLEM = problem() if backends.interpreting_triton() else None

pytestmark = [
    pytest.mark.skipif(not backends.interpreting_triton(),
                       reason="runs Triton's interpreter on CPU tensors; tests/gpu covers CUDA"),
    # Triton 3.6's interpreter converts 1-element arrays to ints (loop bounds) the way NumPy 1.25 deprecated,
    # and numpy 2.4 refuses (tests/triton_interpreter.py).
    pytest.mark.filterwarnings("ignore:Conversion of an array with ndim > 0 to a scalar:DeprecationWarning"),
    pytest.mark.skipif(INTERPRETER_PROBLEM is not None, reason=str(INTERPRETER_PROBLEM)),
]

ALL4 = ["t+", "t-", "f+", "f-"]


@pytest.fixture
def small_tiles(monkeypatch):
    """Tiles of 16 (the least tl.dot takes): several tiles along lines, units and the product's depth."""
    for key in ("n", "j", "k"):
        monkeypatch.setitem(kernels.BLOCK_LIMITS, key, 16)


def case(B, T, F, I, H, directions, marks=()):
    return pytest.param(B, T, F, I, H, directions, id=f"B{B}-T{T}-F{F}-I{I}-H{H}-{'.'.join(directions)}",
                        marks=marks)


CASES = [
    case(2, 3, 5, 3, 5, ["t+", "f+", "f-"]),  # F > T: the time direction finishes first
    case(2, 5, 3, 3, 5, ["t-", "f+", "t+", "f-"]),  # T > F, all four scrambled
    case(1, 4, 4, 2, 3, ["f-"]),  # R = 1
    case(2, 3, 2, 3, 4, ["f-", "t+"]),  # R = 2
    case(1, 5, 1, 2, 3, ["t+", "f-"]),  # F = 1: frequency lines of length 1, one time line
]


def _check_float32(B, T, F, I, H, directions):
    inputs32 = make_sweep_inputs(B, T, F, I, H, len(directions), torch.float32)
    exact = sweep_value_and_grads("reference", [t.double() for t in inputs32], directions)
    ref32 = sweep_value_and_grads("reference", inputs32, directions)
    got = sweep_value_and_grads("triton", inputs32, directions)
    for name, g, r, e in zip(SWEEP_RESULTS, got, ref32, exact):
        assert g.dtype == torch.float32, f"{name}: dtype {g.dtype}"
        assert_error_within_reference(name, g, r, e)


@pytest.mark.parametrize("B, T, F, I, H, directions", CASES)
def test_float32_error_within_reference_error(B, T, F, I, H, directions):
    _check_float32(B, T, F, I, H, directions)


def test_float32_several_tiles_per_axis(small_tiles):
    # 16-wide tiles: 18 time lines (2 line tiles), H = 20 (2 unit tiles, 2 chunks of the forward product's depth,
    # 5 of the backward's 4H = 80), every tile partly masked.
    _check_float32(2, 3, 9, 3, 20, ["t-", "f+"])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_error_within_reference_error(dtype):
    # Judged against the reference run in the same dtype. bfloat16 exercises the interpreter's widened product,
    # float16 the native tl.dot path the GPU takes for both.
    directions = ["t+", "f+", "f-"]
    inputs = make_sweep_inputs(2, 3, 5, 3, 5, len(directions), dtype)
    exact = sweep_value_and_grads("reference", [t.double() for t in inputs], directions)
    ref = sweep_value_and_grads("reference", inputs, directions)
    got = sweep_value_and_grads("triton", inputs, directions)
    for name, g, r, e in zip(SWEEP_RESULTS, got, ref, exact):
        assert g.dtype == dtype, f"{name}: dtype {g.dtype}"
        assert_error_within_reference(name, g, r, e)


def test_noncontiguous_inputs_left_unchanged():
    directions = ["f-", "t+", "t-"]
    inputs = strided_sweep_inputs(make_sweep_inputs(2, 3, 4, 3, 5, len(directions), torch.float32))
    copies = [t.clone() for t in inputs]
    exact = sweep_value_and_grads("reference", [t.double() for t in inputs], directions)
    ref32 = sweep_value_and_grads("reference", [t.contiguous() for t in inputs], directions)
    got = sweep_value_and_grads("triton", inputs, directions)
    for name, g, r, e in zip(SWEEP_RESULTS, got, ref32, exact):
        assert_error_within_reference(name, g, r, e)
    for name, t, c in zip(SWEEP_ARGS, inputs, copies):
        assert torch.equal(t, c), f"{name} was modified"


def _grads(inputs, directions, wanted):
    leaves = [t.detach().requires_grad_(i in wanted) for i, t in enumerate(inputs)]
    with melnet_fast.use_backend("triton"):
        y = lstm_sweep_2d(*leaves, directions)
    grads = torch.autograd.grad(y, [leaves[i] for i in wanted], random_like(y, seed=7))
    return y.detach(), grads


def test_without_grad_same_output_and_no_graph():
    directions = ["t+", "f-"]
    inputs = make_sweep_inputs(2, 3, 4, 2, 3, len(directions), torch.float32)
    y_grad, _ = _grads(inputs, directions, wanted=range(6))
    with torch.no_grad(), melnet_fast.use_backend("triton"):
        y = lstm_sweep_2d(*[t.clone().requires_grad_() for t in inputs], directions)
    assert y.grad_fn is None and torch.equal(y, y_grad)


def test_gradients_of_a_subset_match_the_full_run():
    # Gradients of a subset of the inputs: the same kernels on the same data, bit-identical gradients. (recompute:
    # tests/ops/test_lstm_sweep_recompute.py.)
    directions = ["f+", "t-"]
    inputs = make_sweep_inputs(2, 3, 4, 2, 3, len(directions), torch.float32)
    _, full = _grads(inputs, directions, wanted=range(6))
    _, subset = _grads(inputs, directions, wanted=(2, 5))  # w_hh and c0 only
    for name, g, w in zip(("dw_hh", "dc0"), subset, (full[2], full[5])):
        assert torch.equal(g, w), name


def test_float64_is_refused_naming_x():
    inputs = make_sweep_inputs(1, 2, 2, 2, 2, 1, torch.float64)
    with melnet_fast.use_backend("triton"), pytest.raises(ValueError, match="^x: the triton backend takes"):
        lstm_sweep_2d(*inputs, ["t+"])
