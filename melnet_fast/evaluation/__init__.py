"""Measures of generated spectrograms for any model that makes them (MelNet, cMelGAN, ...).

    sample_fidelity, Fidelity           per-channel mean and std of generated against real spectrograms, the
                                        envelope's rank order, and the share of values at the log floor
    LabelClassifier, train_classifier   a small genre / speaker classifier trained on real training crops
    frechet_distance                    Fréchet distance between feature sets (FID's formula)
    judge_samples, SampleJudgement      label accuracy of samples and Fréchet distance of their classifier
                                        features to held-out real segments (Judges: the classifiers)
    compare_runs, Comparison            those measures with parameters, training throughput and held-out NLL, per
                                        run (`melnet-fast compare`)
"""

from melnet_fast.evaluation.classifier import LabelClassifier, train_classifier
from melnet_fast.evaluation.compare import Comparison, ModelScores, compare_runs, generate
from melnet_fast.evaluation.fidelity import ChannelMoments, Fidelity, channel_moments, rank_correlation, sample_fidelity
from melnet_fast.evaluation.frechet import frechet_distance, frechet_from_statistics, gaussian_statistics
from melnet_fast.evaluation.judge import Judges, SampleJudgement, judge_samples

__all__ = ["sample_fidelity", "Fidelity", "channel_moments", "ChannelMoments", "rank_correlation",
           "LabelClassifier", "train_classifier", "frechet_distance", "frechet_from_statistics",
           "gaussian_statistics", "Judges", "SampleJudgement", "judge_samples", "Comparison", "ModelScores",
           "compare_runs", "generate"]
