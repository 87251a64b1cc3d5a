"""The op layer: pure tensor functions, differentiable, dispatched to a backend (see melnet_fast.backends).

Each op lives in its own folder: `reference.py` holds the plain-PyTorch reference (the oracle of the tests),
`cpp_backend.py` the registrations of the extension's C++ / CUDA kernels, `triton_backend.py` (where there is one)
the Triton kernels' ops, and the folder's `__init__` the public function and its row in the one registry of
backends (dispatch.py).
"""

from melnet_fast.ops._checks import raise_deferred_errors
from melnet_fast.ops.gmm import gmm_nll, gmm_nll_ref, gmm_sample, gmm_sample_ref
from melnet_fast.ops.gmm_attention import guided_attention_loss
from melnet_fast.ops.lstm_sweep import DIRECTION_CODES, lstm_sweep_2d, lstm_sweep_2d_ref
from melnet_fast.ops.tier_sampling import (
    ReferenceSamplerWarning,
    sample_tier,
    sample_tier_centralized,
    sample_tier_centralized_ref,
    sample_tier_ref,
)

__all__ = ["lstm_sweep_2d", "lstm_sweep_2d_ref", "gmm_nll", "gmm_nll_ref", "gmm_sample", "gmm_sample_ref",
           "sample_tier", "sample_tier_ref", "sample_tier_centralized", "sample_tier_centralized_ref",
           "ReferenceSamplerWarning", "DIRECTION_CODES", "raise_deferred_errors",
           "guided_attention_loss"]
