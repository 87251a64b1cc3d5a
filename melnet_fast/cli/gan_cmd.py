"""`melnet-fast gan train` and `melnet-fast gan sample`: the cMelGAN baseline, with the flags of `train` and
`sample` where they apply, on the same data and labels, in run directories of the same layout."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from melnet_fast.cli import sample_cmd, train_cmd
from melnet_fast.cli.common import (
    HelpFormatter,
    UserError,
    in_range,
    label_id,
    load_run_model,
    out_paths,
    pick_device,
)
from melnet_fast.train import RunDir, TrainOptions, preflight

KIND = "cmelgan"


def gan_preset_config(name: str, overrides=None):
    """CMelGANConfig of a preset with overrides; UserError when unknown or invalid."""
    from melnet_fast.baselines.cmelgan import PRESETS, CMelGANConfig

    if name not in PRESETS:
        raise UserError(f"unknown cMelGAN preset {name!r}; presets: {', '.join(PRESETS)}")
    try:
        return CMelGANConfig.preset(name, **(overrides or {}))
    except (TypeError, ValueError) as e:
        raise UserError(f"invalid config: {e}") from None


def add_parser(sub) -> None:
    p = sub.add_parser("gan", help="the cMelGAN baseline (a genre-conditional GAN): train, sample",
                       description="cMelGAN, the fully convolutional, label-conditional GAN of the student report, "
                                   "as a baseline beside MelNet: `gan train` and `gan sample` take the flags of "
                                   "`train` and `sample`; `melnet-fast compare` scores both kinds of run.")
    commands = p.add_subparsers(dest="gan_command", required=True, metavar="COMMAND")
    t = commands.add_parser(
        "train", help="train a cMelGAN (or resume the run in --out)",
        description="Train cMelGAN on labelled data (synthetic genres, CSV labels, folder labels; unlabelled data is "
                    "one label), on whole clips of the model's length (shorter files are skipped). Running the same "
                    "command again resumes the run in --out exactly where it stopped. SIGTERM or Ctrl-C finish the "
                    "current step, write a checkpoint and exit with status 128 + the signal number.",
        formatter_class=HelpFormatter)
    t.add_argument("--preset", help="cMelGAN preset: tiny, demo (MelNet demo's spectrograms), small, large (the "
                                    "report's 15.3M / 25.2M models)")
    t.add_argument("--lr", type=float, help="Adam learning rate of both networks (default: the preset's)")
    t.add_argument("--clip-grad-norm", type=float, help="gradient clipping per network, 0 = off (default 1)")
    t.add_argument("--set", action="append", dest="overrides", metavar="KEY=VALUE",
                   help="override a model config field, e.g. --set noise_dim=32 --set fine_kernels=3,7")
    t.add_argument("--conditional", action="store_true",
                   help="accepted for symmetry with `train`: cMelGAN is always conditioned on the data's labels")
    train_cmd.add_run_args(t)
    t.set_defaults(func=run_train)

    s = commands.add_parser(
        "sample", help="generate audio from a trained cMelGAN run",
        description="Generate spectrograms and write OUT.wav, OUT.png and OUT.npy (the normalised log-mel values, "
                    "[T, F]) as `melnet-fast sample` does.", formatter_class=HelpFormatter)
    s.add_argument("--seconds", type=float, help="length of the audio (default: one clip of the model); rounded up "
                                                 "to whole clips, drawn independently and joined in time")
    s.add_argument("--temperature", type=float, default=1.0,
                   help="standard deviation of the noise (at 0 every label gives the same spectrogram: the label "
                        "multiplies the noise)")
    sample_cmd.add_output_args(s)
    s.set_defaults(func=run_sample)


class GANKind(train_cmd.RunKind):
    """cMelGAN runs for the shared training command (train_cmd.train_run)."""

    name = KIND
    command = "melnet-fast gan train"

    def make_config(self, preset: str, overrides):
        return gan_preset_config(preset, overrides)

    def default_options(self, preset: str) -> TrainOptions:
        return TrainOptions()  # the presets hold batch size and learning rate

    def as_stored(self, wanted, stored, args):
        return wanted.replace(n_labels=stored.n_labels)  # the labels come from the data

    def resolve(self, options: TrainOptions, config) -> TrainOptions:
        from melnet_fast.train.gan import resolve_options

        return resolve_options(options, config)

    def check_resources(self, config, resolved: TrainOptions, run: RunDir) -> None:
        from melnet_fast.baselines.cmelgan import CMelGAN

        with torch.device("meta"):  # counts the parameters without allocating them
            parameters = sum(CMelGAN(config).parameter_counts())
        preflight.free_disk(run.root, preflight.checkpoint_bytes(parameters), "--out", "one checkpoint")

    def build(self, args, config, options, resolved, spec, resuming, run):
        from melnet_fast.baselines.cmelgan import CMelGAN
        from melnet_fast.train import GANTrainer

        train, val = train_cmd.read_datasets(spec, config, config.frames, run, min_frames=config.frames)
        if not resuming:
            config = config.replace(n_labels=max(1, len(train.label_names)))
        torch.manual_seed(resolved.seed)
        model = CMelGAN(config)
        g, d = model.parameter_counts()
        print(f"  model: cMelGAN, {g + d:,} parameters (generator {g:,}, discriminator {d:,}), {config.n_labels} "
              f"label(s); {len(train)} training items, {len(val) if val is not None else 0} held out; clips of "
              f"{config.frames} frames x {config.n_mels} mels", flush=True)
        trainer = train_cmd.start_trainer(GANTrainer, model, train, val, options, run, spec)
        print(f"  training on {trainer.device} for steps {trainer.step}..{resolved.steps}", flush=True)
        return trainer


def run_train(args) -> int:
    return train_cmd.train_run(args, GANKind())


def run_sample(args) -> int:
    sample_cmd.check_sample_args(args)
    in_range(args.seconds, "--seconds", 0, low_open=True)
    device = pick_device(args.device)
    doc, model, path = load_run_model(args.run, args.checkpoint, device, kind=KIND)
    c = model.config
    clips = 1 if args.seconds is None else math.ceil(args.seconds / c.seconds - 1e-9)
    sample_cmd.check_length(clips * c.frames, c)
    sample_cmd.check_inversion_memory(c, clips * c.frames)
    label_names = (doc.get("data") or {}).get("label_names") or []
    label = label_id(args.speaker, c.n_labels, label_names).to(device)
    run_dir = RunDir(args.run)
    wav, _, _ = out_paths(args.out or str(run_dir.samples / f"sample-seed{args.seed}.wav"))
    lock = sample_cmd.lock_if_inside(run_dir, wav, "melnet-fast gan sample")
    try:
        return _sample(args, model, path, label, label_names, clips, wav)
    finally:
        if lock is not None:
            lock.release()


def _sample(args, model, path, label, label_names, clips: int, wav: Path) -> int:
    c, device = model.config, label.device
    print(f"generating {args.count} x {clips} clip(s) of {c.frames} frames x {c.n_mels} mels from {path} on {device}"
          + (f", label {label_names[int(label)]}" if label_names else ""), flush=True)
    generator = torch.Generator(device=device).manual_seed(args.seed)
    x = model.sample(args.count, clips * c.frames, label.expand(args.count), args.temperature, generator)
    for k, target in enumerate(sample_cmd.sample_paths(wav, args.count)):
        info = sample_cmd.write_sample(target, x[k], c, args, n_tiers=1, title="cMelGAN")
        print(f"{target}  (+ .png, .npy)  inversion spectral convergence {info['spectral_convergence']:.3f}")
    return 0
