"""Optional dependencies: the package imports, and the model trains and samples, with torch and numpy alone; the
features below import their packages when used, and say which extra installs them when they are missing."""

from __future__ import annotations

import importlib
from types import ModuleType

# module -> (distribution on the registry, extra of melnet_fast that installs it). pyproject.toml's extras list
# the same distributions (a test pins them together).
OPTIONAL = {
    "torchaudio": ("torchaudio", "audio"),
    "soundfile": ("soundfile", "audio"),
    "safetensors": ("safetensors", "train"),
    "tqdm": ("tqdm", "train"),
    "tensorboard": ("tensorboard", "train"),
    "matplotlib": ("matplotlib", "plots"),
    "PIL": ("pillow", "plots"),
    "triton": ("triton", "triton"),
    "music21": ("music21", "corpora"),
}


def missing_message(module: str, feature: str) -> str:
    """`feature` needs `module`: which package and extra to install."""
    dist, extra = OPTIONAL[module]
    return (f"{feature} needs the package {dist!r}, which is not installed: "
            f"pip install 'melnet_fast[{extra}]' (or pip install {dist})")


def require(module: str, feature: str) -> ModuleType:
    """Import `module` (a key of OPTIONAL, or one of its submodules, e.g. "matplotlib.figure"); when its package is
    missing, a ModuleNotFoundError that names `feature`, the package and the extra."""
    top = module.split(".", 1)[0]
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name is None or e.name.split(".", 1)[0] != top:
            raise  # the package is there but something it imports is not: its own error says more
        raise ModuleNotFoundError(missing_message(top, feature), name=top) from None
