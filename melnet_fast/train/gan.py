"""GANTrainer: trains a cMelGAN with the MelNet trainer's machinery (run directory, resumable atomic checkpoints,
metrics and logs, NaN guard, time budget, progress bar), replacing only what a step and a validation are.

One step, on a batch of real crops x [B, T, F] with labels y [B]: noise z ~ N(0, I) -> fake = G(z, y); the
discriminator scores (x, y), (fake, y) and (x, y') with y' a wrong label, in one batch; the discriminator's
gradient of its loss and the generator's gradient of its own loss are both taken at this point (simultaneous
updates), clipped per network, and applied by one Adam per network. A step whose losses or gradients are not
finite updates neither network (so a skipped step leaves every parameter as it was).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Dict, List, Sequence

import torch

from melnet_fast.baselines.cmelgan import CMelGAN, CMelGANConfig, discriminator_loss, generator_loss, wrong_labels
from melnet_fast.train import distributed as dist_utils
from melnet_fast.train.baseline import ChannelGaussian
from melnet_fast.train.data_source import DataSpec
from melnet_fast.train.evaluation import full_segments
from melnet_fast.train.loop import StepResult, Trainer, _Interval, _pick_device
from melnet_fast.train.options import TrainOptions

SCORES = ("d_real", "d_fake", "d_wrong")  # mean discriminator scores of the three kinds of pair
METRIC_COLUMNS = ["step", "split", "time", "elapsed_s", "d_loss", "g_loss", *SCORES, "grad_norm_d", "grad_norm_g",
                  "lr", "elements_per_s", "audio_seconds_per_s", "audio_khz", "skipped"]
VAL_SEED = 1234  # the noise and wrong labels of every validation (the same each time, and off the global RNG)


def resolve_options(options: TrainOptions, config: CMelGANConfig) -> TrainOptions:
    """A copy of `options` with the config's batch size, clip length and learning rate filled in; ValueError for
    options that only MelNet has (tiers, recompute, momentum, tier_assignment) or a crop of another length."""
    melnet_only = {"tiers": options.tiers is not None, "recompute": options.recompute,
                   "momentum": options.momentum is not None, "tier_assignment": options.tier_assignment != "tier"}
    given = [name for name, set_ in melnet_only.items() if set_]
    if given:
        raise ValueError(f"cMelGAN training has no {', '.join(given)} (MelNet-only options)")
    if options.crop_frames is not None and options.crop_frames != config.frames:
        raise ValueError(f"crop_frames={options.crop_frames}, but this cMelGAN makes clips of config.frames="
                         f"{config.frames} frames; change the model (frames=...) instead")
    return dataclasses.replace(options, batch_size=options.batch_size or config.batch_size, crop_frames=config.frames,
                               learning_rate=options.learning_rate or config.learning_rate)


@dataclasses.dataclass
class GANStepResult(StepResult):
    """StepResult with the mean discriminator scores of the step (keys of SCORES present in it)."""

    scores: Dict[str, float] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class GANValResult:
    """Losses and mean discriminator scores on held-out real crops (fixed noise and wrong labels)."""

    d_loss: float
    g_loss: float
    scores: Dict[str, float]
    segments: int
    segment_frames: int

    def to_dict(self) -> Dict:
        return {"d_loss": self.d_loss, "g_loss": self.g_loss, **self.scores, "segments": self.segments,
                "segment_frames": self.segment_frames}


class GANTrainer(Trainer):
    """Trains a CMelGAN on a dataset of labelled crops (melnet_fast.data), logging to and checkpointing in run_dir.

    train_data / val_data: SpectrogramCropDataset-like whose every item has model.config.frames frames (crop_frames
    and min_frames both set to it) and labels in 0..n_labels - 1. options: TrainOptions (steps, max_seconds,
    batch_size, learning_rate (both networks), clip_grad_norm (per network), seed, device, log / validation /
    checkpoint cadence, nan_patience...).
    run_dir, baseline, data_spec, resume: as for Trainer (the run directory's lock is held until close()).
    One process (no torch.distributed).
    """

    model_kind = "cmelgan"

    def __init__(self, model: CMelGAN, train_data, val_data=None, options: TrainOptions | None = None,
                 run_dir=None, *, baseline: ChannelGaussian | None = None, data_spec: DataSpec | None = None,
                 resume: bool = True):
        if not isinstance(model, CMelGAN):
            raise ValueError(f"model must be a CMelGAN, got {type(model).__name__} (MelNet trains with Trainer)")
        self.model = model
        self.config: CMelGANConfig = model.config
        c = self.config
        self.options = resolve_options(options or TrainOptions(), c)
        self.train_data, self.val_data = train_data, val_data
        for name, data in (("training", train_data), ("held-out", val_data)):
            if data is None:
                continue
            if len(data) == 0:
                raise ValueError(f"the {name} data is empty")
            if data.crop_frames != c.frames or data.settings.n_mels != c.n_mels:
                raise ValueError(f"the {name} data serves crops of {data.crop_frames} frames x {data.settings.n_mels}"
                                 f" mels, the model makes {c.frames} x {c.n_mels}")
            if name == "training" and min(data.item_frames(i) for i in range(len(data))) < c.frames:
                raise ValueError(f"the training data has items shorter than the model's {c.frames} frames: "
                                 f"build it with min_frames={c.frames} (cMelGAN trains on whole clips)")
            if max(data.labels) >= c.n_labels:
                raise ValueError(f"the {name} data has label ids up to {max(data.labels)}, the model "
                                 f"n_labels={c.n_labels}")
        if dist_utils.launched_by_torchrun() or torch.distributed.is_initialized():
            raise ValueError("cMelGAN trains in one process: run it without torchrun")
        self.dist, self.is_main, self.amp = None, True, False
        self._claim_and_setup(run_dir, lambda: self._setup(resume, baseline, data_spec))

    def _setup(self, resume: bool, baseline, data_spec) -> None:
        m, c, o = self.model, self.config, self.options
        self.device = _pick_device(o.device, None)
        m.to(self.device)
        self.optimizer_g = torch.optim.Adam(m.generator.parameters(), lr=o.learning_rate, betas=c.betas)
        self.optimizer_d = torch.optim.Adam(m.discriminator.parameters(), lr=o.learning_rate, betas=c.betas)
        self._trained_share = 1.0  # one network models every element of a clip
        self._sums: Dict[str, float] = {}  # of the finite steps since the last train row
        self._reset_progress()
        self._open_run(resume, baseline, data_spec)

    # ------------------------------------------------------------------ hooks of Trainer
    def metric_columns(self) -> List[str]:
        return METRIC_COLUMNS

    def _loss_name(self, key) -> str:
        return key

    def _optimizers(self) -> List[torch.optim.Optimizer]:
        return [self.optimizer_g, self.optimizer_d]

    def _optimizer_state(self) -> Dict:
        return {"optimizer_g": self.optimizer_g.state_dict(), "optimizer_d": self.optimizer_d.state_dict()}

    def _load_optimizer_state(self, state: Dict) -> None:
        for optimizer, key in ((self.optimizer_g, "optimizer_g"), (self.optimizer_d, "optimizer_d")):
            optimizer.load_state_dict(state[key])
            for group in optimizer.param_groups:  # the options of this run win over the stored ones
                group["lr"] = self.options.learning_rate

    # ------------------------------------------------------------------ one step
    def _losses(self, x: torch.Tensor, labels: torch.Tensor, noise: torch.Tensor, wrong: torch.Tensor | None):
        """(discriminator loss, generator loss, mean scores) of real crops x [B, T, F] with labels [B]."""
        m = self.model
        fake = m.generate(noise, labels)
        pairs, pair_labels = [x, fake], [labels, labels]
        if wrong is not None:
            pairs.append(x)
            pair_labels.append(wrong)
        scores = m.discriminator(torch.cat(pairs), torch.cat(pair_labels)).split(x.shape[0])
        loss_d, means = discriminator_loss(scores[0], scores[1], scores[2] if wrong is not None else None)
        return loss_d, generator_loss(scores[1]), means

    def train_step(self, x: torch.Tensor, labels: torch.Tensor | None = None, lengths: torch.Tensor | None = None,
                   texts: Sequence[str] | None = None) -> GANStepResult:
        """One optimisation step of both networks on real crops x [B, T, F] with labels [B] (None: label 0).
        lengths [B]: real frames of each crop, all T (a cMelGAN learns whole clips); texts: ignored (a cMelGAN is
        conditioned on labels only). Does not advance self.step (fit does)."""
        m, c = self.model, self.config
        if lengths is not None and bool((lengths != x.shape[1]).any()):
            raise ValueError(f"lengths: a cMelGAN trains on whole clips of {x.shape[1]} frames, got lengths "
                             f"{lengths.tolist()}")
        m.train()
        x = x.to(self.device, non_blocking=True)
        m.check_spectrogram(x)
        labels = m.check_labels(None if labels is None else labels.to(self.device), x.shape[0])
        noise = torch.randn(x.shape[0], c.noise_dim, device=self.device, dtype=x.dtype)
        wrong = wrong_labels(labels, c.n_labels) if c.n_labels > 1 else None
        loss_d, loss_g, scores = self._losses(x, labels, noise, wrong)
        nets = {"discriminator": (m.discriminator, loss_d, self.optimizer_d),
                "generator": (m.generator, loss_g, self.optimizer_g)}
        max_norm = self.options.clip_grad_norm or math.inf
        norms = {}
        for name, (net, loss, _) in nets.items():
            params = list(net.parameters())
            grads = torch.autograd.grad(loss, params, retain_graph=name == "discriminator")
            for p, g in zip(params, grads):
                p.grad = g
            norms[name] = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
        losses = {"discriminator": float(loss_d.detach()), "generator": float(loss_g.detach())}
        finite = all(math.isfinite(v) for v in (*losses.values(), *norms.values()))
        for _, _, optimizer in nets.values():
            if finite:
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        if finite:
            for key, value in {"d_loss": losses["discriminator"], "g_loss": losses["generator"], **scores}.items():
                self._sums[key] = self._sums.get(key, 0.0) + value
            self._sums["steps"] = self._sums.get("steps", 0) + 1
        return GANStepResult(losses, norms, not finite, losses["discriminator"], scores=scores)

    def _log_train(self, interval: _Interval, result: StepResult) -> None:
        sums, self._sums = self._sums, {}
        n = sums.pop("steps", 0)
        if not n:
            return
        values = {k: v / n for k, v in sums.items()}
        values.update(grad_norm_d=result.grad_norms["discriminator"], grad_norm_g=result.grad_norms["generator"],
                      lr=self.optimizer_g.param_groups[0]["lr"], skipped=self.skipped_steps,
                      **self._throughput(interval))
        self.logger.log(self.step, "train", values)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> Dict:
        # the sums of the interval's scores too, so that a resumed run logs the same averages
        return {**super().state_dict(), "gan_sums": dict(self._sums)}

    def load_state_dict(self, state: Dict) -> None:
        super().load_state_dict(state)
        self._sums = dict(state.get("gan_sums", {}))

    # ------------------------------------------------------------------ validation
    @torch.no_grad()
    def validate(self) -> GANValResult | None:
        """Losses and mean scores on the held-out data (the first options.val_segments segments of a clip's
        length), with the same noise and wrong labels every time; logged as a "val" row. None without data."""
        if self.val_data is None:
            return None
        m, c, o = self.model, self.config, self.options
        where = full_segments(self.val_data, c.frames, o.val_segments)
        if not where:
            raise ValueError(f"no held-out item has {c.frames} frames or more")
        generator = torch.Generator(device=self.device).manual_seed(VAL_SEED)
        totals: Dict[str, float] = {}
        was_training = m.training
        m.eval()
        try:
            for b in range(0, len(where), o.batch_size):
                chunk = where[b:b + o.batch_size]
                x = torch.stack([self.val_data.spectrogram(i)[s:s + c.frames] for i, s in chunk]).to(self.device)
                labels = torch.tensor([self.val_data.labels[i] for i, _ in chunk], device=self.device)
                noise = torch.randn(len(chunk), c.noise_dim, generator=generator, device=self.device)
                wrong = wrong_labels(labels, c.n_labels, generator) if c.n_labels > 1 else None
                loss_d, loss_g, scores = self._losses(x, labels, noise, wrong)
                for key, value in {"d_loss": float(loss_d), "g_loss": float(loss_g), **scores}.items():
                    totals[key] = totals.get(key, 0.0) + value * len(chunk)
        finally:
            m.train(was_training)
        means = {k: v / len(where) for k, v in totals.items()}
        result = GANValResult(means.pop("d_loss"), means.pop("g_loss"), means, len(where), c.frames)
        self.last_val, self._last_val_step = result, self.step
        self.logger.log(self.step, "val", result.to_dict())
        return result
