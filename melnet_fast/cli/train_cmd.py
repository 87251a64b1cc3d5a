"""`melnet-fast train`: start a run, or resume the one in --out.

Everything a user can get wrong is checked before the data is read: flags in range, --out a writable directory
that no other process is writing (its lock), the run resumable, the device there, the model's memory and its
checkpoints' disk space available. SIGTERM / SIGINT end training after the current step with a checkpoint.
The flags, setup, resume and stop handling here are shared with `melnet-fast gan train` (melnet_fast.cli.gan_cmd)
through RunKind.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import signal
import sys
import warnings
from collections import Counter
from pathlib import Path

import torch

from melnet_fast.cli.common import (
    HelpFormatter,
    UserError,
    add_device_arg,
    in_range,
    parse_overrides,
    pick_device,
    preset_config,
    show_warnings,
)
from melnet_fast.train import SYNTHETIC, DataSpec, RunDir, TrainOptions, build_datasets, preflight
from melnet_fast.train.metrics import show
from melnet_fast.train.run_dir import RunDirError
from melnet_fast.train.stop_signals import SignalStop, signal_name

# CLI flag -> TrainOptions field, for flags that map one to one.
_OPTION_FLAGS = {"steps": "steps", "batch_size": "batch_size", "crop_frames": "crop_frames", "lr": "learning_rate",
                 "lr_cooldown": "lr_cooldown",
                 "momentum": "momentum", "clip_grad_norm": "clip_grad_norm", "seed": "seed",
                 "log_every": "log_every", "val_every": "val_every", "checkpoint_every": "checkpoint_every",
                 "val_segments": "val_segments", "workers": "num_workers", "tier_assignment": "tier_assignment",
                 "device": "device", "bucket_batches": "bucket_batches"}


_OPT, _DATA = TrainOptions(), DataSpec(SYNTHETIC)  # the defaults --help shows


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train", help="train a model (or resume the run in --out)",
        description="Train MelNet. A new run needs --data and --preset; running the same command again resumes "
                    "the run in --out from its latest checkpoint, exactly where it stopped. SIGTERM or Ctrl-C "
                    "finish the current step, write a checkpoint and exit with status 128 + the signal number; "
                    "a second one stops at once.",
        formatter_class=HelpFormatter)
    p.add_argument("--preset", help="model preset: tiny, small, blizzard, maestro, voxceleb2, demo; text-to-speech "
                                    "(a corpus with texts): tts_tiny, tts_small, tts_blizzard")
    p.add_argument("--tiers", type=int, nargs="+", metavar="G", help="tiers to train (default: all)")
    p.add_argument("--crop-frames", type=int, help="maximum frames per training example: longer ones are cropped "
                                                   "at a random offset, shorter ones padded (default: the preset's "
                                                   "max_seconds)")
    p.add_argument("--bucket-batches", type=int, help="batch examples of similar length within pools of this many "
                                                      f"batches, 0 = random batches (default {_OPT.bucket_batches})")
    p.add_argument("--lr", type=float, help="RMSProp learning rate (default: the preset's, 1e-4)")
    p.add_argument("--lr-cooldown", type=float, metavar="FRACTION",
                   help="train the last FRACTION of the run (of --steps or --max-minutes) at a tenth of the "
                        "learning rate (default 0: constant)")
    p.add_argument("--momentum", type=float, help="RMSProp momentum (default 0.9)")
    p.add_argument("--clip-grad-norm", type=float,
                   help=f"per-tier gradient clipping, 0 = off (default {_OPT.clip_grad_norm:g})")
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
    p.add_argument("--data", help="a corpus: a folder of audio (wav/flac/ogg), a CSV manifest (path, and optional "
                                  "label, speaker, text, split, start, end columns), LJSpeech (metadata.csv + "
                                  "wavs/), VCTK-style speaker folders, MAESTRO (maestro-v*.csv); or 'synthetic' (the "
                                  "embedded synthetic music)")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory (created if needed)")
    p.add_argument("--restart", action="store_true",
                   help="start the run in --out over from step 0: its files move to RUN_DIR/previous/<time>/; "
                        "model, data and options as given, else as the old run had them")
    p.add_argument("--steps", type=int, help=f"total training steps (default {_OPT.steps})")
    p.add_argument("--batch-size", type=int, help="default: the preset's")
    p.add_argument("--max-minutes", type=float, help="stop after this much training time in this invocation")
    p.add_argument("--label-from-folder", action="store_true", help="label folder data by top-level subfolder")
    p.add_argument("--val-data", help="held-out data (default: the validation split of --data, or a random "
                                      "share of it; synthetic: its own clips)")
    p.add_argument("--val-fraction", type=float, default=None,
                   help=f"held-out share of folder data (default {_DATA.val_fraction:g})")
    p.add_argument("--synthetic-clips", type=int,
                   help=f"training clips of --data synthetic (default {_DATA.synthetic_clips})")
    p.add_argument("--synthetic-val-clips", type=int,
                   help=f"held-out clips of --data synthetic (default {_DATA.synthetic_val_clips})")
    p.add_argument("--seed", type=int, help=f"seed of the initial weights and the data order (default {_OPT.seed})")
    p.add_argument("--log-every", type=int, help=f"steps between metrics.csv rows (default {_OPT.log_every})")
    p.add_argument("--val-every", type=int, help=f"steps between validations (default {_OPT.val_every})")
    p.add_argument("--val-segments", type=int, help=f"held-out segments per validation (default {_OPT.val_segments})")
    p.add_argument("--checkpoint-every", type=int, help=f"steps between checkpoints (default {_OPT.checkpoint_every})")
    p.add_argument("--workers", type=int, help=f"DataLoader worker processes (default {_OPT.num_workers})")
    add_device_arg(p, default=None)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _flag(message: str) -> str:
    """A TrainOptions / DataSpec message ("batch_size must be ...") with the flag that sets the field."""
    for flag, field in _OPTION_FLAGS.items():
        if message.startswith(f"{field} "):
            return f"--{flag.replace('_', '-')}: {message}"
    if message.startswith("max_seconds "):
        return f"--max-minutes: {message}"
    return message


def _options(args, base: TrainOptions) -> TrainOptions:
    changes = {field: getattr(args, flag) for flag, field in _OPTION_FLAGS.items()
               if getattr(args, flag, None) is not None}  # a model's command has the flags that apply to it
    if getattr(args, "tiers", None) is not None:
        changes["tiers"] = tuple(args.tiers)
    if args.max_minutes is not None:
        changes["max_seconds"] = in_range(args.max_minutes, "--max-minutes", 0) * 60
    if getattr(args, "recompute", False):
        changes["recompute"] = True
    if getattr(args, "amp", None) is not None:
        changes["amp"] = {"auto": None, "on": True, "off": False}[args.amp]
    if args.no_progress:
        changes["progress"] = False
    try:
        return dataclasses.replace(base, **changes)
    except ValueError as e:
        raise UserError(_flag(str(e))) from None


def _check_flags(args) -> None:
    """The flags' own ranges, before anything is read or created."""
    in_range(args.val_fraction, "--val-fraction", 0, 1, high_open=True)
    in_range(args.synthetic_clips, "--synthetic-clips", 1, integer=True)
    in_range(args.synthetic_val_clips, "--synthetic-val-clips", 1, integer=True)
    pick_device(_options(args, TrainOptions()).device)


def _same_source(a: str, b: str) -> bool:
    if SYNTHETIC in (a, b):
        return a == b
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


class RunKind:
    """What the shared training command needs to know of the model it trains. This class is MelNet's (`melnet-fast
    train`); gan_cmd has cMelGAN's. name: config.json's model_kind; command: the command that trains such runs."""

    name = "melnet"
    command = "melnet-fast train"

    def make_config(self, preset: str, overrides):
        """The config of a preset with --set overrides (UserError when unknown or invalid)."""
        return preset_config(preset, overrides)

    def default_options(self, preset: str) -> TrainOptions:
        """Default options of a new run: the demo preset trains with the demo's recipe (crops, learning-rate
        cool-down), without which its samples wander off the data."""
        from melnet_fast.cli.demo import DEMO_CROP_FRAMES, DEMO_LR_COOLDOWN, DEMO_PRESET

        if preset == DEMO_PRESET:
            return TrainOptions(crop_frames=DEMO_CROP_FRAMES, lr_cooldown=DEMO_LR_COOLDOWN)
        return TrainOptions()

    def as_stored(self, wanted, stored, args):
        """`wanted` (the config --preset / --set ask for) with the fields that the data set when the run started
        taken from `stored`, so that the two compare equal when the run is the one asked for."""
        return wanted.replace(n_speakers=stored.n_speakers) if args.conditional else wanted

    def resolve(self, options: TrainOptions, config) -> TrainOptions:
        """options with the config's defaults filled in (ValueError when they do not fit the config)."""
        return options.resolved(config)

    def check_resources(self, config, resolved: TrainOptions, run: RunDir) -> None:
        """One training step and one set of checkpoints fit in the device's memory and on the disk."""
        need = preflight.training_bytes(config, resolved.batch_size, resolved.crop_frames, resolved.tiers,
                                        resolved.recompute)
        preflight.enough_memory(need, pick_device(resolved.device), "--batch-size / --crop-frames",
                                f"training {config.n_tiers} tiers on batches of {resolved.batch_size} x "
                                f"{resolved.crop_frames} frames")
        preflight.free_disk(run.root, preflight.checkpoint_bytes(sum(config.parameter_counts())), "--out",
                            "one checkpoint")

    def build(self, args, config, options: TrainOptions, resolved: TrainOptions, spec: DataSpec, resuming: bool,
              run: RunDir):
        """The run's trainer: data read, model built (and both described), trainer started on the run."""
        from melnet_fast.model import MelNet
        from melnet_fast.train import Trainer

        train, val = read_datasets(spec, config, resolved.crop_frames, run)
        if args.conditional and not resuming:
            if not train.label_names:
                raise UserError("--conditional needs labelled data (synthetic genres, a CSV label column, or "
                                "--label-from-folder)")
            config = config.replace(n_speakers=len(train.label_names))
        torch.manual_seed(resolved.seed)
        model = MelNet(config)
        counts = model.parameter_counts()
        print(f"  model: {config.n_tiers} tiers, {sum(counts):,} parameters "
              f"({' / '.join(f'{c:,}' for c in counts)}); {len(train)} training items, "
              f"{len(val) if val is not None else 0} held out; examples of up to {resolved.crop_frames} "
              f"frames x {config.n_mels} mels", flush=True)
        trainer = start_trainer(Trainer, model, train, val, options, run, spec)
        print(f"  training tiers {list(trainer.tiers)} on {trainer.device} for steps "
              f"{trainer.step}..{resolved.steps}", flush=True)
        return trainer


MELNET = RunKind()
_COMMANDS = {"melnet": "melnet-fast train", "cmelgan": "melnet-fast gan train"}  # model_kind -> its command


def _resume_setup(args, run: RunDir, doc, overrides, kind: RunKind):
    """(config, options, data spec) of the run in --out, as this command continues it."""
    config = doc["model"]
    if args.preset is not None:
        wanted = kind.as_stored(kind.make_config(args.preset, overrides), config, args)
        if wanted != config:
            diff = {k: v for k, v in wanted.to_dict().items() if v != config.to_dict()[k]}
            raise UserError(f"{args.out} holds a run with a different model config (differs in {sorted(diff)}); "
                            f"choose another --out, add --restart to start over here, or omit --preset/--set to "
                            f"resume it")
    elif overrides:
        raise UserError(f"--set changes the model, but {args.out} holds a run: choose another --out, or add "
                        f"--restart to start over here")
    spec = _stored_spec(args, doc)
    if args.data is not None and not _same_source(args.data, spec.source):
        raise UserError(f"{args.out} was trained on {spec.source}; resume it with that --data (or omit --data), "
                        f"add --restart to start over here, or choose another --out")
    return config, _options(args, _stored_options(run, doc)), spec


def _stored_spec(args, doc) -> DataSpec:
    if not doc.get("data"):
        raise UserError(f"{args.out}/config.json does not say which data the run used")
    try:
        return DataSpec.from_dict(doc["data"])
    except (TypeError, ValueError) as e:
        raise UserError(f"{args.out}/config.json: invalid data description: {e}") from None


def _stored_options(run: RunDir, doc) -> TrainOptions:
    try:
        return TrainOptions.from_dict(doc["train"])
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"{run.config}: invalid training options: {e}") from None


def _new_setup(args, overrides, kind: RunKind, old=None):
    """(config, options, data spec) of a new run; `old`: the config doc of a run being restarted, whose
    settings stand in for the flags not given."""
    if old is not None:
        if args.preset is not None:
            config = kind.make_config(args.preset, overrides)
        else:
            try:
                config = old["model"].replace(**overrides)
            except (TypeError, ValueError) as e:
                raise UserError(f"invalid --set: {e}") from None
        old_spec = _stored_spec(args, old)
        base = TrainOptions.from_dict(old["train"]) if old.get("train") else TrainOptions()
        spec = dataclasses.replace(old_spec, label_names=None, source=args.data or old_spec.source)
        if args.val_data is not None:
            spec.val_source = args.val_data
    else:
        if args.data is None or args.preset is None:
            missing = " and ".join(f for f, v in (("--data", args.data), ("--preset", args.preset)) if v is None)
            raise UserError(f"a new run needs {missing} ({args.out} holds no run to resume)")
        config = kind.make_config(args.preset, overrides)
        spec = DataSpec(args.data, val_source=args.val_data, label_from_folder=args.label_from_folder)
        base = kind.default_options(args.preset)
    for source, flag in ((spec.source, "--data"), (spec.val_source, "--val-data")):
        if source not in (None, SYNTHETIC) and not Path(source).exists():
            raise UserError(f"{flag} {source}: no such folder or CSV file (or pass {flag} synthetic)")
    for flag, field in (("val_fraction", "val_fraction"), ("synthetic_clips", "synthetic_clips"),
                        ("synthetic_val_clips", "synthetic_val_clips")):
        if getattr(args, flag) is not None:
            setattr(spec, field, getattr(args, flag))
    return config, _options(args, base), spec.resolved()


def _setup(args, run: RunDir, say, kind: RunKind):
    """(config, options, data spec, resuming) of a new run or of the run being resumed; with --restart the
    old run's files are moved aside first. UserError when --out holds a run of another model kind."""
    overrides = parse_overrides(args.overrides)
    if not run.exists():
        if args.restart and run.checkpoint_files():
            moved = run.set_aside()
            say(f"moved the files of the run in {run.root} (it had no config.json) to {moved}")
        return (*_new_setup(args, overrides, kind), False)
    try:
        doc = run.read_config()
    except RunDirError as e:
        if not args.restart:
            raise UserError(f"{e}; add --restart to start over here (the old files are kept aside)") from None
        doc = None
    if doc is not None and doc["model_kind"] != kind.name:
        raise UserError(f"{args.out} holds a {doc['model_kind']} run: resume it with "
                        f"`{_COMMANDS[doc['model_kind']]}`, or choose another --out")
    if not args.restart:
        return (*_resume_setup(args, run, doc, overrides, kind), True)
    setup = _new_setup(args, overrides, kind, doc)
    moved = run.set_aside()
    say(f"--restart: moved the old run's files to {moved}")
    return (*setup, False)


def _resume_step(args, run: RunDir, options: TrainOptions):
    """(the step the run resumes at, None when it has no checkpoint yet; whether it has reached --steps and
    validated there, so nothing is left to do). UserError when it cannot resume or --steps is below its step."""
    try:
        state = run.training_state(peek=True)
    except RunDirError as e:
        raise UserError(str(e)) from None
    if state is None:
        return None, False
    step = int(state["step"])
    if options.steps < step:
        raise UserError(f"--steps {options.steps} is below the step the run in {args.out} has reached ({step}); "
                        f"pass --steps above {step} to train further")
    return step, step == options.steps and state.get("val_step") == step


def start_trainer(trainer_class, model, train, val, options: TrainOptions, run: RunDir, spec: DataSpec):
    """trainer_class(...) on the run directory (resuming it when it holds a checkpoint), errors as UserError."""
    try:
        return trainer_class(model, train, val, options, run.root, data_spec=spec)
    except RunDirError as e:
        raise UserError(str(e)) from None
    except ValueError as e:
        raise UserError(_flag(str(e))) from None


def run(args) -> int:
    return train_run(args, MELNET)


def train_run(args, kind: RunKind) -> int:
    """The training command of a model kind: flags checked, --out claimed (its lock) and set up (new, resumed or
    restarted), resources checked, then kind.build's trainer fitted until done, out of time or stopped by a
    signal (with a checkpoint). The exit status: 0, 1 (diverged, or the run directory could not be written),
    128 + the signal's number."""
    from melnet_fast.train import TrainingDiverged, TrainingIOError

    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun only rank 0 talks
        sys.stdout = open(os.devnull, "w")  # kept open for the life of the process
    main_rank = int(os.environ.get("RANK", "0")) == 0
    _check_flags(args)
    run_dir = RunDir(args.out)
    with SignalStop(say=show) as stop:
        lock = run_dir.claim(kind.command, say=show) if main_rank else None
        try:
            try:
                config, options, spec, resuming = _setup(args, run_dir, show, kind)
                resolved = kind.resolve(options, config)
            except ValueError as e:
                raise UserError(_flag(str(e))) from None
            step, finished = _resume_step(args, run_dir, options) if resuming else (None, False)
            if finished:
                print(f"the run in {run_dir.root} has reached --steps {options.steps} already: nothing to train "
                      f"(pass a larger --steps to train further)")
                return 0
            kind.check_resources(config, resolved, run_dir)
            if not resuming:
                head = f"new run in {run_dir.root}"
            elif step is not None:
                head = f"resuming run in {run_dir.root} at step {step}"
            else:
                head = f"the run in {run_dir.root} wrote no checkpoint before it stopped: starting it again at step 0"
            print(f"{head}; data {spec.source}", flush=True)
            trainer = kind.build(args, config, options, resolved, spec, resuming, run_dir)
            try:
                with stop.deferring():
                    summary = trainer.fit(stop=stop)
            except TrainingDiverged as e:
                print(f"{kind.command}: training stopped: {e}", file=sys.stderr)
                return 1
            except TrainingIOError as e:
                print(f"{kind.command}: error: {e}; fix that (free space, permissions) and run the same command "
                      f"to resume", file=sys.stderr)
                return 1
            finally:
                trainer.close()
        finally:
            if lock is not None:
                lock.release()
    if summary["stopped"] == "signal":
        where = (f"checkpoint of step {summary['checkpoint_step']} in {run_dir.latest_state}"
                 if summary["checkpoint_step"] is not None else "no checkpoint could be written")
        why = signal_name(stop.requested) if stop.requested is not None else "a signal to another rank"
        print(f"{kind.command}: stopped by {why} after step {summary['step']}; {where}; run the same command "
              f"to resume", file=sys.stderr)
        return stop.exit_status or 128 + signal.SIGTERM
    _report(summary, run_dir)
    return 0


def read_datasets(spec: DataSpec, config, crop_frames: int, run_dir: RunDir, min_frames: int | None = None):
    """(train, held-out) datasets (see build_datasets), their label names recorded in spec. Their warnings are
    shown (the first SHOWN_WARNINGS), and the files skipped summed up by reason."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            train, val = build_datasets(spec, config, crop_frames, cache_dir=run_dir.cache, min_frames=min_frames)
        except (FileNotFoundError, ValueError) as e:
            raise UserError(f"--data {spec.source}: {e}") from None
    show_warnings(caught)
    bases = {id(d): d for d in (getattr(d, "base", d) for d in (train, val) if d is not None)}
    reasons = Counter({r: len(p) for d in bases.values() for r, p in getattr(d, "skipped", {}).items()})
    if reasons:
        print(f"  skipped {sum(reasons.values())} unusable file(s): "
              f"{', '.join(f'{n} {r}' for r, n in reasons.items())}", file=sys.stderr)
    spec.label_names = list(train.label_names) or None
    return train, val


def _report(summary, run_dir: RunDir) -> None:
    print(f"done: step {summary['step']} ({summary['seconds']:.0f} s, stopped by {summary['stopped']}); "
          f"{summary['skipped_steps']} skipped step(s)")
    if summary.get("elements_per_s"):
        padded = summary.get("padded_share")
        print(f"throughput: {summary['elements_per_s']:,.0f} elements/s = {summary['audio_seconds_per_s']:.3f} s of "
              f"audio per s ({summary['audio_khz']:.2f} kHz of audio samples per s)"
              + (f"; {padded:.1%} of the batched elements were padding" if padded is not None else ""))
    val = summary["val"]
    if val is not None and "nll_nats" in val:  # a likelihood model's validation
        nll, base = val["nll_nats"], val["baseline_nll_nats"]
        print(f"held-out NLL {nll:.4f} nats/element ({nll / math.log(2):.4f} bits); per-channel Gaussian baseline "
              f"{base:.4f} nats/element")
    print(f"checkpoints in {run_dir.checkpoints}; metrics in {run_dir.metrics_csv}; "
          f"tensorboard --logdir {run_dir.tensorboard}")
