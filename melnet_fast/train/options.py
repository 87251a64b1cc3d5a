"""TrainOptions: how to train (steps, batch, optimiser overrides, logging cadence), apart from the model config."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict, Tuple

import torch

from melnet_fast.config import MelNetConfig
from melnet_fast.train.distributed import read_assignment

ASSIGNMENTS = ("tier", "data")
DEVICE_TYPES = ("cpu", "cuda")  # where the ops run


@dataclasses.dataclass
class TrainOptions:
    """Options of one training run. None means "take it from the MelNetConfig" where a field has a counterpart.

    steps: total number of training steps (a resumed run continues up to it); max_seconds: stop earlier when
    this wall time has passed in this process (None = no budget). batch_size, learning_rate, momentum: default
    to the config's (RMSProp, paper Appendix A). crop_frames: the maximum frames of a training example (default
    config.max_frames; a multiple of config.time_factor): longer items are cropped to it at a random offset,
    shorter ones kept whole and padded in the batch. bucket_batches: length bucketing, items are batched with
    others of similar length within pools of this many batches (0 = random batches; see
    melnet_fast.batching.plan_batches). tiers: tier numbers to train (default all); each tier
    is an independent model, so tiers can be trained in separate runs or on separate ranks.
    lr_cooldown: the last fraction of the run (of options.steps, or of max_seconds when that ends it first) trained
    at learning_rate * lr_cooldown_factor (0 = a constant learning rate): the weights settle out of the noise of
    the large steps, which lowers the NLL and keeps free-running samples from wandering off the data.
    clip_grad_norm: max gradient norm, applied per tier (None or 0 = no clipping). device: "auto" (cuda when
    available), "cpu", "cuda", "cuda:1"...; amp: bf16 autocast (None = on for CUDA, off for CPU); recompute:
    recompute each tier's activations in backward (torch.utils.checkpoint) instead of storing them.
    log_every / val_every / checkpoint_every: in steps (0 = never; a final validation and checkpoint are always
    made). val_segments: cap on the validation segments per validation (None = all). nan_patience: stop after
    this many consecutive non-finite steps. tier_assignment: how tiers map to ranks under torchrun: "tier"
    (disjoint tier groups), "data" (every rank trains every chosen tier), or a spec such as "0:1,2;1:3".
    """

    steps: int = 1000
    max_seconds: float | None = None
    batch_size: int | None = None
    crop_frames: int | None = None
    bucket_batches: int = 32
    tiers: Tuple[int, ...] | None = None
    learning_rate: float | None = None
    momentum: float | None = None
    lr_cooldown: float = 0.0
    lr_cooldown_factor: float = 0.1
    clip_grad_norm: float | None = 1.0
    device: str = "auto"
    amp: bool | None = None
    recompute: bool = False
    seed: int = 0
    num_workers: int = 0
    log_every: int = 10
    val_every: int = 200
    val_segments: int | None = 64
    checkpoint_every: int = 200
    nan_patience: int = 10
    progress: bool = True
    tier_assignment: str = "tier"

    def __post_init__(self):
        if self.tiers is not None:
            self.tiers = tuple(int(g) for g in ([self.tiers] if isinstance(self.tiers, int) else self.tiers))
        for name in ("steps", "log_every", "val_every", "checkpoint_every", "num_workers", "seed", "bucket_batches"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError(f"{name} must be an int >= 0, got {v!r}")
        for name in ("batch_size", "crop_frames", "val_segments", "nan_patience"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                raise ValueError(f"{name} must be a positive int or None, got {v!r}")
        for name in ("max_seconds", "learning_rate", "clip_grad_norm"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a finite number >= 0 or None, got {v!r}")
        if not (isinstance(self.lr_cooldown, (int, float)) and 0 <= self.lr_cooldown < 1):
            raise ValueError(f"lr_cooldown must be a fraction in [0, 1), got {self.lr_cooldown!r}")
        if not (isinstance(self.lr_cooldown_factor, (int, float)) and 0 < self.lr_cooldown_factor <= 1):
            raise ValueError(f"lr_cooldown_factor must lie in (0, 1], got {self.lr_cooldown_factor!r}")
        if self.momentum is not None and not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must lie in [0, 1), got {self.momentum!r}")
        if self.learning_rate is not None and self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.tier_assignment not in ASSIGNMENTS:
            read_assignment(self.tier_assignment)  # the ranks are only known under torchrun: syntax here
        if self.device != "auto" and _device_type(self.device) not in DEVICE_TYPES:
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")

    def resolved(self, config: MelNetConfig) -> TrainOptions:
        """A copy with every None that has a config counterpart filled in, and checked against the config."""
        o = dataclasses.replace(self)
        o.batch_size = o.batch_size or config.batch_size
        o.crop_frames = o.crop_frames or config.max_frames
        o.learning_rate = o.learning_rate or config.learning_rate
        o.momentum = config.momentum if o.momentum is None else o.momentum
        o.tiers = tuple(range(1, config.n_tiers + 1)) if o.tiers is None else o.tiers
        if o.crop_frames < config.time_factor or o.crop_frames % config.time_factor:
            raise ValueError(f"crop_frames={o.crop_frames} must be a positive multiple of {config.time_factor} "
                             f"(the time-split factor of n_tiers={config.n_tiers})")
        bad = [g for g in o.tiers if not 1 <= g <= config.n_tiers]
        if bad or not o.tiers or len(set(o.tiers)) != len(o.tiers):
            raise ValueError(f"tiers must be distinct tier numbers in 1..{config.n_tiers}, got {list(o.tiers)}")
        o.tiers = tuple(sorted(o.tiers))
        return o

    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        d["tiers"] = None if self.tiers is None else list(self.tiers)
        return d

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> TrainOptions:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown TrainOptions field(s) {unknown}")
        return cls(**d)


def _device_type(name) -> str | None:
    try:
        return torch.device(name).type
    except (RuntimeError, TypeError):
        return None
