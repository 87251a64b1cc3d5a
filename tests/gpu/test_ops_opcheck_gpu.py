"""torch.library.opcheck on CUDA tensors for the ops that only a GPU runs: the sweep's step ops
(lstm_sweep_fwd_step / _bwd_step, mutating the caller's buffers), lstm_sweep_2d_fwd / _bwd through their CUDA
kernel (the GPU host), the cuda sampler, and the triton backend's custom ops. (gmm_nll's CUDA ops:
test_gmm_nll_gpu.py.) Skipped without a GPU."""

import pytest
import torch

from melnet_fast.log_mel_scale import SAMPLE_RANGE
from melnet_fast.ops import DIRECTION_CODES
from melnet_fast.ops.lstm_sweep import gpu_host
from tests.ops.helpers import make_gmm_inputs, make_sweep_inputs
from tests.ops.test_sample_tier import make_case

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

ops = torch.ops.melnet_fast
DIRECTIONS = ["t+", "f-", "t-"]


def sweep_inputs(dtype, requires_grad=False):
    inputs = [t.cuda().requires_grad_(requires_grad) for t in make_sweep_inputs(2, 3, 4, 3, 5, 3, dtype)]
    return inputs, [DIRECTION_CODES[d] for d in DIRECTIONS]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_step_ops(dtype):
    (x, w_ih, w_hh, bias, h0, c0), codes = sweep_inputs(dtype)
    B, T, F, _ = x.shape
    R, G, H = w_hh.shape
    lines = max(gpu_host.line_counts(codes, B, T, F))
    pre = torch.randn(B, T, F, R * G, device="cuda").to(dtype)
    y = torch.zeros(B, T, F, R * H, device="cuda", dtype=dtype)
    c_run = torch.zeros(R, lines, H, device="cuda")
    gates = torch.zeros(R, B, T, F, G, device="cuda", dtype=dtype)
    cell = torch.zeros(R, B, T, F, H, device="cuda")
    torch.library.opcheck(ops.lstm_sweep_fwd_step.default, (pre, w_hh, h0, c0, y, c_run, gates, cell, codes, 0, True))
    dgates = torch.zeros(B, T, F, R * G, device="cuda", dtype=dtype)
    dc_run = torch.zeros(R, lines, H, device="cuda")
    steps = gpu_host.sweep_steps(codes, T, F)
    torch.library.opcheck(ops.lstm_sweep_bwd_step.default,
                          (torch.randn_like(y), w_hh, c0, gates, cell, dgates, dc_run, codes, steps - 1))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
def test_sweep_ops_on_cuda(dtype):
    inputs, codes = sweep_inputs(dtype, requires_grad=True)
    torch.library.opcheck(ops.lstm_sweep_2d_fwd.default, (*inputs, codes, True))
    x, w_ih, w_hh, _, h0, c0 = [t.detach() for t in inputs]
    y, gates, cell = ops.lstm_sweep_2d_fwd(*[t.detach() for t in inputs], codes, True)
    torch.library.opcheck(ops.lstm_sweep_2d_bwd.default, (torch.randn_like(y), x, w_ih, w_hh, h0, c0, y, gates,
                                                          cell, codes))


def test_sample_tier_on_cuda():
    x0, cz_t, cz_f, u, eps, weights = make_case(2, 3, 4, 8, 2, 3, dtype=torch.float32, seed=2)
    args = [t.cuda() for t in (x0, cz_t, cz_f, u, eps)]
    torch.library.opcheck(ops.sample_tier.default, (*args, [w.cuda() for w in weights], 2, 3, 1.0, 1, *SAMPLE_RANGE))


def test_sample_tier_flags_on_cuda():
    from melnet_fast.ops.tier_sampling.layout import fold_projections

    x0, cz_t, cz_f, u, eps, weights = make_case(2, 3, 4, 8, 2, 3, dtype=torch.float32, seed=2)
    args = [t.cuda() for t in (x0, cz_t, cz_f, u, eps)]
    weights = [w.cuda() for w in weights]
    folded = weights + fold_projections(weights, 2, 3)
    torch.library.opcheck(ops.sample_tier_flags.default, (*args, folded, 2, 3, 1.0, 1, *SAMPLE_RANGE))


def test_triton_ops_on_cuda():
    pytest.importorskip("triton")
    from melnet_fast.ops.gmm import triton_backend as gmm_triton  # noqa: F401  (registers the ops)
    from melnet_fast.ops.lstm_sweep import triton_backend as sweep_triton  # noqa: F401

    inputs, codes = sweep_inputs(torch.float32, requires_grad=True)
    torch.library.opcheck(ops.lstm_sweep_2d_fwd_triton.default, (*inputs, codes, True))
    gmm = [t.cuda().float().requires_grad_() for t in make_gmm_inputs((3, 5), 4)]
    torch.library.opcheck(ops.gmm_nll_fwd_triton.default, tuple(gmm))
    torch.library.opcheck(ops.gmm_nll_fwd_local_triton.default, tuple(gmm))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_second_sweep_design_ops(dtype):
    """The cuda_gemm design: its custom ops (the GPU host over GEMMs, epilogues and the narrow phase), an epilogue op
    and a narrow-phase op (mutating the caller's buffers)."""
    from melnet_fast.ops.lstm_sweep import gemm_backend  # noqa: F401  (registers the ops)

    inputs, codes = sweep_inputs(dtype, requires_grad=True)
    torch.library.opcheck(ops.lstm_sweep_2d_fwd_gemm.default, (*inputs, codes, True))
    x, w_ih, w_hh, _, h0, c0 = [t.detach() for t in inputs]
    y, gates, cell = ops.lstm_sweep_2d_fwd_gemm(*[t.detach() for t in inputs], codes, True)
    torch.library.opcheck(ops.lstm_sweep_2d_bwd_gemm.default, (torch.randn_like(y), x, w_ih, w_hh, h0, c0, y, gates,
                                                               cell, codes))
    B, T, F, _ = x.shape
    R, G, H = w_hh.shape
    lines = gpu_host.line_counts(codes, B, T, F)
    pre = torch.randn(B, T, F, R * G, device="cuda").to(dtype)
    c_run = torch.zeros(R, max(lines), H, device="cuda")
    rec = [torch.randn(1, G, device="cuda") for _ in codes]  # step 0: one row per direction, shared by its lines
    torch.library.opcheck(ops.lstm_sweep_fwd_epilogue.default,
                          (rec, pre, c0, torch.zeros_like(y), c_run, torch.zeros_like(gates), torch.zeros_like(cell),
                           codes, 0, True))
    # T = 3 < F = 4: f- alone from step 3 (B*T = 6 lines: one line block); the op zeroes its counters itself.
    arrivals = torch.empty(R, 1, dtype=torch.int32, device="cuda")
    torch.library.opcheck(ops.lstm_sweep_fwd_narrow.default,
                          (pre, w_hh, y.clone(), c_run, gates.clone(), cell.clone(), arrivals, codes, 3, 4, True))
