"""lstm_sweep_2d's CPU kernels at every instruction-set level this host can run (AVX-512, AVX2 + FMA, baseline),
each forced in a fresh process by MELNET_FAST_CPU_LEVEL (read once per process), against "reference": forward
with and without gradient, and all six gradients, in float64 and float32."""

import pytest

from tests.ops.cpu_levels import LEVELS, run_at_level

# Shapes chosen against the kernels' tiles: H not a multiple of any vector width (columns in scalar code), of 4
# (float64 AVX2), of 16 (float32 AVX-512); line counts that leave part-filled row tiles; T != F so directions
# end at different steps; a direction with more lines than one block holds.
CHECK = r"""
import torch
import melnet_fast
from melnet_fast import _extension
from tests.ops.helpers import (SWEEP_RESULTS, assert_close, assert_error_within_reference, make_sweep_inputs,
                               sweep_value_and_grads)
from melnet_fast.ops import lstm_sweep_2d

level = int(__import__("os").environ["MELNET_FAST_CPU_LEVEL"])
assert _extension.extension().cpu_levels()[1] == level, _extension.extension().cpu_levels()
_extension.extension().set_poison_outputs(True)  # outputs start as NaN: a part left unwritten fails
torch.set_num_threads(2)
for B, T, F, I, H, dirs in [(3, 7, 13, 6, 5, ["t+", "t-", "f+", "f-"]), (2, 9, 4, 3, 20, ["f-", "t+"]),
                            (1, 3, 60, 5, 12, ["t-", "f+"]), (2, 5, 3, 16, 33, ["f+"])]:
    inputs = make_sweep_inputs(B, T, F, I, H, len(dirs), torch.float64)
    want = sweep_value_and_grads("reference", inputs, dirs)
    got = sweep_value_and_grads("cpu", inputs, dirs)
    for name, g, w in zip(SWEEP_RESULTS, got, want):
        assert_close(name, g, w, rtol=1e-10, atol=1e-10)
    with torch.no_grad(), melnet_fast.use_backend("cpu"):
        assert_close("y without gradient", lstm_sweep_2d(*inputs, dirs), want[0], rtol=1e-10, atol=1e-10)
    inputs32 = [t.float() for t in inputs]
    ref32 = sweep_value_and_grads("reference", inputs32, dirs)
    got32 = sweep_value_and_grads("cpu", inputs32, dirs)
    exact = sweep_value_and_grads("reference", [t.double() for t in inputs32], dirs)
    for name, g, r, e in zip(SWEEP_RESULTS, got32, ref32, exact):
        assert_error_within_reference(name, g, r, e)
print("ok")
"""


@pytest.mark.parametrize("level", LEVELS, ids=lambda v: f"x86-64-v{v}")
def test_sweep_at_cpu_level(level):
    run_at_level(level, CHECK)
