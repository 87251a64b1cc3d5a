"""melnet_fast: MelNet with fused kernels for the 2D LSTM sweeps and cached per-element sampling."""

from melnet_fast import ops
from melnet_fast.backends import available_backends, get_backend, set_backend, use_backend
from melnet_fast.config import MelNetConfig
from melnet_fast.model import DivergentSampleWarning, MelNet
from melnet_fast.modules import MixtureParams
from melnet_fast.ops.autotune import tune
from melnet_fast.ops.dispatch import use_variant

__version__ = "0.1.0"

__all__ = ["MelNet", "MelNetConfig", "MixtureParams", "DivergentSampleWarning", "ops", "set_backend", "use_backend",
           "get_backend", "available_backends", "tune", "use_variant", "__version__"]
