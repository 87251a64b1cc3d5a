"""Training MelNet: Trainer (the loop), options, run directories, baseline, evaluation, multi-GPU plans; and
GANTrainer, the same loop for the cMelGAN baseline.

Pieces any trainer of the package can reuse: RunDir.claim / RunLock (one writer per run directory, stale locks
taken over), SignalStop (SIGTERM / SIGINT end a run with a checkpoint), atomic writes and the clean-up of their
orphans (melnet_fast.atomic_files), preflight checks (writable paths, memory, disk) and TrainProgress.
Layering: this package imports the model and the data; the model never imports it.
"""

from melnet_fast.train.baseline import ChannelGaussian
from melnet_fast.train.data_source import SYNTHETIC, DataSpec, build_datasets, build_eval_dataset
from melnet_fast.train.distributed import TierPlan, assign_tiers, parse_assignment, tier_costs
from melnet_fast.train.evaluation import EvalResult, evaluate
from melnet_fast.train.gan import GANTrainer
from melnet_fast.train.loop import StepResult, TierLosses, Trainer, TrainingDiverged, TrainingIOError
from melnet_fast.train.options import TrainOptions
from melnet_fast.train.preflight import PreflightError
from melnet_fast.train.progress import TrainProgress
from melnet_fast.train.run_dir import RunDir, RunDirError
from melnet_fast.train.run_lock import RunLock, RunLockedError
from melnet_fast.train.stop_signals import SignalStop, Stopped

__all__ = ["Trainer", "GANTrainer", "TrainOptions", "TrainingDiverged", "TrainingIOError", "StepResult", "TierLosses",
           "RunDir", "RunDirError", "RunLock", "RunLockedError", "SignalStop", "Stopped", "PreflightError",
           "TrainProgress", "ChannelGaussian", "DataSpec", "SYNTHETIC", "build_datasets", "build_eval_dataset",
           "EvalResult", "evaluate", "TierPlan", "assign_tiers", "parse_assignment", "tier_costs"]
