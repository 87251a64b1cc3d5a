"""The Triton twin of csrc/scalar_math.h on the GPU, against the same wider-type results as
tests/cuda_emulation/test_scalar_math.py (which runs it in Triton's interpreter and pins it to the header bit for
bit): on the device tl.math.div_rn and the integer ops compile to real instructions and the GPU flushes float32
subnormals, so inputs and results below the normal range are left out here. Skipped without a GPU."""

import pytest
import torch

pytest.importorskip("triton")

from tests.cuda_emulation.test_scalar_math import (  # noqa: E402
    TORCH_FN,
    ULPS,
    assert_within_ulps,
    expected,
    inputs,
    twin_apply,
)

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.mark.parametrize("form", list(TORCH_FN))
def test_triton_twin_on_the_gpu(form):
    x = inputs(torch.float32)
    want = expected(form, x)
    normal = torch.finfo(torch.float32).smallest_normal
    keep = ~((x.abs() < normal) & (x != 0)) & ~((want.abs() < normal) & (want != 0))
    x, want = x[keep], want[keep]
    got = twin_apply(form, x.cuda()).cpu()
    assert_within_ulps(f"triton {form} (GPU)", got, x, want, ULPS[form])
