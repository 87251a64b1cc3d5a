"""melnet_fast: MelNet with fused kernels for the 2D LSTM sweeps and cached per-element sampling."""

from melnet_fast import ops
from melnet_fast.backends import available_backends, get_backend, set_backend, use_backend

__version__ = "0.1.0"

__all__ = ["ops", "set_backend", "use_backend", "get_backend", "available_backends", "__version__"]
