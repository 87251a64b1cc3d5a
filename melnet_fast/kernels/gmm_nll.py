"""Triton kernels of the Gaussian-mixture NLL (melnet_fast.ops.gmm_nll): forward, fused forward + local
gradients, recomputing backward, and the scaling of local gradients by the upstream gradient.

Layout: x [...] is read as N rows, mu / log_sigma / logit_pi [..., K] as [N, K]. A program owns BLOCK_N rows
and all K components (K padded to BLOCK_K, a power of two, with masks), so every sum and max over components
is a reduction inside the program and each input element is read once. Inputs are addressed through a row
stride and a component stride: slices of one tensor (the head's theta[..., :K] has row stride 3K) and other
views whose leading dimensions merge into one stride run without a copy; only views whose leading dimensions do
not merge (e.g. a transposed batch) are copied by reshape. Storage may be float32, bfloat16 or float16; the
math is float32. Outputs are new contiguous tensors.

Numerics follow the CPU kernel (csrc/gmm_cpu.cpp). With d_k = logit_k - max logit, z_k = (x - mu_k) / sigma_k
formed as (x - mu_k) exp(-log_sigma_k), b_k = d_k - z_k^2 / 2 - log_sigma_k:
    nll = log sqrt(2 pi) - max b - log(sum_k e^(b_k - max b) / sum_k e^(d_k))
posteriors w_k = e^(b_k - max b) / sum e^(b - max b), pi_k = e^(d_k) / sum e^d, and the gradients (times g)
    d/dx = sum_k w_k z_k / sigma_k,  d/dmu_k = -w_k z_k / sigma_k,  d/dlog_sigma_k = w_k (1 - z_k^2),
    d/dlogit_k = pi_k - w_k.
Every exp argument is <= 0 except -log_sigma; a weight that underflows to 0 zeroes its z terms (no 0 * inf). exp,
log and log sqrt(2 pi) are scalar_math's (the twin of csrc/scalar_math.h, which the CPU and CUDA kernels use), and
every division is IEEE (tl.math.div_rn): on the GPU tl.exp, tl.log and '/' are approximations.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from melnet_fast.kernels import scalar_math as sm

# Rows per program times padded components: 1024 fp32 values per [BLOCK_N, BLOCK_K] tile, 8 per thread at 4
# warps. A starting point; benchmarks/ may tune it.
_TILE = 1024
_NUM_WARPS = 4


@triton.jit
def _load_tile(x_ptr, sx, mu_ptr, smu_n, smu_k, ls_ptr, sls_n, sls_k, lp_ptr, slp_n, slp_k, N, K,
               BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """This program's rows as float32: x [BLOCK_N], mu / log_sigma / logit_pi [BLOCK_N, BLOCK_K], plus the row
    indices (int64) and masks. Lanes k >= K get logit -inf (so pi_k = 0 and b_k = -inf, weight 0) and mu =
    log_sigma = 0 (finite); rows >= N get finite zeros and are never stored."""
    rows = tl.program_id(0).to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    ks = tl.arange(0, BLOCK_K)
    mask_n = rows < N
    mask_k = ks < K
    mask = mask_n[:, None] & mask_k[None, :]
    r2 = rows[:, None]
    k2 = ks[None, :].to(tl.int64)
    x = tl.load(x_ptr + rows * sx, mask=mask_n, other=0.0).to(tl.float32)
    mu = tl.load(mu_ptr + r2 * smu_n + k2 * smu_k, mask=mask, other=0.0).to(tl.float32)
    ls = tl.load(ls_ptr + r2 * sls_n + k2 * sls_k, mask=mask, other=0.0).to(tl.float32)
    lp = tl.load(lp_ptr + r2 * slp_n + k2 * slp_k, mask=mask, other=0.0).to(tl.float32)
    lp = tl.where(mask_k[None, :], lp, -float("inf"))
    return rows, mask_n, mask, x, mu, ls, lp


@triton.jit
def _mixture(x, mu, ls, lp):
    """The shared part of forward and backward: e = e^(d_k), inv_s = 1 / sigma_k, z_k, q = e^(b_k - max b)
    ([BLOCK_N, BLOCK_K]) and se = sum e, sa = sum q, bmax = max b ([BLOCK_N])."""
    mx = tl.max(lp, axis=1)
    d = lp - mx[:, None]
    e = sm.exp(d)
    se = tl.sum(e, axis=1)
    inv_s = sm.exp(-ls)
    z = (x[:, None] - mu) * inv_s
    b = d - 0.5 * z * z - ls
    bmax = tl.max(b, axis=1)
    q = sm.exp(b - bmax[:, None])
    sa = tl.sum(q, axis=1)
    return e, se, inv_s, z, q, sa, bmax


@triton.jit
def _nll(se, sa, bmax):
    nll = (sm.LOG_SQRT_2PI - bmax) - sm.log(tl.math.div_rn(sa, se))
    # every component has density 0 (max b = -inf): nll = +inf, not inf - inf
    return tl.where(bmax > -float("inf"), nll, -bmax)


@triton.jit
def _grads(e, se, inv_s, z, q, sa, g):
    """g times d nll / d(x, mu, log_sigma, logit_pi): [BLOCK_N], then three [BLOCK_N, BLOCK_K]."""
    gw = q * tl.math.div_rn(g, sa)[:, None]  # g w_k
    live = q != 0.0
    dz = tl.where(live, gw * z * inv_s, 0.0)
    dx = tl.sum(dz, axis=1)
    dls = tl.where(live, gw * (1.0 - z * z), 0.0)
    dlp = e * tl.math.div_rn(g, se)[:, None] - gw  # g (pi_k - w_k)
    return dx, -dz, dls, dlp


@triton.jit
def _fwd_kernel(x_ptr, sx, mu_ptr, smu_n, smu_k, ls_ptr, sls_n, sls_k, lp_ptr, slp_n, slp_k, nll_ptr, N, K,
                BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    rows, mask_n, mask, x, mu, ls, lp = _load_tile(x_ptr, sx, mu_ptr, smu_n, smu_k, ls_ptr, sls_n, sls_k,
                                                   lp_ptr, slp_n, slp_k, N, K, BLOCK_N, BLOCK_K)
    e, se, inv_s, z, q, sa, bmax = _mixture(x, mu, ls, lp)
    nll = _nll(se, sa, bmax)
    tl.store(nll_ptr + rows, nll.to(nll_ptr.dtype.element_ty), mask=mask_n)


@triton.jit
def _store_grads(rows, mask_n, mask, K, dx, dmu, dls, dlp, gx_ptr, gmu_ptr, gls_ptr, glp_ptr,
                 BLOCK_K: tl.constexpr):
    """Stores into contiguous [N] and [N, K] outputs, each in its pointer's dtype."""
    off = rows[:, None] * K + tl.arange(0, BLOCK_K)[None, :]
    tl.store(gx_ptr + rows, dx.to(gx_ptr.dtype.element_ty), mask=mask_n)
    tl.store(gmu_ptr + off, dmu.to(gmu_ptr.dtype.element_ty), mask=mask)
    tl.store(gls_ptr + off, dls.to(gls_ptr.dtype.element_ty), mask=mask)
    tl.store(glp_ptr + off, dlp.to(glp_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _fwd_local_kernel(x_ptr, sx, mu_ptr, smu_n, smu_k, ls_ptr, sls_n, sls_k, lp_ptr, slp_n, slp_k, nll_ptr,
                      lx_ptr, lmu_ptr, lls_ptr, llp_ptr, N, K, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    rows, mask_n, mask, x, mu, ls, lp = _load_tile(x_ptr, sx, mu_ptr, smu_n, smu_k, ls_ptr, sls_n, sls_k,
                                                   lp_ptr, slp_n, slp_k, N, K, BLOCK_N, BLOCK_K)
    e, se, inv_s, z, q, sa, bmax = _mixture(x, mu, ls, lp)
    tl.store(nll_ptr + rows, _nll(se, sa, bmax).to(nll_ptr.dtype.element_ty), mask=mask_n)
    dx, dmu, dls, dlp = _grads(e, se, inv_s, z, q, sa, tl.full((BLOCK_N,), 1.0, tl.float32))
    _store_grads(rows, mask_n, mask, K, dx, dmu, dls, dlp, lx_ptr, lmu_ptr, lls_ptr, llp_ptr, BLOCK_K)


@triton.jit
def _bwd_kernel(g_ptr, sg, x_ptr, sx, mu_ptr, smu_n, smu_k, ls_ptr, sls_n, sls_k, lp_ptr, slp_n, slp_k,
                gx_ptr, gmu_ptr, gls_ptr, glp_ptr, N, K, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    rows, mask_n, mask, x, mu, ls, lp = _load_tile(x_ptr, sx, mu_ptr, smu_n, smu_k, ls_ptr, sls_n, sls_k,
                                                   lp_ptr, slp_n, slp_k, N, K, BLOCK_N, BLOCK_K)
    g = tl.load(g_ptr + rows * sg, mask=mask_n, other=0.0).to(tl.float32)
    e, se, inv_s, z, q, sa, bmax = _mixture(x, mu, ls, lp)
    dx, dmu, dls, dlp = _grads(e, se, inv_s, z, q, sa, g)
    _store_grads(rows, mask_n, mask, K, dx, dmu, dls, dlp, gx_ptr, gmu_ptr, gls_ptr, glp_ptr, BLOCK_K)


@triton.jit
def _scale_kernel(g_ptr, sg, lx_ptr, lmu_ptr, lls_ptr, llp_ptr, gx_ptr, gmu_ptr, gls_ptr, glp_ptr, N, K,
                  BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    rows = tl.program_id(0).to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_n = rows < N
    mask = mask_n[:, None] & (tl.arange(0, BLOCK_K) < K)[None, :]
    off = rows[:, None] * K + tl.arange(0, BLOCK_K)[None, :]
    g = tl.load(g_ptr + rows * sg, mask=mask_n, other=0.0).to(tl.float32)
    dx = g * tl.load(lx_ptr + rows, mask=mask_n, other=0.0).to(tl.float32)
    dmu = g[:, None] * tl.load(lmu_ptr + off, mask=mask, other=0.0).to(tl.float32)
    dls = g[:, None] * tl.load(lls_ptr + off, mask=mask, other=0.0).to(tl.float32)
    dlp = g[:, None] * tl.load(llp_ptr + off, mask=mask, other=0.0).to(tl.float32)
    _store_grads(rows, mask_n, mask, K, dx, dmu, dls, dlp, gx_ptr, gmu_ptr, gls_ptr, glp_ptr, BLOCK_K)


# ----------------------------------------------------------------------------------------------------------------
# Launchers. Shapes: x, grad [...] (N elements); mu, log_sigma, logit_pi [..., K] with the same leading shape.


def _blocks(K: int) -> tuple[int, int]:
    block_k = triton.next_power_of_2(K)
    return max(1, _TILE // block_k), block_k


def _rows(t: torch.Tensor, N: int) -> tuple[torch.Tensor, int]:
    """t [...] as [N] and its stride (a view when the dimensions merge into one stride, else a copy)."""
    t = t.reshape(N)
    return t, t.stride(0)


def _table(t: torch.Tensor, N: int, K: int) -> tuple[torch.Tensor, int, int]:
    """t [..., K] as [N, K] and its (row, component) strides; a view when the leading dimensions merge."""
    t = t.reshape(N, K)
    return t, t.stride(0), t.stride(1)


def _params(x, mu, log_sigma, logit_pi):
    K = mu.shape[-1]
    N = x.numel()
    xv, sx = _rows(x, N)
    args = [xv, sx]
    for t in (mu, log_sigma, logit_pi):
        args += list(_table(t, N, K))
    return N, K, args


def _grid(N: int, block_n: int):
    return (triton.cdiv(N, block_n),)


def gmm_nll_fwd(x: torch.Tensor, mu: torch.Tensor, log_sigma: torch.Tensor, logit_pi: torch.Tensor) -> torch.Tensor:
    """Forward only. x [...], mu / log_sigma / logit_pi [..., K] (x.shape + (K,)), one dtype and device.
    Returns nll [...] (x.shape, x.dtype, contiguous)."""
    N, K, args = _params(x, mu, log_sigma, logit_pi)
    nll = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    if N == 0:
        return nll
    block_n, block_k = _blocks(K)
    _fwd_kernel[_grid(N, block_n)](*args, nll, N, K, BLOCK_N=block_n, BLOCK_K=block_k, num_warps=_NUM_WARPS)
    return nll


def local_grad_dtype(dtype: torch.dtype) -> torch.dtype:
    """Storage of the local gradients of gmm_nll_fwd_local: float16's range is too small for d nll / dx (up to
    z / sigma, e.g. 1e5 at sigma = 1e-5, before the upstream gradient scales it down), so it gets float32; float32
    and bfloat16 (float32's range) keep their dtype."""
    return torch.float32 if dtype == torch.float16 else dtype


def gmm_nll_fwd_local(x: torch.Tensor, mu: torch.Tensor, log_sigma: torch.Tensor, logit_pi: torch.Tensor):
    """Forward and the local gradients in one pass over the inputs. Shapes as gmm_nll_fwd. Returns
    (nll [...] in x.dtype, d nll/dx [...], d nll/dmu, d nll/dlog_sigma, d nll/dlogit_pi [N-shaped ..., K]) with the
    gradients in local_grad_dtype(x.dtype), all contiguous; scale them with gmm_nll_scale."""
    N, K, args = _params(x, mu, log_sigma, logit_pi)
    nll = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    ldt = local_grad_dtype(x.dtype)
    lx = torch.empty(x.shape, dtype=ldt, device=x.device)
    lmu, lls, llp = (torch.empty(mu.shape, dtype=ldt, device=x.device) for _ in range(3))
    if N == 0:
        return nll, lx, lmu, lls, llp
    block_n, block_k = _blocks(K)
    _fwd_local_kernel[_grid(N, block_n)](*args, nll, lx, lmu, lls, llp, N, K, BLOCK_N=block_n, BLOCK_K=block_k,
                                         num_warps=_NUM_WARPS)
    return nll, lx, lmu, lls, llp


def gmm_nll_scale(grad: torch.Tensor, lx: torch.Tensor, lmu: torch.Tensor, lls: torch.Tensor, llp: torch.Tensor,
                  dtype: torch.dtype):
    """grad [...] (any strides, e.g. an expanded scalar) times the contiguous local gradients of
    gmm_nll_fwd_local (lx [...], the others [..., K]), in float32, stored as `dtype`. Returns
    (dx [...], dmu, dlog_sigma, dlogit_pi [..., K]), contiguous."""
    N, K = lx.numel(), lmu.shape[-1]
    gv, sg = _rows(grad, N)
    gx = torch.empty(lx.shape, dtype=dtype, device=lx.device)
    gmu, gls, glp = (torch.empty(lmu.shape, dtype=dtype, device=lx.device) for _ in range(3))
    if N == 0:
        return gx, gmu, gls, glp
    assert lx.is_contiguous() and lmu.is_contiguous() and lls.is_contiguous() and llp.is_contiguous()
    block_n, block_k = _blocks(K)
    _scale_kernel[_grid(N, block_n)](gv, sg, lx, lmu, lls, llp, gx, gmu, gls, glp, N, K, BLOCK_N=block_n,
                                     BLOCK_K=block_k, num_warps=_NUM_WARPS)
    return gx, gmu, gls, glp


def gmm_nll_bwd(grad: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, log_sigma: torch.Tensor,
                logit_pi: torch.Tensor):
    """Backward that recomputes the mixture from the inputs: reads grad [...] and the inputs once, writes
    (dx [...], dmu, dlog_sigma, dlogit_pi [..., K]) once, in x.dtype, contiguous."""
    N, K, args = _params(x, mu, log_sigma, logit_pi)
    gv, sg = _rows(grad, N)
    gx = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    gmu, gls, glp = (torch.empty(mu.shape, dtype=x.dtype, device=x.device) for _ in range(3))
    if N == 0:
        return gx, gmu, gls, glp
    block_n, block_k = _blocks(K)
    _bwd_kernel[_grid(N, block_n)](gv, sg, *args, gx, gmu, gls, glp, N, K, BLOCK_N=block_n, BLOCK_K=block_k,
                                   num_warps=_NUM_WARPS)
    return gx, gmu, gls, glp
