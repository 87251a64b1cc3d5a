"""`melnet-fast train`: start a run, or resume the one in --out. The data, loop and resume handling here are shared
with `melnet-fast gan train` (melnet_fast.cli.gan_cmd)."""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import warnings
from pathlib import Path

import torch

from melnet_fast.cli.common import UserError, add_device_arg, parse_overrides, preset_config
from melnet_fast.train import SYNTHETIC, DataSpec, RunDir, TrainingDiverged, TrainOptions, build_datasets
from melnet_fast.train.run_dir import RunDirError

# CLI flag -> TrainOptions field, for flags that map one to one.
_OPTION_FLAGS = {"steps": "steps", "batch_size": "batch_size", "crop_frames": "crop_frames", "lr": "learning_rate",
                 "momentum": "momentum", "clip_grad_norm": "clip_grad_norm", "seed": "seed",
                 "log_every": "log_every", "val_every": "val_every", "checkpoint_every": "checkpoint_every",
                 "val_segments": "val_segments", "workers": "num_workers", "tier_assignment": "tier_assignment",
                 "device": "device"}


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train", help="train a model (or resume the run in --out)",
        description="Train MelNet. A new run needs --data and --preset; running the same command again resumes "
                    "the run in --out from its latest checkpoint, exactly where it stopped.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--preset", help="model preset: tiny, small, blizzard, maestro, voxceleb2, demo")
    p.add_argument("--tiers", type=int, nargs="+", metavar="G", help="tiers to train (default: all)")
    p.add_argument("--crop-frames", type=int, help="frames per training example (default: the preset's max)")
    p.add_argument("--lr", type=float, help="RMSProp learning rate (default: the preset's, 1e-4)")
    p.add_argument("--momentum", type=float, help="RMSProp momentum (default 0.9)")
    p.add_argument("--clip-grad-norm", type=float, help="per-tier gradient clipping, 0 = off (default 1)")
    p.add_argument("--set", action="append", dest="overrides", metavar="KEY=VALUE",
                   help="override a model config field, e.g. --set hidden_size=32 --set layers=3,2,2")
    p.add_argument("--conditional", action="store_true",
                   help="condition on the data's labels (genre of the synthetic data, CSV label / speaker / genre "
                        "column, or folder with --label-from-folder)")
    p.add_argument("--recompute", action="store_true", help="recompute activations in backward (less memory)")
    p.add_argument("--amp", choices=("auto", "on", "off"), default=None, help="bf16 autocast (auto: on CUDA)")
    p.add_argument("--tier-assignment", help="under torchrun: 'tier', 'data' or a spec like '0:1,2;1:3'")
    add_run_args(p)
    p.set_defaults(func=run)


def add_run_args(p: argparse.ArgumentParser) -> None:
    """The flags of a training run that every model's `train` command shares: run directory, data, loop."""
    p.add_argument("--data", help="a folder of audio (wav/flac/ogg), a CSV manifest with a 'path' column, or "
                                  "'synthetic' (the embedded synthetic music)")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory (created if needed)")
    p.add_argument("--steps", type=int, help="total training steps (default 1000)")
    p.add_argument("--batch-size", type=int, help="default: the preset's")
    p.add_argument("--max-minutes", type=float, help="stop after this much training time in this invocation")
    p.add_argument("--label-from-folder", action="store_true", help="label folder data by top-level subfolder")
    p.add_argument("--val-data", help="held-out data (default: a split of --data; synthetic: its own clips)")
    p.add_argument("--val-fraction", type=float, default=None, help="held-out share of folder data (0.1)")
    p.add_argument("--synthetic-clips", type=int, help="training clips of --data synthetic (64)")
    p.add_argument("--synthetic-val-clips", type=int, help="held-out clips of --data synthetic (8)")
    p.add_argument("--seed", type=int, help="seed of the initial weights and the data order (0)")
    p.add_argument("--log-every", type=int, help="steps between metrics.csv rows (10)")
    p.add_argument("--val-every", type=int, help="steps between validations (200)")
    p.add_argument("--val-segments", type=int, help="held-out segments per validation (64)")
    p.add_argument("--checkpoint-every", type=int, help="steps between checkpoints (200)")
    p.add_argument("--workers", type=int, help="DataLoader worker processes (0)")
    add_device_arg(p, default=None)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _options(args, base: TrainOptions) -> TrainOptions:
    changes = {field: getattr(args, flag) for flag, field in _OPTION_FLAGS.items()
               if getattr(args, flag, None) is not None}
    if getattr(args, "tiers", None) is not None:
        changes["tiers"] = tuple(args.tiers)
    if args.max_minutes is not None:
        changes["max_seconds"] = args.max_minutes * 60
    if getattr(args, "recompute", False):
        changes["recompute"] = True
    if getattr(args, "amp", None) is not None:
        changes["amp"] = {"auto": None, "on": True, "off": False}[args.amp]
    if args.no_progress:
        changes["progress"] = False
    try:
        return dataclasses.replace(base, **changes)
    except ValueError as e:
        raise UserError(str(e)) from None


def _same_source(a: str, b: str) -> bool:
    if SYNTHETIC in (a, b):
        return a == b
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def setup_run(args, kind: str = "melnet", make_config=preset_config):
    """(config, options, data spec, resuming) of a new run or of the run being resumed. kind: the model kind the
    command trains (config.json's model_kind); make_config(preset, overrides): its preset configs."""
    run = RunDir(args.out)
    overrides = parse_overrides(args.overrides)
    if run.exists():
        try:
            doc = run.read_config()
        except RunDirError as e:
            raise UserError(str(e)) from None
        if doc["model_kind"] != kind:
            command = "melnet-fast gan train" if doc["model_kind"] == "cmelgan" else "melnet-fast train"
            raise UserError(f"{args.out} holds a {doc['model_kind']} run: resume it with `{command}`, or choose "
                            f"another --out")
        config = doc["model"]
        if args.preset is not None:
            wanted = make_config(args.preset, overrides)
            if kind == "cmelgan":  # the labels come from the data
                wanted = wanted.replace(n_labels=config.n_labels)
            elif args.conditional:
                wanted = wanted.replace(n_speakers=config.n_speakers)
            if wanted != config:
                diff = {k: v for k, v in wanted.to_dict().items() if v != config.to_dict()[k]}
                raise UserError(f"{args.out} holds a run with a different model config (differs in "
                                f"{sorted(diff)}); choose another --out, or omit --preset/--set to resume it")
        elif overrides:
            raise UserError(f"--set changes the model, but {args.out} holds a run: choose another --out")
        spec = DataSpec.from_dict(doc["data"]) if doc.get("data") else None
        if spec is None:
            raise UserError(f"{args.out}/config.json does not say which data the run used")
        if args.data is not None and not _same_source(args.data, spec.source):
            raise UserError(f"{args.out} was trained on {spec.source}; resume it with that --data (or omit "
                            f"--data), or choose another --out")
        try:
            options = _options(args, TrainOptions.from_dict(doc["train"]))
        except (TypeError, ValueError) as e:
            raise UserError(f"{run.config}: invalid training options: {e}") from None
        return config, options, spec, True
    if args.data is None or args.preset is None:
        missing = " and ".join(f for f, v in (("--data", args.data), ("--preset", args.preset)) if v is None)
        raise UserError(f"a new run needs {missing} ({args.out} holds no run to resume)")
    if args.data != SYNTHETIC and not Path(args.data).exists():
        raise UserError(f"--data {args.data}: no such folder or CSV file (or pass --data synthetic)")
    if args.val_data not in (None, SYNTHETIC) and not Path(args.val_data).exists():
        raise UserError(f"--val-data {args.val_data}: no such folder or CSV file")
    config = make_config(args.preset, overrides)
    spec = DataSpec(args.data, val_source=args.val_data, label_from_folder=args.label_from_folder)
    if args.val_fraction is not None:
        spec.val_fraction = args.val_fraction
    if args.synthetic_clips is not None:
        spec.synthetic_clips = args.synthetic_clips
    if args.synthetic_val_clips is not None:
        spec.synthetic_val_clips = args.synthetic_val_clips
    return config, _options(args, TrainOptions()), spec.resolved(), False


def load_data(spec: DataSpec, config, crop_frames: int, run_dir: RunDir):
    """(training, held-out) datasets of a run, with unusable files reported; label names recorded in spec."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            train, val = build_datasets(spec, config, crop_frames, cache_dir=run_dir.cache)
        except (FileNotFoundError, ValueError) as e:
            raise UserError(f"--data {spec.source}: {e}") from None
    skipped = [w for w in caught if "skipping" in str(w.message)]
    if skipped:
        print(f"  {len(skipped)} unusable file(s) skipped, e.g. {skipped[0].message}", file=sys.stderr)
    spec.label_names = list(train.label_names) or None
    return train, val


def run(args) -> int:
    from melnet_fast.model import MelNet
    from melnet_fast.train import Trainer

    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun only rank 0 talks
        sys.stdout = open(os.devnull, "w")  # kept open for the life of the process

    config, options, spec, resuming = setup_run(args)
    try:
        resolved = options.resolved(config)
    except ValueError as e:
        raise UserError(str(e)) from None
    run_dir = RunDir(args.out)
    print(f"{'resuming' if resuming else 'new'} run in {run_dir.root}: data {spec.source}", flush=True)
    train, val = load_data(spec, config, resolved.crop_frames, run_dir)
    if args.conditional and not resuming:
        if not train.label_names:
            raise UserError("--conditional needs labelled data (synthetic genres, a CSV label column, or "
                            "--label-from-folder)")
        config = config.replace(n_speakers=len(train.label_names))
    torch.manual_seed(resolved.seed)
    model = MelNet(config)
    counts = model.parameter_counts()
    print(f"  model: {config.n_tiers} tiers, {sum(counts):,} parameters ({' / '.join(f'{c:,}' for c in counts)}); "
          f"{len(train)} training items, {len(val) if val is not None else 0} held out; "
          f"crops of {resolved.crop_frames} frames x {config.n_mels} mels", flush=True)
    trainer = start_trainer(Trainer, model, train, val, options, run_dir, spec)
    print(f"  training tiers {list(trainer.tiers)} on {trainer.device} for steps {trainer.step}..{resolved.steps}",
          flush=True)
    return fit_and_report(trainer, run_dir)


def start_trainer(trainer_class, model, train, val, options: TrainOptions, run_dir: RunDir, spec: DataSpec):
    """trainer_class(...) on the run directory (resuming it when it holds a checkpoint), errors as UserError."""
    try:
        return trainer_class(model, train, val, options, run_dir.root, data_spec=spec)
    except RunDirError as e:
        raise UserError(f"incompatible checkpoint in {run_dir.root}: {e}") from None
    except ValueError as e:
        raise UserError(str(e)) from None


def fit_and_report(trainer, run_dir: RunDir) -> int:
    """Run trainer.fit() and report the outcome; the exit status (1 diverged, 130 interrupted)."""
    try:
        summary = trainer.fit()
    except TrainingDiverged as e:
        print(f"melnet-fast: training stopped: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        where = trainer.last_checkpoint_step
        print(f"\ninterrupted; the last checkpoint is at step {where}: run the same command to resume"
              if where is not None else "\ninterrupted before the first checkpoint", file=sys.stderr)
        return 130
    finally:
        trainer.close()
    _report(summary, run_dir)
    return 0


def _report(summary, run_dir: RunDir) -> None:
    print(f"done: step {summary['step']} ({summary['seconds']:.0f} s, stopped by {summary['stopped']}); "
          f"{summary['skipped_steps']} skipped step(s)")
    val = summary["val"]
    if val is not None and "nll_nats" in val:
        nll, base = val["nll_nats"], val["baseline_nll_nats"]
        print(f"held-out NLL {nll:.4f} nats/element ({nll / math.log(2):.4f} bits); per-channel Gaussian baseline "
              f"{base:.4f} nats/element")
    print(f"checkpoints in {run_dir.checkpoints}; metrics in {run_dir.metrics_csv}; "
          f"tensorboard --logdir {run_dir.tensorboard}")
