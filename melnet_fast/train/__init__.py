"""Training MelNet: Trainer (the loop), options, run directories, baseline, evaluation, multi-GPU plans; and
GANTrainer, the same loop for the cMelGAN baseline.

Layering: this package imports the model and the data; the model never imports it.
"""

from melnet_fast.train.baseline import ChannelGaussian
from melnet_fast.train.data_source import SYNTHETIC, DataSpec, build_datasets, build_eval_dataset
from melnet_fast.train.distributed import TierPlan, assign_tiers, parse_assignment, tier_costs
from melnet_fast.train.evaluation import EvalResult, evaluate
from melnet_fast.train.gan import GANTrainer
from melnet_fast.train.loop import StepResult, TierLosses, Trainer, TrainingDiverged
from melnet_fast.train.options import TrainOptions
from melnet_fast.train.run_dir import RunDir, RunDirError

__all__ = ["Trainer", "GANTrainer", "TrainOptions", "TrainingDiverged", "StepResult", "TierLosses", "RunDir",
           "RunDirError", "ChannelGaussian", "DataSpec", "SYNTHETIC", "build_datasets", "build_eval_dataset",
           "EvalResult", "evaluate", "TierPlan", "assign_tiers", "parse_assignment", "tier_costs"]
