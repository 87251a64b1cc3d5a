"""The classifier-based measures that demo and eval print beside the fidelity (cli/sample_quality.py): measured
where a classifier applies, and a line saying why not elsewhere."""

import torch

from melnet_fast.cli.sample_quality import classifier_report, sample_report
from melnet_fast.data import SyntheticMusicDataset
from melnet_fast.train.data_source import Subset

SETTINGS = dict(sample_rate=16000, n_mels=32, hop_length=256)
FRAMES = 16


def _data():
    return (SyntheticMusicDataset(8, seed=0, crop_frames=FRAMES, duration=1.0, **SETTINGS),
            SyntheticMusicDataset(4, seed=1, crop_frames=FRAMES, duration=1.0, **SETTINGS))


def test_labelled_data_gets_label_accuracy_and_frechet_distance():
    train, held_out = _data()
    real = [held_out.spectrogram(i) for i in range(len(held_out))]
    generated = torch.stack([x[:2 * FRAMES] for x in real])  # held-out clips passed off as samples of their labels
    labels = torch.tensor(held_out.labels)
    measures, lines = sample_report(generated, real, 1.0, labels=labels, train=train, held_out=held_out,
                                    frames=FRAMES)
    judged = measures["classifier"]
    assert judged["samples"] == 8 and judged["frames"] == FRAMES and 0 <= judged["label_accuracy"] <= 1
    assert judged["frechet"] >= 0 and "fidelity" in measures
    text = "\n".join(lines)
    assert "label accuracy of the samples" in text and "Fréchet distance of classifier features" in text
    assert "judged by 2 label classifiers" in text


def test_no_classifier_measures_where_none_applies():
    train, held_out = _data()
    generated = torch.randn(2, FRAMES, 32)
    one_label = Subset(train, [i for i in range(len(train)) if train.labels[i] == 0])
    one_label.label_names = ["classical"]
    judged, lines = classifier_report(generated, None, one_label, held_out)
    assert judged is None and "fewer than two labels" in lines[0]
    other = Subset(held_out, [0, 1])
    other.label_names = ["a", "b", "c", "d"]
    judged, lines = classifier_report(generated, None, train, other)
    assert judged is None and "are not the training data's" in lines[0]
    judged, lines = classifier_report(torch.randn(2, 200, 32), None, train, held_out)
    assert judged is None and "not measured" in lines[0] and "segment(s) of 200 frames" in lines[0]
    measures, _ = sample_report(generated, [held_out.spectrogram(0)], 1.0)
    assert "classifier" not in measures  # without the datasets: the fidelity only
