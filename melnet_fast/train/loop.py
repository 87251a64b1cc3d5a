"""Trainer: the training loop of MelNet (all tiers or chosen ones), with validation, logging and checkpoints.

One step: a batch of examples x [B, T, F] padded to the longest, with their lengths -> per-tier mean NLL over the
real elements (each tier's loss involves only its own parameters)
-> backward of their sum, so each tier receives exactly the gradient of its own NLL, as if trained alone
(paper, section 5) -> per-tier gradient clipping -> RMSProp. A step whose loss or gradient is not finite makes
no update (the parameters and optimizer state are left as they were) and is reported; after `nan_patience`
such steps in a row training stops with TrainingDiverged. Checkpoints are only written from finite parameters.
A Trainer with a run directory holds its lock (run_lock.py) until close(); fit(stop=...) ends at the first
step after a stop request (a signal, see stop_signals.py) with a checkpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from typing import Callable, Dict, List, Sequence, Tuple

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint as recompute_checkpoint

from melnet_fast import ops
from melnet_fast.config import MelNetConfig
from melnet_fast.model import MelNet
from melnet_fast.modules.sweep_lstm import SweepLSTM
from melnet_fast.multiscale import tier_shapes
from melnet_fast.train import distributed as dist_utils
from melnet_fast.train.baseline import ChannelGaussian
from melnet_fast.train.checkpointing import (
    all_finite,
    rng_state,
    save_training_state,
    set_rng_state,
)
from melnet_fast.train.conditioning import batch_cond, symbols_per_frame
from melnet_fast.train.data_source import DataSpec, epoch_loader
from melnet_fast.train.evaluation import LN2, EvalResult, evaluate
from melnet_fast.train.metrics import MetricsLogger, csv_columns, show
from melnet_fast.train.options import TrainOptions
from melnet_fast.train.progress import TrainProgress
from melnet_fast.train.run_dir import RunDir, RunDirError


class TrainingDiverged(RuntimeError):
    """Too many consecutive steps had a non-finite loss or gradient; the last good checkpoint is kept."""


class TrainingIOError(RuntimeError):
    """Writing the run directory failed during training (full disk, read-only file system...); the message
    says which file and where the last good checkpoint is."""


class TierLosses(nn.Module):
    """forward(x [B, T, F], cond, lengths [B] or None) -> ([len(tiers)] the mean NLL (nats per real element) of
    each chosen tier, guide): guide is the guided-attention loss of tier 1's attention (MelNet.loss_and_guide)
    when guide_sigma is given and tier 1 is trained, else a zero scalar.

    A module of its own so that DistributedDataParallel can wrap it. recompute: run each tier's forward again
    in backward instead of storing its activations (torch.utils.checkpoint), and turn on the segmented recompute
    of every sweep of the trained tiers (SweepLSTM.recompute: no gates kept, spans recomputed in backward), so that
    the gates are never stored, not even while a tier's forward runs again."""

    def __init__(self, model: MelNet, tiers, recompute: bool = False, guide_sigma: float | None = None):
        super().__init__()
        self.model, self.tiers, self.recompute, self.guide_sigma = model, tuple(tiers), recompute, guide_sigma
        if recompute:
            for g in self.tiers:
                for module in model.tiers[g - 1].modules():
                    if isinstance(module, SweepLSTM):
                        module.recompute = True

    def _tier(self, x: torch.Tensor, cond, lengths, g: int):
        loss, guide = self.model.loss_and_guide(x, cond, tiers=[g], lengths=lengths,
                                                guide_sigma=self.guide_sigma if g == 1 else None)
        return loss, loss.new_zeros(()) if guide is None else guide

    def forward(self, x: torch.Tensor, cond=None, lengths: torch.Tensor | None = None):
        losses, guide = [], None
        for g in self.tiers:
            if self.recompute and torch.is_grad_enabled():
                loss, g_guide = recompute_checkpoint(self._tier, x, cond, lengths, g, use_reentrant=False)
            else:
                loss, g_guide = self._tier(x, cond, lengths, g)
            losses.append(loss)
            guide = g_guide if guide is None else guide + g_guide
        return torch.stack(losses).float(), guide.float()


@dataclasses.dataclass
class StepResult:
    """What one train_step did. losses: tier -> mean NLL (nats / element); grad_norms: tier -> norm before
    clipping; skipped: no update was made (non-finite loss or gradient)."""

    losses: Dict[int, float]
    grad_norms: Dict[int, float]
    skipped: bool
    loss: float  # over the trained tiers, weighted by their element counts
    guide: float | None = None  # the guided-attention loss (text models training tier 1 with it on)
    guide_weight: float = 0.0  # its weight in this step's objective


@dataclasses.dataclass
class _Interval:
    """Step time, real frames and losses accumulated over some steps."""

    time: float = 0.0
    frames: int = 0
    loss: float = 0.0
    guide: float = 0.0
    steps: int = 0

    def add(self, dt: float, frames: int, result: StepResult) -> None:
        self.time += dt
        self.frames += frames
        if not result.skipped:
            self.loss += result.loss
            self.guide += result.guide or 0.0
            self.steps += 1

    @classmethod
    def restore(cls, saved: Dict | None) -> _Interval:
        """The interval a checkpoint saved (dataclasses.asdict); a new one when it saved none or another layout."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**saved) if saved and set(saved) == names else cls()


def _pick_device(name: str, local_rank: int | None) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} was asked for but torch sees no CUDA device")
        if device.index is None:
            device = torch.device("cuda", local_rank or 0)
        torch.cuda.set_device(device)
    return device


class Trainer:
    """Trains a MelNet on a dataset of variable-length examples (see melnet_fast.data), logging to and
    checkpointing in run_dir.

    train_data / val_data: SpectrogramCropDataset-like (examples of at most crop_frames frames, `item_frames(i)`,
    labels, `spectrogram(i)`), with crop_frames = options.crop_frames. run_dir None: nothing is written (library
    use, tests).
    baseline: the per-channel Gaussian reported next to validation NLLs (default: fitted on train_data, and
    kept in run_dir/baseline.json). resume: continue from run_dir's latest checkpoint when there is one; a run
    whose weights were saved but whose training state is missing or unreadable is refused (RunDirError), never
    restarted over them; resume=False refuses a run directory that holds checkpoints (RunDir.set_aside() first).
    distributed: None = when launched by torchrun (or a process group exists); see melnet_fast.train.distributed.
    RunLockedError when another process holds run_dir's lock.
    """

    model_kind = "melnet"  # recorded in config.json (melnet_fast.train.run_dir)

    def __init__(self, model: MelNet, train_data, val_data=None, options: TrainOptions | None = None,
                 run_dir=None, *, baseline: ChannelGaussian | None = None, data_spec: DataSpec | None = None,
                 resume: bool = True, distributed: bool | None = None):
        self.model = model
        self.config: MelNetConfig = model.config
        self.options = (options or TrainOptions()).resolved(self.config)
        o = self.options
        self.train_data, self.val_data = train_data, val_data
        if len(train_data) == 0:
            raise ValueError("the training data is empty")
        if train_data.crop_frames != o.crop_frames:
            raise ValueError(f"the training data serves crops of {train_data.crop_frames} frames, the options ask "
                             f"for crop_frames={o.crop_frames}")
        if o.batch_size > len(train_data):
            raise ValueError(f"batch_size {o.batch_size} is larger than the training data ({len(train_data)} items): "
                             f"every batch would hold all of it")
        if distributed is None:
            distributed = dist_utils.launched_by_torchrun() or torch.distributed.is_initialized()
        self.dist = None
        if distributed:
            costs = dist_utils.tier_costs(self.config, o.crop_frames)
            self.dist = dist_utils.init_distributed(o.tiers, costs, o.tier_assignment)
        self.is_main = self.dist is None or self.dist.is_main
        self._claim_and_setup(run_dir, lambda: self._setup(model, o, resume, baseline, data_spec))

    def _setup(self, model: MelNet, o: TrainOptions, resume: bool, baseline, data_spec) -> None:
        self.tiers: tuple = self.dist.tiers if self.dist else o.tiers
        self.device = _pick_device(o.device, self.dist.local_rank if self.dist else None)
        self.amp = self.device.type == "cuda" if o.amp is None else bool(o.amp and self.device.type == "cuda")
        self.conditional = self.config.n_speakers > 0
        model.to(self.device)

        # Every parameter goes to the optimizer, trained tiers or not, so that its state dict lines up whichever
        # tiers a run (or a rank) trains; parameters without a gradient are left alone by RMSprop.
        self.optimizer = torch.optim.RMSprop(model.parameters(), lr=o.learning_rate, momentum=o.momentum)
        self._tier_params = {g: list(model.tiers[g - 1].parameters()) for g in self.tiers}
        shapes = tier_shapes(o.crop_frames, self.config.n_mels, self.config.n_tiers)
        self._tier_elements = {g: shapes[g - 1][0] * shapes[g - 1][1] for g in range(1, self.config.n_tiers + 1)}
        # Share of a spectrogram's elements that the trained tiers model (each tier holds a fixed share).
        self._trained_share = sum(self._tier_elements[g] for g in self.tiers) / (o.crop_frames * self.config.n_mels)
        c = self.config
        self._guided = c.has_text and c.guided_attention > 0 and 1 in self.tiers
        self.loss_module: nn.Module = TierLosses(model, self.tiers, o.recompute,
                                                 c.guided_attention_sigma if self._guided else None)
        if self.dist:
            for g, tier in enumerate(model.tiers, start=1):
                tier.requires_grad_(g in self.tiers)  # DDP synchronises exactly the trainable parameters
            from torch.nn.parallel import DistributedDataParallel

            self.loss_module = DistributedDataParallel(
                self.loss_module, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                process_group=self.dist.group)
        self._reset_progress()
        self._open_run(resume, baseline, data_spec)
        if self.step == 0:  # a new run (a resumed one has its trained attention)
            self._start_attention()

    # ------------------------------------------------------------------ what every trainer of a run shares
    def _claim_and_setup(self, run_dir, setup: Callable[[], None]) -> None:
        """Claim run_dir (None: write nothing): its lock, held until close(), and the removal of the temporary
        files a killed writer left; then run `setup` (the trainer's own), closing the trainer if it fails."""
        self.run = RunDir(run_dir) if run_dir is not None else None
        self.messages: List[str] = []
        self._pending: List[str] = []
        self.logger = None
        self._lock = None
        try:
            if self.run is not None and self.is_main:
                self._lock = self.run.claim(f"melnet_fast {type(self).__name__}", arg="run_dir", say=self.say)
            setup()
        except BaseException:
            self.close()
            raise

    def _reset_progress(self) -> None:
        self.step = self.epoch = self.batch_in_epoch = 0
        self.skipped_steps = self._bad_in_a_row = self._streak = 0
        self.best_val: float | None = None
        self.best_step: int | None = None
        self.last_checkpoint_step: int | None = None
        self.last_val = None  # the last validation's result (EvalResult for MelNet)
        self._last_val_step: int | None = None
        self._interval = _Interval()  # the steps since the last train row of metrics.csv
        self._iter = None
        self.padded_share: float | None = None  # of the current epoch's batches
        self._padded_shares: List[float] = []

    def _open_run(self, resume: bool, baseline: ChannelGaussian | None, data_spec: DataSpec | None) -> None:
        """Create the claimed run directory, resume from its latest checkpoint (or refuse to start over a trained
        run), fit or read the per-channel baseline, write config.json and open the logs."""
        if self.run is not None:
            self.run.create()
        resumed = False
        if self.run is not None and resume:
            state = self.run.training_state()
            if state is not None:
                self.load_state_dict(state)
                resumed = True
        elif self.run is not None and self.run.checkpoint_files():
            names = ", ".join(p.name for p in self.run.checkpoint_files())
            raise RunDirError(f"{self.run.root} holds a trained run ({names}); resume=False would overwrite it: set "
                              f"it aside first (RunDir.set_aside())")
        self.baseline = baseline if baseline is not None else self._baseline()
        if self.run is not None and self.is_main:
            self.run.write_config(self.config, self.options.to_dict(), data_spec.to_dict() if data_spec else {},
                                  kind=self.model_kind)
        self.logger = MetricsLogger(self.run.root if self.run is not None and self.is_main else None,
                                    columns=self.metric_columns(), resume_step=self.step if resumed else None,
                                    echo=self.is_main)
        for text in self._pending:  # said (and shown) before the logger existed, e.g. while resuming
            self.logger.message(text, echo=False)
        self._pending.clear()

    def _start_attention(self) -> None:
        """A new text model learns its alignment faster when its attention starts moving at the data's speaking
        rate: unless config.attention_initial_step fixes it, set it to the training data's symbols per frame."""
        c = self.config
        if not c.has_text or c.attention_initial_step is not None or 1 not in self.tiers:
            return
        rate = symbols_per_frame(self.train_data, self.model.text_frontend, c.time_factor)
        self.model.tiers[0].network.centralized.attention.set_initial_step(rate)
        self.say(f"attention starts at the training data's speaking rate: {rate:.3f} symbols per initial-tier frame")

    def metric_columns(self) -> List[str]:
        """The columns of metrics.csv (see melnet_fast.train.metrics)."""
        return csv_columns(self.config.n_tiers, self.config.has_text)

    # ------------------------------------------------------------------ helpers
    def say(self, text: str) -> None:
        """Report a message (stderr, train.log, and self.messages)."""
        self.messages.append(text)
        if self.logger is None:
            self._pending.append(text)
            if self.is_main:
                show(text)
        else:
            self.logger.message(text)

    def _baseline(self) -> ChannelGaussian:
        path = self.run.baseline if self.run is not None else None
        if path is not None and path.is_file():
            try:
                return ChannelGaussian.load(path)
            except ValueError as e:  # derived from the data: fit it again
                self.say(f"{e}; fitting the baseline again")
        base = ChannelGaussian.fit(self.train_data.spectrogram(i) for i in range(len(self.train_data)))
        if path is not None and self.is_main:
            base.save(path)
        return base

    def _autocast(self):
        if self.amp:
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _next_batch(self):
        o = self.options
        while True:
            if self._iter is None:
                shard, shards = 0, 1
                if self.dist:
                    ranks = self.dist.group_ranks
                    shard, shards = ranks.index(self.dist.rank), len(ranks)
                    if len(self.train_data) < shards:
                        raise ValueError(f"{len(self.train_data)} training items cannot be shared by {shards} ranks")
                epoch = epoch_loader(self.train_data, o.batch_size, o.seed, self.epoch, self.batch_in_epoch,
                                     shard, shards, o.num_workers, o.bucket_batches)
                self._iter = iter(epoch.loader)
                self.padded_share = epoch.padded_share
                self._padded_shares.append(epoch.padded_share)
                if len(self._padded_shares) == 1:
                    self.say(f"epoch {self.epoch}: {epoch.n_batches} batches of up to {o.batch_size} examples; "
                             f"{epoch.padded_share:.1%} of the batched elements are padding "
                             f"({epoch.unbucketed_share:.1%} without length buckets)")
            try:
                batch = next(self._iter)
            except StopIteration:
                self.epoch, self.batch_in_epoch, self._iter = self.epoch + 1, 0, None
                continue
            self.batch_in_epoch += 1
            return batch

    # ------------------------------------------------------------------ one step
    def compute_losses(self, x: torch.Tensor, cond=None, lengths: torch.Tensor | None = None):
        """x [B, T, F] on the device (lengths [B]: real frames, or None) -> ([len(self.tiers)] mean NLL per
        trained tier, guided-attention loss: a scalar, zero when off) (with autograd)."""
        with self._autocast():
            return self.loss_module(x, cond, lengths)

    def guide_weight(self, step: int | None = None) -> float:
        """The guided-attention loss's weight at `step` (default the current one): config.guided_attention,
        decaying linearly to 0 at config.guided_attention_steps; 0 when the guide is off."""
        if not self._guided:
            return 0.0
        c, step = self.config, self.step if step is None else step
        return c.guided_attention * max(0.0, 1.0 - step / c.guided_attention_steps)

    def train_step(self, x: torch.Tensor, labels: torch.Tensor | None = None,
                   lengths: torch.Tensor | None = None, texts: Sequence[str] | None = None) -> StepResult:
        """One optimisation step on a batch x [B, T, F] (labels [B]: speaker / genre ids, used when the model
        is conditional; lengths [B]: real frames of each example, None = all T; texts: B strings, for a text
        model). Does not advance self.step (fit does). The objective is the NLL of the trained tiers plus, for a
        text model with config.guided_attention, guide_weight() times the guided-attention loss."""
        self.model.train()
        x = x.to(self.device, non_blocking=True)
        cond = batch_cond(self.config, labels if self.conditional else None, texts, self.device)
        losses, guide = self.compute_losses(x, cond, lengths)
        weight = self.guide_weight()
        # Backward even when the loss is not finite: under DDP every rank of a group must join the gradient
        # all-reduce, and the non-finite gradient then tells all of them to skip the update.
        (losses.sum() + weight * guide).backward()
        max_norm = self.options.clip_grad_norm or math.inf
        norms = {g: float(torch.nn.utils.clip_grad_norm_([p for p in self._tier_params[g] if p.grad is not None],
                                                         max_norm))
                 for g in self.tiers}
        values = dict(zip(self.tiers, losses.detach().tolist()))
        ops.raise_deferred_errors()  # the input checks of this step that ran on a GPU, read at this sync point
        finite = all(math.isfinite(v) for v in values.values()) and all(math.isfinite(n) for n in norms.values())
        if finite:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        n = sum(self._tier_elements[g] for g in self.tiers)
        loss = sum(values[g] * self._tier_elements[g] for g in self.tiers) / n
        return StepResult(values, norms, not finite, loss, float(guide.detach()) if self._guided else None, weight)

    def _loss_name(self, key) -> str:
        """How a key of StepResult.losses is named in messages."""
        return f"tier {key}"

    def _last_good(self) -> str:
        if self.last_checkpoint_step is None:
            return "no checkpoint has been written yet"
        return (f"last good checkpoint: step {self.last_checkpoint_step}"
                + (f" in {self.run.latest_state}" if self.run is not None else ""))

    def _after_step(self, result: StepResult, out_of_time: bool, stop_requested: bool, progress: float = 0.0
                    ) -> Tuple[bool, bool, float]:
        """Count and report a skipped step; stop after nan_patience failing steps in a row. Returns (time budget
        spent, stop requested, the progress of the run: 0..1, for the learning rate). Under torch.distributed
        these are taken over all ranks (any rank failing, out of time or asked to stop; the furthest progress),
        since every rank must reach the same checkpoints, stop at the same step and step with the same learning
        rate."""
        if result.skipped:
            self.skipped_steps += 1
            self._bad_in_a_row += 1
            what = ", ".join(f"{self._loss_name(k)} loss {result.losses[k]:.4g} grad norm "
                             f"{result.grad_norms[k]:.4g}" for k in result.losses)
            self.say(f"step {self.step}: non-finite loss or gradient ({what}); skipped the update (parameters "
                     f"unchanged); {self._last_good()}")
        else:
            self._bad_in_a_row = 0
        self._streak = self._bad_in_a_row
        if self.dist:
            states = dist_utils.all_gather((self._bad_in_a_row, out_of_time, stop_requested, progress))
            self._streak = max(b for b, _, _, _ in states)
            out_of_time, stop_requested = any(t for _, t, _, _ in states), any(r for _, _, r, _ in states)
            progress = max(p for _, _, _, p in states)
        if self._streak >= self.options.nan_patience:
            where = self._last_good()
            raise TrainingDiverged(f"{self._streak} consecutive steps had a non-finite loss or gradient (last at "
                                   f"step {self.step}); stopped. {where[0].upper() + where[1:]}; lower the "
                                   f"learning rate or check the data")
        return out_of_time, stop_requested, progress

    # ------------------------------------------------------------------ loop
    def fit(self, stop=None) -> Dict:
        """Train until options.steps, until a step ends after options.max_seconds, or until the step during
        which `stop.requested` became set (a SignalStop, or any object with that attribute), and return a
        summary dict: step, skipped_steps, best_val_nll_nats, val (the last validation's EvalResult.to_dict()),
        seconds, stopped ("steps", "time" or "signal"), checkpoint_step (of the last checkpoint written), the
        throughput of the training steps of this call (elements_per_s, and the audio rate: audio_seconds_per_s,
        audio_khz), padded_share (mean over the epochs started).
        A stop skips the final validation and writes the checkpoint at once. TrainingIOError when writing the
        run directory fails."""
        o = self.options
        start = time.perf_counter()
        stopped = "steps"
        bar = TrainProgress(self.step, o.steps, o.max_seconds, enabled=o.progress and self.is_main, start=start)
        total = _Interval()
        rate = None
        progress = self.step / o.steps if o.steps else 1.0
        try:
            while self.step < o.steps:
                self._set_learning_rate(progress)
                try:
                    batch = self._next_batch()
                except Exception:
                    if _requested(stop):  # Ctrl-C reaches the loader's workers too: they may be gone
                        stopped = "signal"
                        break
                    raise
                t0 = time.perf_counter()
                result = self.train_step(batch.spec, batch.labels, batch.lengths, batch.texts)
                dt = time.perf_counter() - t0
                self.step += 1
                elapsed = time.perf_counter() - start
                out_of_time, signalled, progress = self._after_step(
                    result, o.max_seconds is not None and elapsed >= o.max_seconds, _requested(stop),
                    max(self.step / o.steps, elapsed / o.max_seconds if o.max_seconds else 0.0))
                frames = int(batch.lengths.sum())
                for acc in (self._interval, total):
                    acc.add(dt, frames, result)
                elements = frames * self.config.n_mels * self._trained_share
                rate = elements / dt if rate is None else 0.9 * rate + 0.1 * elements / dt
                audio_rate = rate / (self.config.n_mels * self._trained_share) * self.config.hop_length / 1000
                bar.update(self.step, loss=f"{result.loss:.4f}", elem_s=f"{rate:,.0f}",
                           audio_khz=f"{audio_rate:,.1f}")
                if o.log_every and self.step % o.log_every == 0:
                    self._log_train(self._interval, result)
                    self._interval = _Interval()
                if signalled:
                    stopped = "signal"
                    break
                if o.val_every and self.step % o.val_every == 0:
                    self.validate()
                if o.checkpoint_every and self.step % o.checkpoint_every == 0:
                    self._checkpoint_unless_failing()
                if out_of_time and self.step < o.steps:
                    stopped = "time"
                    self.say(f"time budget of {o.max_seconds:g} s reached at step {self.step}")
                    break
            if stopped != "signal" and self._last_val_step != self.step:
                self.validate()
            if self.last_checkpoint_step != self.step:
                self._checkpoint_unless_failing()
            if stopped == "signal":
                self.say(f"stopped on request after step {self.step}; {self._last_good()}")
            self.logger.flush()
        except OSError as e:
            kept = " (intact)" if self.last_checkpoint_step is not None else ""
            raise TrainingIOError(f"step {self.step}: {e}; {self._last_good()}{kept}") from e
        finally:
            bar.close()
        shares = self._padded_shares
        return {"step": self.step, "skipped_steps": self.skipped_steps, "best_val_nll_nats": self.best_val,
                "val": self.last_val.to_dict() if self.last_val is not None else None,
                "seconds": time.perf_counter() - start, "stopped": stopped,
                "checkpoint_step": self.last_checkpoint_step, **self._throughput(total),
                "padded_share": sum(shares) / len(shares) if shares else None}

    def _set_learning_rate(self, progress: float) -> None:
        """The learning rate at `progress` (0..1, the larger of the step and the time fractions of the run)."""
        o = self.options
        cooling = o.lr_cooldown > 0 and progress >= 1 - o.lr_cooldown
        lr = o.learning_rate * (o.lr_cooldown_factor if cooling else 1.0)
        optimizers = self._optimizers()
        if lr != optimizers[0].param_groups[0]["lr"]:
            for group in (g for optimizer in optimizers for g in optimizer.param_groups):
                group["lr"] = lr
            if cooling:
                self.say(f"step {self.step}: learning rate {lr:.3g} for the last {100 * o.lr_cooldown:g}% of the run")

    def _checkpoint_unless_failing(self) -> None:
        # During a run of non-finite steps the last good checkpoint is the one from before it: keep that one.
        if self._streak:
            self.say(f"step {self.step}: checkpoint not written while steps are failing (last good checkpoint: "
                     f"step {self.last_checkpoint_step})")
            return
        self.save_checkpoint()

    def _throughput(self, acc: _Interval) -> Dict[str, float | None]:
        """Training throughput over `acc` (step time only): elements modelled per second, and the audio rate:
        seconds of audio per second and kHz of audio samples per second (real frames x hop)."""
        if not acc.time:
            return {"elements_per_s": None, "audio_seconds_per_s": None, "audio_khz": None}
        c = self.config
        samples = acc.frames * c.hop_length
        return {"elements_per_s": acc.frames * c.n_mels * self._trained_share / acc.time,
                "audio_seconds_per_s": samples / c.sample_rate / acc.time,
                "audio_khz": samples / 1000 / acc.time}

    def _log_train(self, interval: _Interval, result: StepResult) -> None:
        if not interval.steps:
            return
        loss = interval.loss / interval.steps
        values = {"nll_nats": loss, "nll_bits": loss / LN2, "lr": self.optimizer.param_groups[0]["lr"],
                  "grad_norm": max(result.grad_norms.values()), "skipped": self.skipped_steps,
                  "padded_share": self.padded_share, **self._throughput(interval)}
        values.update({f"nll_tier{g}_nats": v for g, v in result.losses.items()})
        if result.guide is not None:
            values.update(guided_attention=interval.guide / interval.steps, guided_attention_weight=result.guide_weight)
        self.logger.log(self.step, "train", values)

    # ------------------------------------------------------------------ validation
    def _val_batch_size(self) -> int:
        # Without autograd a batch costs far less memory: small models validate in batches of up to 32 (fewer
        # calls), large ones keep the training batch size (about 4M activations of width D per batch).
        o, c = self.options, self.config
        return max(o.batch_size, min(32, 2**22 // (o.crop_frames * c.n_mels * c.hidden_size)))

    def validate(self) -> EvalResult | None:
        """NLL of the held-out data (the first options.val_segments segments of up to crop_frames frames), logged as a
        "val" row; a new best writes checkpoints/best.safetensors. None without validation data."""
        if self.val_data is None:
            return None
        o = self.options
        result = evaluate(self.model, self.val_data, o.crop_frames, tiers=self.tiers, baseline=self.baseline,
                          batch_size=self._val_batch_size(), max_segments=o.val_segments)
        if self.dist:  # every tier is scored on the ranks that train it; its group leader's figure counts
            gathered = dist_utils.all_gather(result)
            result = EvalResult({}, {}, {}, result.segments, result.segment_frames)
            for tiers, ranks in self.dist.plan.groups:
                r = gathered[ranks[0]]
                for g in tiers:
                    result.tiers[g], result.elements[g] = r.tiers[g], r.elements[g]
                    result.baseline_tiers[g] = r.baseline_tiers[g]
        self.last_val, self._last_val_step = result, self.step
        nll = result.nll_nats
        values = {"nll_nats": nll, "nll_bits": nll / LN2, "baseline_nll_nats": result.baseline_nll_nats}
        values.update({f"nll_tier{g}_nats": v for g, v in result.tiers.items()})
        self.logger.log(self.step, "val", values)
        if math.isfinite(nll) and (self.best_val is None or nll < self.best_val):
            self.best_val, self.best_step = nll, self.step
            if self.run is not None:
                if self.dist:
                    dist_utils.broadcast_tiers(self.model, self.optimizer, self.dist)
                if self.is_main and all_finite(self.model):
                    self.model.save(self.run.best_model)
        return result

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> Dict:
        """Everything a resumed run needs to continue exactly (RNG state of this process only)."""
        return {
            "step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
            "model_config": self.config.to_dict(),
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            **self._optimizer_state(),
            "rng": [rng_state()],
            "best_val": self.best_val, "best_step": self.best_step, "skipped_steps": self.skipped_steps,
            "options": self.options.to_dict(),
            # so that a resumed run neither validates the same step again nor logs a partial interval's average
            "val_step": self._last_val_step, "log_interval": dataclasses.asdict(self._interval),
        }

    def _optimizers(self) -> List[torch.optim.Optimizer]:
        return [self.optimizer]

    def _optimizer_state(self) -> Dict:
        return {"optimizer": self.optimizer.state_dict()}

    def _load_optimizer_state(self, state: Dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        for group in self.optimizer.param_groups:  # the options of this run win over the stored ones
            group["lr"], group["momentum"] = self.options.learning_rate, self.options.momentum

    def load_state_dict(self, state: Dict) -> None:
        """Restore a state_dict / checkpoint. RunDirError when it belongs to a model with another config."""
        try:
            stored = type(self.config).from_dict(state["model_config"])
        except (TypeError, ValueError) as e:
            raise RunDirError(f"the checkpoint is incompatible with this model: {e}") from None
        if stored != self.config:
            diff = {k: (v, self.config.to_dict()[k]) for k, v in stored.to_dict().items()
                    if v != self.config.to_dict()[k]}
            raise RunDirError(f"the checkpoint is incompatible with this model: config fields differ "
                              f"(checkpoint, now): {diff}")
        self.model.load_state_dict(state["model"])
        self._load_optimizer_state(state)
        self.step, self.epoch, self.batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        self.best_val, self.best_step = state["best_val"], state["best_step"]
        self.skipped_steps = state["skipped_steps"]
        self._last_val_step = state.get("val_step")  # absent from checkpoints of earlier versions
        self._interval = _Interval.restore(state.get("log_interval"))
        self.last_checkpoint_step = self.step
        self._iter = None
        rank = self.dist.rank if self.dist else 0
        rngs = state["rng"]
        if len(rngs) == (self.dist.world_size if self.dist else 1):
            set_rng_state(rngs[rank])
        else:
            self.say(f"the checkpoint holds RNG states of {len(rngs)} processes, this run has "
                     f"{self.dist.world_size if self.dist else 1}: RNG states not restored")
        before = state.get("options", {})
        changed = [k for k in ("batch_size", "crop_frames", "seed") if k in before
                   and before[k] != getattr(self.options, k)]
        if changed:
            self.say(f"resuming with changed {', '.join(changed)}: the data order differs from the original run")
        self.say(f"resumed from step {self.step}" + (f" ({self.run.latest_state})" if self.run else ""))

    def save_checkpoint(self) -> bool:
        """Write checkpoints/latest.pt (training state) and latest.safetensors (weights), atomically. Skipped,
        with a message, when a parameter is not finite (the last good checkpoint stays). Returns whether written."""
        if self.dist:
            dist_utils.broadcast_tiers(self.model, self.optimizer, self.dist)
            rngs = dist_utils.all_gather(rng_state())
        if not all_finite(self.model):
            self.say(f"step {self.step}: a parameter is not finite; checkpoint not written (last good checkpoint: "
                     f"step {self.last_checkpoint_step})")
            return False
        if self.run is not None and self.is_main:
            state = self.state_dict()
            if self.dist:
                state["rng"] = rngs
            # Weights first: if the state cannot be written, latest.pt still holds the previous step to resume.
            self.model.save(self.run.latest_model)
            save_training_state(self.run.latest_state, state)
        self.last_checkpoint_step = self.step
        return True

    def close(self) -> None:
        """Close the logs, release the run directory (and leave a process group this trainer created)."""
        if self.logger is not None:
            self.logger.close()
        if self._lock is not None:
            self._lock.release()
        if self.dist:
            self.dist.close()


def _requested(stop) -> bool:
    return stop is not None and stop.requested is not None
