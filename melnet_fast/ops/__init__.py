"""The op layer: pure tensor functions, differentiable, dispatched to a backend (see melnet_fast.backends).

Each op lives in its own folder: `naive.py` holds the plain-PyTorch reference (the oracle of the tests),
`compiled.py` the registrations of the C++/CUDA kernels, and the folder's `__init__` the public function.
"""

from melnet_fast.ops.gmm import gmm_nll, gmm_nll_ref, gmm_sample, gmm_sample_ref
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
           "ReferenceSamplerWarning", "DIRECTION_CODES"]
