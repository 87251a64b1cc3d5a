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
    RUN_DIR/run.lock                    held by the process writing the run (see run_lock.py)
    RUN_DIR/previous/<time>/            the files of a run set aside to start over (`train --restart`)
Every file is written atomically (temporary file, then rename); a process claims the directory (its lock, and
the removal of temporary files that a killed process left) before it writes.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

from melnet_fast.atomic_files import atomic_write_text, remove_orphans
from melnet_fast.baselines.cmelgan import CMelGAN, CMelGANConfig
from melnet_fast.config import MelNetConfig
from melnet_fast.model import MelNet
from melnet_fast.train.checkpointing import load_training_state
from melnet_fast.train.preflight import writable_directory
from melnet_fast.train.run_lock import RunLock

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

    previous = property(lambda self: self.root / "previous")
    # What belongs to one training run: set aside together when the run starts over (samples and cache stay).
    RUN_FILES = ("config.json", "checkpoints", "metrics.csv", "tensorboard", "train.log", "baseline.json")

    def create(self) -> RunDir:
        for d in (self.root, self.checkpoints, self.samples):
            d.mkdir(parents=True, exist_ok=True)
        return self

    def exists(self) -> bool:
        return self.config.is_file()

    def claim(self, command: str, *, arg: str = "--out", say: Callable[[str], None] | None = None,
              hint: str = "wait for it to finish, or choose another run directory") -> RunLock:
        """Make the run directory if needed (PreflightError naming `arg` when it cannot be written), take its
        lock (RunLockedError when another process holds it) and remove the temporary files of writes a killed
        process cut short, reporting them through `say`. Returns the held lock: release it, or use
        `with run.claim(...):`."""
        writable_directory(self.root, arg)
        lock = RunLock(self.root, command, say=say, hint=hint).acquire()
        try:
            removed = [p for d in (self.root, self.checkpoints, self.samples) for p in remove_orphans(d)]
        except OSError:
            lock.release()
            raise
        if removed and say is not None:
            say(f"removed {len(removed)} temporary file(s) left by an interrupted write: "
                f"{', '.join(str(p.relative_to(self.root)) for p in removed)}")
        return lock

    def checkpoint_files(self) -> List[Path]:
        """The checkpoint files the run holds (training state, latest and best weights)."""
        return [p for p in (self.latest_state, self.latest_model, self.best_model) if p.is_file()]

    def training_state(self, *, peek: bool = False) -> Dict[str, Any] | None:
        """The training state to resume from (checkpoints/latest.pt), or None when the run holds no checkpoint
        at all (starting at step 0 loses nothing). peek: map the tensors instead of reading them (to look at the
        step). RunDirError, with the ways forward, when weights were saved but the state is missing or
        unreadable: resuming would restart at step 0 and overwrite them."""
        if self.latest_state.is_file():
            try:
                return load_training_state(self.latest_state, mmap=peek)
            except ValueError as e:
                problem = f"its training state cannot be read ({e})"
        elif self.checkpoint_files():
            problem = f"its training state {self.latest_state} is missing"
        else:
            return None
        kept = ", ".join(p.name for p in self.checkpoint_files() if p != self.latest_state)
        raise RunDirError(f"{self.root} holds a trained run{f' ({kept})' if kept else ''} but {problem}; "
                          f"resuming would restart at step 0. To start over, move the run aside (`melnet-fast "
                          f"train --restart`, or RunDir.set_aside()); to continue it, put back "
                          f"{self.latest_state.name}")

    def set_aside(self) -> Path | None:
        """Move the run's files (RUN_FILES) into previous/<time>/ so that a new run can start here; samples/ and
        cache/ stay. Returns that folder, or None when there was nothing to move."""
        present = [self.root / name for name in self.RUN_FILES if (self.root / name).exists()]
        if not present:
            return None
        stamp = time.strftime("%Y%m%d-%H%M%S")
        target = self.previous / stamp
        n = 1
        while target.exists():
            n += 1
            target = self.previous / f"{stamp}-{n}"
        target.mkdir(parents=True)
        for path in present:
            os.replace(path, target / path.name)
        return target

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
