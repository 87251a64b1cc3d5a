"""judge_samples: label accuracy and Fréchet distance of any set of generated spectrograms. Held-out real data
passed off as samples scores the ceiling and a distance of 0; training data with items shorter than a crop is
judged on its whole crops only."""

import pytest
import torch

from melnet_fast.data import SyntheticMusicDataset
from melnet_fast.evaluation import judge_samples
from melnet_fast.evaluation.judge import random_crops, reference_segments, whole_crops
from melnet_fast.train.data_source import Subset

SETTINGS = dict(sample_rate=16000, n_mels=32, hop_length=256)
FRAMES = 16
JUDGE = dict(classifiers=2, classifier_steps=40, seed=0)


@pytest.fixture(scope="module")
def data():
    """(training clips of 1 s with crops of FRAMES, held-out clips of 1 s)."""
    return (SyntheticMusicDataset(12, seed=0, crop_frames=FRAMES, duration=1.0, **SETTINGS),
            SyntheticMusicDataset(8, seed=1, crop_frames=FRAMES, duration=1.0, **SETTINGS))


def test_the_held_out_data_as_samples_scores_the_ceiling_and_no_distance(data):
    train, held_out = data
    x, labels = reference_segments(held_out, FRAMES)
    result = judge_samples(x, labels, train, held_out, **JUDGE)
    assert result.samples == result.reference_segments == len(x) == 8 * (62 // FRAMES)
    assert result.label_accuracy == result.classifier_accuracy and result.label_accuracy_std >= 0
    assert result.frechet == pytest.approx(0, abs=1e-6) and result.frechet_floor > 0
    shifted = judge_samples(x + 1.0, labels, train, held_out, **JUDGE)
    assert shifted.frechet > result.frechet_floor  # a level shift of 1 (15 dB) is far from the data
    d = result.to_dict()
    assert d["classifiers"] == 2 and set(d) >= {"label_accuracy", "frechet", "frechet_floor"}
    assert any("label accuracy of the samples" in line for line in result.lines())


def test_unconditional_samples_get_a_distance_but_no_accuracy(data):
    train, held_out = data
    noise = torch.randn(10, FRAMES, SETTINGS["n_mels"])
    result = judge_samples(noise, None, train, held_out, **JUDGE)
    assert result.label_accuracy is None and result.frechet > 0
    assert all("label accuracy" not in line for line in result.lines())


def test_short_training_items_are_left_out_of_the_crops(data):
    train, held_out = data
    short = SyntheticMusicDataset(4, seed=2, crop_frames=64, duration=0.5, **SETTINGS)  # 31 frames < 64
    mixed = SyntheticMusicDataset(4, seed=3, crop_frames=64, duration=1.5, **SETTINGS)
    assert whole_crops(mixed) is mixed
    with pytest.raises(ValueError, match="no training item has crop_frames=64 frames"):
        whole_crops(short)
    x, _ = random_crops(train, FRAMES, 5, seed=0)
    assert x.shape == (5, FRAMES, 32)
    half = Subset(train, [0, 1])
    with pytest.raises(ValueError, match="no training item has 100 frames or more"):
        random_crops(half, 100, 2, seed=0)


def test_bad_inputs_are_refused(data):
    train, held_out = data
    x, labels = reference_segments(held_out, FRAMES)
    with pytest.raises(ValueError, match=r"generated must be \[N, T, F\]"):
        judge_samples(x[0], None, train, held_out, **JUDGE)
    with pytest.raises(ValueError, match=r"labels must be \[N=24\]"):
        judge_samples(x, labels[:3], train, held_out, **JUDGE)
    with pytest.raises(ValueError, match="at least 2 are needed"):
        judge_samples(torch.zeros(2, 80, 32), None, train, held_out, **JUDGE)


def test_a_capped_reference_spans_the_data_and_the_floor_matches_its_labels(data):
    """A corpus lists its items label by label: a cap on the reference segments must not keep only the first
    labels, and the floor's training crops follow the reference's label mix."""
    train, held_out = data
    all_x, all_y = reference_segments(held_out, FRAMES)
    x, y = reference_segments(held_out, FRAMES, max_segments=6)
    spread = [k * len(all_x) // 6 for k in range(6)]
    assert torch.equal(x, all_x[spread]) and torch.equal(y, all_y[spread]) and spread[-1] >= len(all_x) - 4
    wanted = torch.tensor([3, 3, 0, 1, 3])
    crops, labels = random_crops(train, FRAMES, 5, seed=1, labels=wanted)
    assert torch.equal(labels, wanted) and crops.shape == (5, FRAMES, 32)
    one_label = Subset(train, [i for i in range(len(train)) if train.labels[i] == 0])
    with pytest.raises(ValueError, match=r"no training item of label\(s\) \[3\]"):
        random_crops(one_label, FRAMES, 2, seed=0, labels=torch.tensor([0, 3]))


def test_long_samples_are_judged_by_windows_of_the_asked_length(data):
    train, held_out = data
    x, labels = reference_segments(held_out, 2 * FRAMES)  # 8 clips of 62 frames: one 32-frame segment each
    whole = judge_samples(x, labels, train, held_out, frames=FRAMES, **JUDGE)
    assert whole.samples == 2 * len(x) and whole.frames == FRAMES and whole.reference_segments == 24
    assert whole.label_accuracy == pytest.approx(whole.classifier_accuracy, abs=0.2)
    assert any("noisy" in line for line in whole.lines())  # 16 windows for 64-dimensional features
    with pytest.raises(ValueError, match="longer than the spectrograms"):
        judge_samples(x[:, :8], labels, train, held_out, frames=FRAMES, **JUDGE)
