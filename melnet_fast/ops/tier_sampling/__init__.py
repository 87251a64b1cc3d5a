"""Incremental sampling of one MelNet tier with cached state: O(T*F) LSTM cell steps per layer."""

from __future__ import annotations

import math
import warnings
from typing import Sequence, Tuple

import torch

from melnet_fast.log_mel_scale import SAMPLE_RANGE
from melnet_fast.ops import dispatch
from melnet_fast.ops._checks import check_same, check_tensor
from melnet_fast.ops.tier_sampling import cpp_backend  # noqa: F401  (registers the C++ op's fake kernel)
from melnet_fast.ops.tier_sampling.centralized_weights import unpack as unpack_centralized
from melnet_fast.ops.tier_sampling.layout import unpack
from melnet_fast.ops.tier_sampling.reference import sample_tier_centralized_ref, sample_tier_ref

# cpu and cuda are one function: the extension's op runs the sampler of the tensors' device.
OP = dispatch.register("sample_tier", "x_init", [
    ("cuda", ["cuda"], "melnet_fast.ops.tier_sampling.cpp_backend:sample_tier_cpp"),
    ("cpu", ["cpu"], "melnet_fast.ops.tier_sampling.cpp_backend:sample_tier_cpp"),
    ("reference", ["cpu", "cuda"], "melnet_fast.ops.tier_sampling.reference:sample_tier_ref"),
])
# The second design of the cuda sampler (folded projections, flag waits, resident weight rows): a variant of the cuda
# backend that "auto" leaves alone until a GPU has measured both; forced with
# dispatch.use_variant("sample_tier", "flags") or MELNET_FAST_SAMPLE_TIER_VARIANT=flags.
dispatch.register_variant("sample_tier", "cuda", "flags",
                          "melnet_fast.ops.tier_sampling.cpp_backend:sample_tier_cuda_flags")
# The cuda sampler (either design) does not run the centralized stack / text attention yet; a design that does
# registers a "cuda" row (or a variant of it) here: "auto" on CUDA takes the reference (with
# a ReferenceSamplerWarning, since sample_tier would take cuda there), an explicit cuda is an error.
OP_CENTRALIZED = dispatch.register("sample_tier_centralized", "x_init", [
    ("cpu", ["cpu"], "melnet_fast.ops.tier_sampling.cpp_backend:sample_tier_centralized_cpp"),
    ("reference", ["cpu", "cuda"], "melnet_fast.ops.tier_sampling.reference:sample_tier_centralized_ref"),
])


class ReferenceSamplerWarning(UserWarning):
    """A model with a centralized stack (text-to-speech) is sampled by the slower reference sampler because the
    compiled sampler that "auto" would pick for its device (cuda) does not support it yet."""


# The cuda sampler also takes weights stored in these dtypes with float32 data (x_init, cz_t, cz_f, u, eps).
CUDA_WEIGHT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def sample_tier(x_init: torch.Tensor, cz_t: torch.Tensor, cz_f: torch.Tensor, u: torch.Tensor,
                eps: torch.Tensor, weights: Sequence[torch.Tensor], n_layers: int, n_mixtures: int,
                temperature: float = 1.0, n_prime: int = 0,
                value_range: Tuple[float, float] = SAMPLE_RANGE) -> tuple[torch.Tensor, torch.Tensor]:
    """Ancestral sampling of one tier network, frame by frame and channel by channel, with cached state.

    Per frame: one step of every layer's time LSTM (state carried from the frame before), full sweeps of the
    two frequency LSTMs over the frame, projections and residuals; then per channel one step of every layer
    of the frequency-delayed stack, the head, and a draw that becomes the next channel's input.

    Args:
        x_init: [B, T, F]; its first n_prime frames are the prime (kept), the rest is overwritten.
        cz_t, cz_f: [B, T, F, D] conditioning terms W_z^t z and W_z^f z (zeros without conditioning).
        u, eps: [B, T, F] noise of the draws (gmm_sample_from_noise: u picks the component, eps the value).
        weights: the tier's flat weight list (order: csrc/sampler_layout.h, melnet_fast.ops.tier_sampling.layout).
        temperature: logits / tau, sigma * tau; 0 = mean of the most probable component.
        n_prime: number of leading frames taken from x_init instead of drawn.
        value_range: (x_min, x_max), finite: every drawn value is kept in it (below x_min -> x_min; above x_max,
            or NaN, -> x_max; keep_in_range of ops/gmm/reference.py and csrc/scalar_math.h), so any model, trained
            or not, gives finite samples, and the next element reads the kept value. Default: the normalised
            log-mel range of melnet_fast.log_mel_scale (the log floor to +30 dB over a full-scale sine).
    Dtypes: every tensor of one dtype; or, with the cuda backend, bfloat16 / float16 weights and float32 data
    (the kernel accumulates in float32).
    Returns:
        (x [B, T, F], log_density [B]): the sample and the sum over drawn elements of log p(x_ij) (of the kept
        value) under the untempered mixture.
    """
    name = _check(x_init, cz_t, cz_f, u, eps, weights, n_layers, n_mixtures, temperature, n_prime)
    x_min, x_max = check_value_range(value_range)
    with torch.no_grad():
        return OP.function(name)(x_init, cz_t, cz_f, u, eps, weights, n_layers, n_mixtures, temperature, n_prime,
                                 x_min, x_max)


def sample_tier_centralized(x_init: torch.Tensor, cz_t: torch.Tensor, cz_f: torch.Tensor, u: torch.Tensor,
                            eps: torch.Tensor, weights: Sequence[torch.Tensor], n_layers: int, n_mixtures: int,
                            temperature: float, n_prime: int, centralized_weights: Sequence[torch.Tensor],
                            attention_layer: int = 0, memory: torch.Tensor | None = None,
                            text_lengths: torch.Tensor | None = None, stop_threshold: float | None = None,
                            value_range: Tuple[float, float] = SAMPLE_RANGE
                            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """sample_tier for a tier with a centralized stack (and text attention): once before each frame's
    per-element work, one step of the centralized stack (and of the attention) whose terms join the
    frequency-delayed stack's inputs. Backends: "cpu" (the C++ sampler, what "auto" picks for CPU tensors) and
    "reference"; on CUDA tensors "auto" runs the reference sampler with a ReferenceSamplerWarning (the cuda
    sampler does not run the text path yet), and an explicit "cuda" backend is a RuntimeError.

    Args (beyond sample_tier's):
        centralized_weights: the flat list of melnet_fast.ops.tier_sampling.centralized_weights (with the
            attention part exactly when memory is given).
        attention_layer: the level a of the centralized stack the attention reads (0 <= a < n_layers).
        memory: [B, U, D] encoded texts; text_lengths: LongTensor [B] (positions >= text_lengths[b] are padding).
        stop_threshold: stop row b at the first frame i >= max(n_prime, 1) whose attention mass past the end of
            its text exceeds this (None: never stop; every row runs to T).
        value_range: (x_min, x_max), finite: every drawn value is kept in it, by sample_tier's rule.
    Returns:
        (x [B, T, F], log_density [B], alignment [B, T, U] (None without text), lengths LongTensor [B]): the
        attention weights of every generated frame and the frames each row has; x and alignment are zeros at
        and after lengths[b], and log_density sums the drawn elements before lengths[b].
    """
    _check(x_init, cz_t, cz_f, u, eps, weights, n_layers, n_mixtures, temperature, n_prime)
    x_min, x_max = check_value_range(value_range)
    if weights[0].dtype != x_init.dtype:
        raise ValueError(f"weights: the samplers with the centralized stack (cpu, reference) need weights of the "
                         f"data's dtype {x_init.dtype}, got {weights[0].dtype}")
    B, _, F = x_init.shape
    W = unpack_centralized(centralized_weights, n_layers)
    D = cz_t.shape[-1]
    if tuple(W.in_w.shape) != (D, F):
        raise ValueError(f"centralized weights[0] must have shape [{D}, {F}] (hidden, channels of the tier), got "
                         f"{list(W.in_w.shape)}")
    check_same({"x_init": x_init, **{f"centralized_weights[{i}]": w for i, w in enumerate(centralized_weights)}})
    if not isinstance(attention_layer, int) or not 0 <= attention_layer < n_layers:
        raise ValueError(f"attention_layer must be an int in [0, n_layers={n_layers}), got {attention_layer!r}")
    if (memory is None) != (W.attention is None):
        raise ValueError("memory (the encoded texts) must be given exactly when centralized_weights hold the "
                         "attention part")
    if memory is not None:
        check_tensor("memory", memory, 3, (B, None, D), layout=" [B, U, D]")
        check_same({"x_init": x_init, "memory": memory})
        U = memory.shape[1]
        if (not isinstance(text_lengths, torch.Tensor) or text_lengths.dtype != torch.long
                or tuple(text_lengths.shape) != (B,) or text_lengths.device != x_init.device):
            raise ValueError(f"text_lengths must be a LongTensor [{B}] on {x_init.device}, got "
                             f"{text_lengths if not isinstance(text_lengths, torch.Tensor) else text_lengths.dtype}")
        if not bool(((text_lengths >= 1) & (text_lengths <= U)).all()):
            raise ValueError(f"text_lengths must lie in [1, U={U}], got {text_lengths.tolist()}")
    if stop_threshold is not None and (isinstance(stop_threshold, bool) or not isinstance(stop_threshold, (int, float))
                                       or not 0 < stop_threshold < 1):
        raise ValueError(f"stop_threshold must be None or a number in (0, 1), got {stop_threshold!r}")
    preferred = OP.resolve(x_init)
    name = OP_CENTRALIZED.resolve(x_init)
    if preferred != name:
        warnings.warn(f"the {preferred} sampler does not run the centralized stack / text attention yet: this tier "
                      f"is sampled by the {name} sampler (eager PyTorch, much slower per element)",
                      ReferenceSamplerWarning, stacklevel=2)
    with torch.no_grad():
        return OP_CENTRALIZED.function(name)(x_init, cz_t, cz_f, u, eps, weights, n_layers, n_mixtures,
                                             float(temperature), n_prime, centralized_weights, attention_layer,
                                             memory, text_lengths, stop_threshold, x_min, x_max)


def _check(x_init, cz_t, cz_f, u, eps, weights, n_layers, n_mixtures, temperature, n_prime) -> str:
    """The checks of sample_tier; returns the backend it resolves to."""
    check_tensor("x_init", x_init, 3, layout=" [B, T, F]")
    B, T, F = x_init.shape
    check_tensor("cz_t", cz_t, 4, (B, T, F, None), layout=" [B, T, F, D]")
    D = cz_t.shape[-1]
    check_tensor("cz_f", cz_f, 4, (B, T, F, D), layout=" [B, T, F, D]")
    check_tensor("u", u, 3, (B, T, F), layout=" [B, T, F]")
    check_tensor("eps", eps, 3, (B, T, F), layout=" [B, T, F]")
    if not isinstance(n_layers, int) or n_layers < 1:
        raise ValueError(f"n_layers must be a positive int, got {n_layers!r}")
    if not isinstance(n_mixtures, int) or n_mixtures < 1:
        raise ValueError(f"n_mixtures must be a positive int, got {n_mixtures!r}")
    if not isinstance(n_prime, int) or not 0 <= n_prime <= T:
        raise ValueError(f"n_prime must be an int in [0, {T}], got {n_prime!r}")
    if not isinstance(temperature, (int, float)) or not temperature >= 0:
        raise ValueError(f"temperature must be a number >= 0, got {temperature!r}")
    W = unpack(weights, n_layers, n_mixtures)
    if W.xt_w.shape[0] != D:
        raise ValueError(f"cz_t has {D} channels but the weights are {W.xt_w.shape[0]} wide")
    data = {"x_init": x_init, "cz_t": cz_t, "cz_f": cz_f, "u": u, "eps": eps}
    named_weights = {f"weights[{i}]": w for i, w in enumerate(weights)}
    mixed = weights[0].dtype != x_init.dtype
    if mixed:  # low-precision weights with float32 data: the cuda sampler's mode
        check_same(data)
        check_same(named_weights)
        if weights[0].device != x_init.device:
            raise ValueError(f"weights[0] is on {weights[0].device} but x_init is on {x_init.device}; "
                             "all arguments must be on one device")
        if x_init.dtype != torch.float32 or weights[0].dtype not in CUDA_WEIGHT_DTYPES:
            raise ValueError(f"weights have dtype {weights[0].dtype} but x_init has {x_init.dtype}; weights of "
                             "another dtype than the data must be bfloat16 or float16 with float32 data")
    else:
        check_same({**data, **named_weights})
    name = OP.resolve(x_init)
    if mixed and name != "cuda":
        raise ValueError(f"weights: the {name} sampler needs weights of the data's dtype {x_init.dtype}, got "
                         f"{weights[0].dtype} (only the cuda backend takes bfloat16/float16 weights)")
    return name


def check_value_range(value_range) -> Tuple[float, float]:
    """(x_min, x_max) as floats, or ValueError unless value_range is two finite numbers with x_min < x_max."""
    pair = tuple(value_range) if isinstance(value_range, (tuple, list)) else ()
    if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in pair):
        raise ValueError(f"value_range must be two numbers (x_min, x_max), got {value_range!r}")
    x_min, x_max = float(pair[0]), float(pair[1])
    if not (math.isfinite(x_min) and math.isfinite(x_max) and x_min < x_max):
        raise ValueError(f"value_range must be finite with x_min < x_max, got {value_range!r}")
    return x_min, x_max


__all__ = ["sample_tier", "sample_tier_ref", "sample_tier_centralized", "sample_tier_centralized_ref",
           "ReferenceSamplerWarning", "check_value_range"]
