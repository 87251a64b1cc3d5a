"""Checkpoints: a config (JSON, in the metadata) and named tensors in one safetensors file.

Writes are atomic (melnet_fast.atomic_files): a crash never leaves a half-written checkpoint under the final
name. Reads execute no code (no pickle).
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Mapping, Tuple

import torch

from melnet_fast._optional import require
from melnet_fast.atomic_files import atomic_write_bytes

FORMAT = "melnet_fast.MelNet"
FORMAT_VERSION = "1"

PathLike = str | os.PathLike


def write_checkpoint(path: PathLike, state: Mapping[str, torch.Tensor], config: Dict[str, Any]) -> None:
    """Write `state` (name -> tensor) and `config` (a JSON-able dict) to `path`, atomically."""
    path = os.fspath(path)
    tensors = {name: t.detach().to("cpu").contiguous() for name, t in state.items()}
    metadata = {"format": FORMAT, "format_version": FORMAT_VERSION, "config": json.dumps(config, sort_keys=True)}
    data = require("safetensors.torch", "saving a checkpoint").save(tensors, metadata=metadata)
    atomic_write_bytes(path, data)


def read_checkpoint(path: PathLike, map_location: str | torch.device = "cpu"
                    ) -> Tuple[Dict[str, Any], Dict[str, torch.Tensor]]:
    """(config dict, state) read from `path`. ValueError when the file is not a melnet_fast checkpoint."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no checkpoint file at {path}")
    safe_open = require("safetensors", "reading a checkpoint").safe_open
    try:
        with safe_open(path, framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            state = {name: f.get_tensor(name) for name in f.keys()}
    except Exception as e:  # safetensors raises its own error types for truncated or garbled files
        raise ValueError(f"{path} is not a readable safetensors checkpoint (corrupt or truncated?): {e}") from None
    if metadata.get("format") != FORMAT:
        raise ValueError(f"{path} is a safetensors file but not a melnet_fast checkpoint "
                         f"(metadata format={metadata.get('format')!r}, expected {FORMAT!r})")
    if metadata.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path} has checkpoint format version {metadata.get('format_version')!r}; this "
                         f"melnet_fast reads version {FORMAT_VERSION}")
    try:
        config = json.loads(metadata["config"])
    except (KeyError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: the checkpoint's config metadata is missing or not JSON: {e}") from None
    if str(map_location) != "cpu":
        state = {name: t.to(map_location) for name, t in state.items()}
    return config, state


def check_state(path: PathLike, state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor]) -> None:
    """ValueError unless `state` has exactly the names and shapes of `expected` (a freshly built model's)."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [f"{n}: {list(state[n].shape)} (expected {list(expected[n].shape)})"
             for n in expected if n in state and state[n].shape != expected[n].shape]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
        if wrong:
            parts.append(f"wrong shapes {wrong[:5]}{' ...' if len(wrong) > 5 else ''}")
        raise ValueError(f"{os.fspath(path)}: the tensors do not match the model its config describes: "
                         + "; ".join(parts))
