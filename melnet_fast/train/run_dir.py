"""The run directory: where one training run keeps its config, checkpoints, logs, baseline and samples.

    RUN_DIR/config.json                 model kind and config, training options, data description (read by every
                                        command)
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
from typing import Any, Dict, Tuple

from melnet_fast.baselines.cmelgan import CMelGAN, CMelGANConfig
from melnet_fast.config import MelNetConfig
from melnet_fast.model import MelNet
from melnet_fast.train.checkpointing import atomic_write_text

CONFIG_VERSION = 1
# config.json's "model_kind" -> (config class, model class); runs written before the field are MelNet's.
MODEL_KINDS: Dict[str, Tuple[type, type]] = {"melnet": (MelNetConfig, MelNet), "cmelgan": (CMelGANConfig, CMelGAN)}
DEFAULT_KIND = "melnet"


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

    def write_config(self, model_config, train: Dict[str, Any], data: Dict[str, Any],
                     kind: str = DEFAULT_KIND) -> None:
        """Write config.json: the model config (of the model kind `kind`), training options and data."""
        from melnet_fast import __version__

        config_class = MODEL_KINDS[kind][0]
        if not isinstance(model_config, config_class):
            raise TypeError(f"a {kind} run needs a {config_class.__name__}, got {type(model_config).__name__}")
        doc = {"config_version": CONFIG_VERSION, "melnet_fast_version": __version__, "model_kind": kind,
               "model": model_config.to_dict(), "train": train, "data": data}
        atomic_write_text(self.config, json.dumps(doc, indent=2, sort_keys=True) + "\n")

    def read_config(self) -> Dict[str, Any]:
        """The parsed config.json, with "model" turned into the config of its "model_kind" (a MelNetConfig or a
        CMelGANConfig; "model_kind" is filled in for runs written before it). RunDirError when unusable."""
        if not self.root.is_dir():
            raise RunDirError(f"no run directory at {self.root}")
        if not self.config.is_file():
            raise RunDirError(f"{self.root} is not a run directory (no config.json); create one with "
                              f"`melnet-fast train --out {self.root} ...`")
        try:
            doc = json.loads(self.config.read_text())
            kind = doc.setdefault("model_kind", DEFAULT_KIND)
            if kind not in MODEL_KINDS:
                raise ValueError(f"unknown model_kind {kind!r} (known: {', '.join(MODEL_KINDS)})")
            doc["model"] = MODEL_KINDS[kind][0].from_dict(doc["model"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise RunDirError(f"{self.config} is not a valid run config: {e}") from None
        return doc

    def load_model(self, which: str = "best", map_location="cpu"):
        """(config doc, model in eval mode, checkpoint path): the run's model (a MelNet or a CMelGAN, as
        config.json's model_kind says) from the checkpoint `which` (see model_checkpoint). RunDirError when the
        run or its checkpoint is missing; ValueError when the checkpoint does not match the run's config."""
        doc = self.read_config()
        path = self.model_checkpoint(which)
        model = MODEL_KINDS[doc["model_kind"]][1].load(path, config=doc["model"], map_location=map_location)
        return doc, model.eval(), path

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
