"""Samples that look like the data: a small model trained with the demo's recipe (crops of 1 s, a learning-rate
cool-down) draws clips whose per-channel level and envelope match held-out clips, and the same check fails on
models whose samples drift (a mis-normalised model, a sampler with the wrong spread)."""

import math
import warnings

import pytest
import torch

from melnet_fast import DivergentSampleWarning, MelNet, MelNetConfig
from melnet_fast.evaluation import sample_fidelity
from melnet_fast.train import DataSpec, Trainer, TrainOptions, build_datasets

CROP = 64  # 1 s at the tiny preset's 8 kHz / hop 128, as the demo's crops are 1 s
FRAMES = 124  # 2 s of samples: twice the training crop, so drift beyond it shows


@pytest.fixture(scope="module")
def trained():
    """(model, held-out spectrograms): the tiny preset (hidden 8) trained for 200 steps, the last 20% cooled. At 100
    steps the level the model settles on still moved by up to 0.6 between runs that differ only in rounding (another
    summation order in a kernel), across the check's bound; at 200 it stayed within 0.41 over six seeds, with either
    summation order."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        config = MelNetConfig.preset("tiny", hidden_size=8, n_mixtures=3, learning_rate=3e-3)
        spec = DataSpec("synthetic", synthetic_clips=16, synthetic_val_clips=32, synthetic_seconds=2.0)
        train, val = build_datasets(spec, config, CROP)
        torch.manual_seed(0)
        model = MelNet(config)
        options = TrainOptions(steps=200, crop_frames=CROP, batch_size=8, lr_cooldown=0.2, log_every=0,
                               val_every=0, checkpoint_every=0, progress=False)
        Trainer(model, train, val, options).fit()
        yield model.eval(), [val.spectrogram(k) for k in range(len(val))]
    finally:
        torch.set_num_threads(threads)


def assert_samples_like_data(model, real):
    """8 samples at temperature 1: per-channel means within 0.5 of the real clips' and per-channel stds within 0.3
    on average over channels, and the envelope in the data's order of loudness (rank correlation >= 0.8)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DivergentSampleWarning)  # a few stray draws are not what is tested
        x = model.sample(8, FRAMES, generator=torch.Generator().manual_seed(0))
    f = sample_fidelity(x, real)
    assert f.mean_gap <= 0.5, f"samples drift: per-channel means {f.mean_gap:.3f} from the data's on average"
    assert f.std_gap <= 0.3, f"samples spread unlike the data: per-channel stds {f.std_gap:.3f} from the data's"
    assert f.envelope_rank_correlation >= 0.8, f"envelope out of order: rank correlation " \
                                               f"{f.envelope_rank_correlation:+.2f}"
    return f


def test_trained_model_samples_like_the_data(trained):
    model, real = trained
    f = assert_samples_like_data(model, real)
    assert abs(f.level_difference) <= 0.5


def _heads_shifted(model, mu=0.0, log_sigma=0.0):
    """A copy of model whose mixture heads add `mu` to every mean and `log_sigma` to every log std."""
    broken = MelNet(model.config)
    broken.load_state_dict(model.state_dict())
    K = model.config.n_mixtures
    with torch.no_grad():
        for tier in broken.tiers:
            tier.network.head.bias[:K] += mu
            tier.network.head.bias[K:2 * K] += log_sigma
    return broken.eval()


@pytest.mark.parametrize("broken, what", [(dict(mu=0.5), "drift"), (dict(log_sigma=math.log(3.0)), "spread")],
                         ids=["mis-normalised-model", "sampler-spread-3x"])
def test_samples_unlike_the_data_fail_the_check(trained, broken, what):
    """A model that predicts every value 0.5 too high (as if trained on data normalised differently): each draw
    feeds the next, so its samples drift far from the data; and draws with three times the model's spread."""
    model, real = trained
    with pytest.raises(AssertionError, match=what):
        assert_samples_like_data(_heads_shifted(model, **broken), real)
