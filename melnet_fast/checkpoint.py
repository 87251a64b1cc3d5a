"""Checkpoints: a config (JSON, in the metadata) and named tensors in one safetensors file.

The metadata names the model's format ("melnet_fast.MelNet", "melnet_fast.CMelGAN", ...): a file of one model is
refused, with a clear error, by the loader of another.

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


def write_checkpoint(path: PathLike, state: Mapping[str, torch.Tensor], config: Dict[str, Any],
                     format_name: str = FORMAT) -> None:
    """Write `state` (name -> tensor) and `config` (a JSON-able dict) to `path`, atomically."""
    path = os.fspath(path)
    tensors = {name: t.detach().to("cpu").contiguous() for name, t in state.items()}
    metadata = {"format": format_name, "format_version": FORMAT_VERSION, "config": json.dumps(config, sort_keys=True)}
    data = require("safetensors.torch", "saving a checkpoint").save(tensors, metadata=metadata)
    atomic_write_bytes(path, data)


def read_checkpoint(path: PathLike, map_location: str | torch.device = "cpu", format_name: str = FORMAT
                    ) -> Tuple[Dict[str, Any], Dict[str, torch.Tensor]]:
    """(config dict, state) read from `path`. ValueError when the file is not a checkpoint of `format_name`."""
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
    if metadata.get("format") != format_name:
        raise ValueError(f"{path} is a safetensors file but not a melnet_fast checkpoint of this kind "
                         f"(metadata format={metadata.get('format')!r}, expected {format_name!r})")
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


def load_model(cls, config_cls, path: PathLike, config=None, map_location: str | torch.device = "cpu",
               format_name: str = FORMAT):
    """Build the `cls` model (constructed from a `config_cls` config) that the checkpoint at `path` describes and
    load its weights, in the dtype they were saved in (no code is executed).

    config: when given, the checkpoint must have been written with this exact config, else ValueError.
    """
    config_dict, state = read_checkpoint(path, format_name=format_name)
    try:
        stored = config_cls.from_dict(config_dict)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{os.fspath(path)}: the config stored in the checkpoint is invalid: {e}") from None
    if config is not None and stored != config:
        diff = {k: (v, config.to_dict()[k]) for k, v in stored.to_dict().items() if v != config.to_dict()[k]}
        raise ValueError(f"{os.fspath(path)} was written by a model with a different config; fields that "
                         f"differ (checkpoint, expected): {diff}")
    model = cls(stored)
    check_state(path, state, model.state_dict())
    model.to(next(iter(state.values())).dtype)
    model.load_state_dict(state)
    return model.to(map_location)
