"""Training checkpoints: atomic files, and the RNG state that makes a resumed run continue bit-exactly.

A training state is one torch file (model, optimizer, step, data position, RNG states, best validation), read
back with `torch.load(weights_only=True)`: it holds only tensors, numbers, strings, lists and dicts, so reading
it executes no code. Model weights for sampling and sharing are written separately as safetensors
(MelNet.save).
"""

from __future__ import annotations

import io
import os
import random
from typing import Any, Dict

import numpy as np
import torch

from melnet_fast.atomic_files import atomic_write_bytes, atomic_write_text  # noqa: F401 (re-exported)

FORMAT = "melnet_fast.train_state"
FORMAT_VERSION = 1

PathLike = str | os.PathLike


# ------------------------------------------------------------------------------------------------ RNG


def rng_state() -> Dict[str, Any]:
    """The state of every RNG a training step may touch: torch (CPU and each CUDA device), numpy, python."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    """Restore what rng_state returned."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# -------------------------------------------------------------------------------------- training state


def save_training_state(path: PathLike, state: Dict[str, Any]) -> None:
    """Write a training state dict (see Trainer.state_dict) to `path`, atomically."""
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, **state}, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_training_state(path: PathLike, *, mmap: bool = False) -> Dict[str, Any]:
    """Read a training state written by save_training_state. ValueError if it is not one. mmap: map the
    tensors from the file instead of reading them (cheap when only the step is wanted)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no training checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as e:  # truncated files and foreign pickles raise many different types
        first_line = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ValueError(f"{path} is not a readable training checkpoint (corrupt or truncated?): "
                         f"{first_line}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path} is not a melnet_fast training checkpoint")
    if state.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path} has training-checkpoint version {state.get('format_version')!r}; this "
                         f"melnet_fast reads version {FORMAT_VERSION}")
    return state


def all_finite(module: torch.nn.Module) -> bool:
    """True when every parameter of `module` is finite (a checkpoint is only written then)."""
    return all(bool(torch.isfinite(p).all()) for p in module.parameters())
