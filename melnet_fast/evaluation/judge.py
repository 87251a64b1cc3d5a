"""Label classifiers as judges of generated spectrograms, for any model and any command that makes them.

Several LabelClassifiers (seeds seed, seed + 1, ...) are trained on whole crops of the training data; the
reference set is the held-out real data cut into non-overlapping segments of the samples' length. A set of
generated spectrograms then gets the classifiers' accuracy at recovering the labels they were conditioned on and
the Fréchet distance of their classifier features to the reference set, each the mean over the classifiers
with its standard deviation (one small classifier's feature space is a noisy judge). The floor of the distance
is that of random training crops with the reference set's labels (real against real); the ceiling of the
accuracy is the classifiers' accuracy on the reference set itself.
"""

from __future__ import annotations

import dataclasses
import statistics
from typing import Dict, List, Tuple

import torch

from melnet_fast.evaluation.classifier import train_classifier
from melnet_fast.evaluation.frechet import frechet_from_statistics, gaussian_statistics
from melnet_fast.train.data_source import Subset
from melnet_fast.train.evaluation import full_segments


def mean_std(values: List[float]) -> Tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def reference_segments(dataset, frames: int, max_segments: int | None = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """(x [N, frames, F], labels [N]) of the non-overlapping whole segments of a dataset (full_segments); with
    max_segments, that many of them evenly spaced in the dataset's order, so that a cap keeps every part of the
    data (a corpus lists its items label by label: the first segments would be one or two labels' only).
    ValueError with fewer than 2."""
    where = full_segments(dataset, frames)
    if max_segments is not None and len(where) > max_segments:
        where = [where[k * len(where) // max_segments] for k in range(max_segments)]
    if len(where) < 2:
        raise ValueError(f"the held-out data has {len(where)} segment(s) of {frames} frames; at least 2 are needed")
    x = torch.stack([dataset.spectrogram(i)[s:s + frames] for i, s in where])
    return x, torch.tensor([dataset.labels[i] for i, _ in where])


def random_crops(dataset, frames: int, n: int, seed: int, labels: torch.Tensor | None = None
                 ) -> Tuple[torch.Tensor, torch.Tensor]:
    """(x [n, frames, F], labels [n]): n crops of `frames` frames at seeded random items (among those that long)
    and offsets; labels [n]: crop k from an item of label labels[k] (the label mix of the set it is compared
    with), else from any item."""
    long_enough = [i for i in range(len(dataset)) if dataset.num_frames(i) >= frames]
    if not long_enough:
        raise ValueError(f"no training item has {frames} frames or more")
    generator = torch.Generator().manual_seed(seed)
    if labels is None:
        items = [long_enough[k] for k in torch.randint(len(long_enough), (n,), generator=generator).tolist()]
    else:
        by_label: Dict[int, List[int]] = {}
        for i in long_enough:
            by_label.setdefault(dataset.labels[i], []).append(i)
        missing = sorted(set(labels.tolist()) - set(by_label))
        if missing:
            raise ValueError(f"no training item of label(s) {missing} has {frames} frames or more")
        items = [by_label[y][int(torch.randint(len(by_label[y]), (), generator=generator))] for y in labels.tolist()]
    x = []
    for i in items:
        start = int(torch.randint(dataset.num_frames(i) - frames + 1, (), generator=generator))
        x.append(dataset.spectrogram(i)[start:start + frames])
    return torch.stack(x), torch.tensor([dataset.labels[i] for i in items])


def whole_crops(dataset):
    """The items of `dataset` that serve examples of its full crop_frames (a classifier learns from crops of one
    length); the dataset itself when all do."""
    whole = [i for i in range(len(dataset)) if dataset.item_frames(i) == dataset.crop_frames]
    if not whole:
        raise ValueError(f"no training item has crop_frames={dataset.crop_frames} frames")
    return dataset if len(whole) == len(dataset) else Subset(dataset, whole)


class Judges:
    """`count` label classifiers trained on whole crops of `train` for `steps` steps (seeds seed, seed + 1, ...),
    and the statistics of their features on the reference set x_ref [N, T, F] with labels y_ref [N]."""

    def __init__(self, train, x_ref: torch.Tensor, y_ref: torch.Tensor, count: int = 3, steps: int = 400,
                 seed: int = 0, device: str | torch.device = "cpu"):
        if count < 1:
            raise ValueError(f"classifiers must be >= 1, got {count}")
        crops = whole_crops(train)
        self.x_ref, self.y_ref, self.seed = x_ref, y_ref, seed
        self.classifiers = [train_classifier(crops, steps=steps, seed=seed + k, device=device) for k in range(count)]
        self.reference = [gaussian_statistics(c.embeddings(x_ref)) for c in self.classifiers]
        self.train = train

    @property
    def feature_dim(self) -> int:
        return self.reference[0][0].numel()

    def frechet(self, x: torch.Tensor) -> Tuple[float, float]:
        """(mean, std) over the classifiers of the Fréchet distance of x [N, T, F] to the reference set."""
        return mean_std([frechet_from_statistics(*gaussian_statistics(c.embeddings(x)), *ref)
                         for c, ref in zip(self.classifiers, self.reference)])

    def accuracy(self, x: torch.Tensor, labels: torch.Tensor) -> Tuple[float, float]:
        """(mean, std) over the classifiers of the share of x [N, T, F] classified as labels [N]."""
        return mean_std([c.accuracy(x, labels) for c in self.classifiers])

    def floor(self) -> Tuple[float, float]:
        """(mean, std) of the Fréchet distance of random training crops, one of each reference segment's label."""
        return self.frechet(random_crops(self.train, self.x_ref.shape[1], len(self.x_ref), self.seed, self.y_ref)[0])


@dataclasses.dataclass
class SampleJudgement:
    """Classifier-based measures of one set of generated spectrograms (see the module's docstring). label_accuracy
    is None for unconditional samples; *_std: standard deviations over the classifiers."""

    samples: int  # windows judged (the samples, or their windows of the judged length)
    frames: int
    reference_segments: int
    classifiers: int
    label_accuracy: float | None
    label_accuracy_std: float | None
    frechet: float
    frechet_std: float
    frechet_floor: float
    frechet_floor_std: float
    classifier_accuracy: float
    classifier_accuracy_std: float
    feature_dim: int

    def to_dict(self) -> Dict:
        return dataclasses.asdict(self)

    def lines(self) -> List[str]:
        """Human-readable lines (no indentation)."""
        out = []
        if self.label_accuracy is not None:
            out.append(f"label accuracy of the samples {self.label_accuracy:.3f} ± {self.label_accuracy_std:.3f} "
                       f"(the classifiers on held-out real segments: {self.classifier_accuracy:.3f} ± "
                       f"{self.classifier_accuracy_std:.3f})")
        out.append(f"Fréchet distance of classifier features to {self.reference_segments} held-out real segments "
                   f"{self.frechet:.1f} ± {self.frechet_std:.1f} (floor, training crops: {self.frechet_floor:.1f} ± "
                   f"{self.frechet_floor_std:.1f}; lower is better)")
        if min(self.samples, self.reference_segments) < 2 * self.feature_dim:
            out.append(f"(from {self.samples} generated and {self.reference_segments} real windows of {self.frames} "
                       f"frames for {self.feature_dim}-dimensional features: noisy, compare with the floor only)")
        return out


def windows(x: torch.Tensor, labels: torch.Tensor | None, frames: int):
    """(x [N * (T // frames), frames, F], labels repeated alike or None): each spectrogram of x [N, T, F] cut into
    its non-overlapping whole windows of `frames` frames (the remainder dropped)."""
    n = x.shape[1] // frames
    if n < 1:
        raise ValueError(f"frames={frames} is longer than the spectrograms ({x.shape[1]} frames)")
    cut = x[:, :n * frames].reshape(x.shape[0] * n, frames, x.shape[2])
    return cut, None if labels is None else labels.repeat_interleave(n)


def judge_samples(generated: torch.Tensor, labels: torch.Tensor | None, train, held_out, *,
                  frames: int | None = None, classifiers: int = 3, classifier_steps: int = 400,
                  max_segments: int | None = None, seed: int = 0,
                  device: str | torch.device = "cpu") -> SampleJudgement:
    """Label accuracy and Fréchet distance of generated spectrograms [N, T, F] conditioned on labels [N] (None:
    unconditional, no accuracy), judged by classifiers trained on `train` against the whole segments of
    `held_out` (max_segments of them, spread over it). frames: the length judged (default T); shorter, each
    sample is cut into its windows of that length (long clips judged as the classifier's crops). Both datasets
    labelled (label_names with two labels or more); ValueError otherwise or when held_out has fewer than 2
    segments."""
    if generated.dim() != 3:
        raise ValueError(f"generated must be [N, T, F], got shape {tuple(generated.shape)}")
    if labels is not None and labels.shape != (len(generated),):
        raise ValueError(f"labels must be [N={len(generated)}], got shape {tuple(labels.shape)}")
    if len(train.label_names) < 2:
        raise ValueError("the label classifiers need labelled data with at least two labels")
    generated, labels = windows(generated, labels, frames or generated.shape[1])
    x_ref, y_ref = reference_segments(held_out, generated.shape[1], max_segments)
    judges = Judges(train, x_ref, y_ref, classifiers, classifier_steps, seed, device)
    accuracy = judges.accuracy(generated, labels) if labels is not None else (None, None)
    return SampleJudgement(len(generated), generated.shape[1], len(x_ref), classifiers, *accuracy,
                           *judges.frechet(generated), *judges.floor(), *judges.accuracy(x_ref, y_ref),
                           judges.feature_dim)
