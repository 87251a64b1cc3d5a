"""The run directory: where one training run keeps its config, checkpoints, logs, baseline and samples.

    RUN_DIR/config.json                 model config, training options, data description (read by every command)
    RUN_DIR/checkpoints/latest.pt       full training state (resume from here)
    RUN_DIR/checkpoints/latest.safetensors  model weights at the latest checkpoint (MelNet.load)
    RUN_DIR/checkpoints/best.safetensors    model weights at the best validation NLL
    RUN_DIR/metrics.csv                 one row per logged train step / validation
    RUN_DIR/tensorboard/                TensorBoard event files (tensorboard --logdir RUN_DIR)
    RUN_DIR/train.log                   messages of the trainer (skipped steps, checkpoints, ...)
    RUN_DIR/baseline.json               per-channel Gaussian fitted on the training data
    RUN_DIR/samples/                    default home of `melnet-fast sample` outputs
Every file is written atomically (temporary file, then rename).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict

from melnet_fast.config import MelNetConfig
from melnet_fast.train.checkpointing import atomic_write_text

CONFIG_VERSION = 1


class RunDirError(ValueError):
    """A run directory is missing, incomplete or does not match what was asked of it."""


class RunDir:
    """Paths of a run directory (nothing is created until `create` or a write)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    config = property(lambda self: self.root / "config.json")
    checkpoints = property(lambda self: self.root / "checkpoints")
    latest_state = property(lambda self: self.checkpoints / "latest.pt")
    latest_model = property(lambda self: self.checkpoints / "latest.safetensors")
    best_model = property(lambda self: self.checkpoints / "best.safetensors")
    metrics_csv = property(lambda self: self.root / "metrics.csv")
    tensorboard = property(lambda self: self.root / "tensorboard")
    log_file = property(lambda self: self.root / "train.log")
    baseline = property(lambda self: self.root / "baseline.json")
    samples = property(lambda self: self.root / "samples")
    cache = property(lambda self: self.root / "cache")

    def create(self) -> RunDir:
        for d in (self.root, self.checkpoints, self.samples):
            d.mkdir(parents=True, exist_ok=True)
        return self

    def exists(self) -> bool:
        return self.config.is_file()

    def write_config(self, model_config: MelNetConfig, train: Dict[str, Any], data: Dict[str, Any]) -> None:
        from melnet_fast import __version__

        doc = {"config_version": CONFIG_VERSION, "melnet_fast_version": __version__,
               "model": model_config.to_dict(), "train": train, "data": data}
        atomic_write_text(self.config, json.dumps(doc, indent=2, sort_keys=True) + "\n")

    def read_config(self) -> Dict[str, Any]:
        """The parsed config.json, with "model" turned into a MelNetConfig. RunDirError when unusable."""
        if not self.root.is_dir():
            raise RunDirError(f"no run directory at {self.root}")
        if not self.config.is_file():
            raise RunDirError(f"{self.root} is not a run directory (no config.json); create one with "
                              f"`melnet-fast train --out {self.root} ...`")
        try:
            doc = json.loads(self.config.read_text())
            doc["model"] = MelNetConfig.from_dict(doc["model"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise RunDirError(f"{self.config} is not a valid run config: {e}") from None
        return doc

    def model_checkpoint(self, which: str = "best") -> Path:
        """The weights file to sample or evaluate with: "best" (falls back to latest when no validation ran)
        or "latest". RunDirError when the run has none yet."""
        if which not in ("best", "latest"):
            raise RunDirError(f"checkpoint must be 'best' or 'latest', got {which!r}")
        order = [self.best_model, self.latest_model] if which == "best" else [self.latest_model]
        for path in order:
            if path.is_file():
                return path
        raise RunDirError(f"{self.root} has no model checkpoint yet ({self.latest_model.name} is written at the "
                          f"first checkpoint of training)")
