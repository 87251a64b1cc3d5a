"""`melnet-fast gan train` and `melnet-fast gan sample`: the cMelGAN baseline, with the flags of `train` and
`sample` where they apply, on the same data and labels, in run directories of the same layout."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from melnet_fast.cli import sample_cmd, train_cmd
from melnet_fast.cli.common import UserError, label_id, load_run_model, out_paths, pick_device
from melnet_fast.train.run_dir import RunDir

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
                    "one label). Running the same command again resumes the run in --out exactly where it stopped.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
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
                    "[T, F]) as `melnet-fast sample` does.", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    s.add_argument("--seconds", type=float, help="length of the audio (default: one clip of the model); rounded up "
                                                 "to whole clips, drawn independently and joined in time")
    s.add_argument("--temperature", type=float, default=1.0,
                   help="standard deviation of the noise (at 0 every label gives the same spectrogram: the label "
                        "multiplies the noise)")
    sample_cmd.add_output_args(s)
    s.set_defaults(func=run_sample)


def run_train(args) -> int:
    from melnet_fast.baselines.cmelgan import CMelGAN
    from melnet_fast.train import GANTrainer
    from melnet_fast.train.gan import resolve_options

    config, options, spec, resuming = train_cmd.setup_run(args, KIND, gan_preset_config)
    try:
        resolved = resolve_options(options, config)
    except ValueError as e:
        raise UserError(str(e)) from None
    run_dir = RunDir(args.out)
    print(f"{'resuming' if resuming else 'new'} cMelGAN run in {run_dir.root}: data {spec.source}", flush=True)
    train, val = train_cmd.load_data(spec, config, config.frames, run_dir)
    if not resuming:
        config = config.replace(n_labels=max(1, len(train.label_names)))
    torch.manual_seed(resolved.seed)
    model = CMelGAN(config)
    g, d = model.parameter_counts()
    print(f"  model: cMelGAN, {g + d:,} parameters (generator {g:,}, discriminator {d:,}), {config.n_labels} "
          f"label(s); {len(train)} training items, {len(val) if val is not None else 0} held out; clips of "
          f"{config.frames} frames x {config.n_mels} mels", flush=True)
    trainer = train_cmd.start_trainer(GANTrainer, model, train, val, options, run_dir, spec)
    print(f"  training on {trainer.device} for steps {trainer.step}..{resolved.steps}", flush=True)
    return train_cmd.fit_and_report(trainer, run_dir)


def run_sample(args) -> int:
    device = pick_device(args.device)
    doc, model, path = load_run_model(args.run, args.checkpoint, device, kind=KIND)
    c = model.config
    sample_cmd.check_sample_args(args)
    if args.seconds is None:
        clips = 1
    elif math.isfinite(args.seconds) and args.seconds > 0:
        clips = math.ceil(args.seconds / c.seconds - 1e-9)
    else:
        raise UserError(f"--seconds must be a positive number, got {args.seconds}")
    label_names = (doc.get("data") or {}).get("label_names") or []
    label = label_id(args.speaker, c.n_labels, label_names).to(device)
    wav, _, _ = out_paths(args.out or str(Path(args.run) / "samples" / f"sample-seed{args.seed}.wav"))
    print(f"generating {args.count} x {clips} clip(s) of {c.frames} frames x {c.n_mels} mels from {path} on {device}"
          + (f", label {label_names[int(label)]}" if label_names else ""), flush=True)
    generator = torch.Generator(device=device).manual_seed(args.seed)
    x = model.sample(args.count, clips * c.frames, label.expand(args.count), args.temperature, generator)
    for k, target in enumerate(sample_cmd.sample_paths(wav, args.count)):
        info = sample_cmd.write_sample(target, x[k], c, args, n_tiers=1, title="cMelGAN")
        print(f"{target}  (+ .png, .npy)  inversion spectral convergence {info['spectral_convergence']:.3f}")
    return 0
