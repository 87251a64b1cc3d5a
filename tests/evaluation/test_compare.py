"""compare_runs: the scores are wired to the right sets and labels."""

import pytest
import torch

from melnet_fast.baselines.cmelgan import CMelGAN, CMelGANConfig
from melnet_fast.evaluation import compare
from melnet_fast.train import DataSpec, GANTrainer, TrainOptions, build_datasets
from melnet_fast.train.evaluation import full_segments

SPEC = DataSpec("synthetic", synthetic_clips=8, synthetic_val_clips=4, synthetic_seconds=1.0)


@pytest.fixture(scope="module")
def gan_run(tmp_path_factory):
    config = CMelGANConfig.preset("tiny", n_labels=4)
    train, val = build_datasets(SPEC, config, config.frames)
    torch.manual_seed(0)
    run = tmp_path_factory.mktemp("compare") / "gan"
    trainer = GANTrainer(CMelGAN(config), train, val, TrainOptions(steps=1, batch_size=2, progress=False), run,
                         data_spec=SPEC)
    trainer.fit()
    trainer.close()
    return run, val


def test_a_model_that_returns_the_held_out_data_scores_the_floor_of_real_data(gan_run, monkeypatch):
    """Patch generation to return the held-out segments, each for its own label: the Fréchet distance is then 0
    and the label accuracy is the classifier's accuracy on real data."""
    run, val = gan_run
    where = full_segments(val, 16)
    real = torch.stack([val.spectrogram(i)[s:s + 16] for i, s in where])
    labels = torch.tensor([val.labels[i] for i, _ in where])

    def replay(model, asked, count, frames, **kwargs):
        assert torch.equal(asked, labels) and count == len(real) and frames == 16
        return real.clone()

    monkeypatch.setattr(compare, "generate", replay)
    result = compare.compare_runs([run], classifiers=2, classifier_steps=30, reference=False)
    (row,) = result.models
    assert row.frechet < 1e-6 and row.frechet_std < 1e-6
    assert (row.label_accuracy, row.label_accuracy_std) == (result.classifier_accuracy, result.classifier_accuracy_std)
    assert result.reference_segments == len(real) == 12 and result.frechet_floor > 0 and result.classifiers == 2
    assert [len(v) for v in result.examples.values()] == [4, 4]  # one per genre: held-out real, the run


def test_runs_of_other_spectrograms_are_refused(gan_run, tmp_path):
    config = CMelGANConfig.preset("tiny", n_labels=4, n_mels=32)
    other = tmp_path / "other"
    train, _ = build_datasets(SPEC, config, config.frames)
    GANTrainer(CMelGAN(config), train, None, TrainOptions(steps=0, batch_size=2, progress=False), other,
               data_spec=SPEC).fit()
    with pytest.raises(ValueError, match="different audio settings"):
        compare.compare_runs([gan_run[0], other], classifiers=1, classifier_steps=1)
