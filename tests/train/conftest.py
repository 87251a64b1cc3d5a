"""Fixtures of the trainer tests: one thread (the CPU is shared), the tiny preset, a small synthetic dataset."""

from __future__ import annotations

import pytest
import torch

from melnet_fast import MelNet, MelNetConfig
from melnet_fast.train import DataSpec, TrainOptions, build_datasets

CROP = 16  # frames of a training crop: a multiple of the tiny preset's time factor (2)


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test of this folder runs on one thread (fixture in tests/conftest.py)."""


@pytest.fixture(scope="session")
def tiny_config() -> MelNetConfig:
    return MelNetConfig.preset("tiny")


@pytest.fixture(scope="session")
def data_spec() -> DataSpec:
    return DataSpec("synthetic", synthetic_clips=6, synthetic_val_clips=4, synthetic_seconds=0.6)


@pytest.fixture(scope="session")
def datasets(tiny_config, data_spec):
    """(train, held-out): 6 and 4 synthetic clips of 0.6 s (38 frames of 16 mels), crops of 16 frames."""
    return build_datasets(data_spec, tiny_config, CROP)


def make_model(config: MelNetConfig, seed: int = 0) -> MelNet:
    torch.manual_seed(seed)
    return MelNet(config)


def options(**changes) -> TrainOptions:
    """Small, quiet options: batch 2 (3 batches per epoch of the 6 clips), no periodic validation / checkpoint."""
    base = dict(steps=4, batch_size=2, crop_frames=CROP, learning_rate=3e-3, log_every=1, val_every=0,
                checkpoint_every=0, val_segments=4, progress=False)
    return TrainOptions(**{**base, **changes})
