"""The label classifier: high accuracy on the synthetic genres (easy by construction), deterministic training
that leaves the global RNG alone, finite features for any input, and a feature distance that grows with a shift."""

import pytest
import torch

from melnet_fast.data import SyntheticMusicDataset
from melnet_fast.evaluation import LabelClassifier, frechet_distance, train_classifier
from melnet_fast.train.evaluation import full_segments

# MelNet demo's spectrograms (16 kHz, 32 mels, hop 256): crops of 32 frames are half a second.
SETTINGS = dict(sample_rate=16000, n_mels=32, hop_length=256)
FRAMES = 32
STEPS = 120


@pytest.fixture(scope="module")
def genres():
    """(training clips, held-out segments [36, 32, 32], their labels [36]): 24 and 12 clips of 2 s."""
    train = SyntheticMusicDataset(24, seed=0, crop_frames=FRAMES, duration=2.0, **SETTINGS)
    held_out = SyntheticMusicDataset(12, seed=1, crop_frames=FRAMES, duration=2.0, **SETTINGS)
    where = full_segments(held_out, FRAMES)
    x = torch.stack([held_out.spectrogram(i)[s:s + FRAMES] for i, s in where])
    return train, x, torch.tensor([held_out.labels[i] for i, _ in where])


@pytest.fixture(scope="module")
def classifier(genres):
    return train_classifier(genres[0], steps=STEPS, seed=0)


def test_reaches_high_accuracy_on_held_out_synthetic_genres(classifier, genres):
    _, x, labels = genres
    assert len(x) == 36 and set(labels.tolist()) == {0, 1, 2, 3}
    assert classifier.accuracy(x, labels) >= 0.9


def test_training_is_deterministic_and_leaves_the_global_rng_alone(genres):
    state = torch.get_rng_state()
    a, b = (train_classifier(genres[0], steps=8, batch_size=8, seed=3) for _ in range(2))
    assert torch.equal(torch.get_rng_state(), state)
    for name, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[name]), name


def test_features_are_finite_for_runaway_input(classifier, genres):
    x = genres[1][:4].clone()
    x[0, 3, 5], x[1, 0, 0], x[2] = float("nan"), float("inf"), 1e6
    features = classifier.embeddings(x)
    assert features.shape == (4, 64) and torch.isfinite(features).all()


def test_feature_distance_grows_with_a_level_shift(classifier, genres):
    """Louder or quieter copies of the held-out data move away from it in the classifier's features."""
    x = genres[1]
    reference = classifier.embeddings(x)
    distances = [frechet_distance(reference, classifier.embeddings(x + shift)) for shift in (0.0, 0.25, 0.5, 1.0)]
    assert distances[0] < 1e-9 and all(a < b for a, b in zip(distances, distances[1:]))


def test_bad_input_is_a_clear_error(genres):
    with pytest.raises(ValueError, match="n_labels >= 2"):
        LabelClassifier(32, 1)
    with pytest.raises(ValueError, match=r"\[B, T >= 4, F=32\]"):
        LabelClassifier(32, 4).embed(torch.zeros(2, 8, 16))
