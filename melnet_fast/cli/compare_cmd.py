"""`melnet-fast compare`: sample quality of trained runs (MelNet, cMelGAN) side by side on one labelled dataset."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from melnet_fast.cli.common import HelpFormatter, UserError, add_device_arg, in_range, pick_device


def add_parser(sub) -> None:
    p = sub.add_parser(
        "compare", help="label accuracy of samples, Fréchet distance, NLL and speed of several runs",
        description="Train small label classifiers on the data's training part and score them on the held-out part; "
                    "then for each run generate as many spectrograms as there are held-out segments (each "
                    "conditioned on one segment's label) and report the classifier's accuracy at recovering the "
                    "label and the Fréchet distance of its features to the held-out segments (the floor: training "
                    "crops against them), next to parameters, training kHz of audio per second and held-out NLL "
                    "(MelNet); accuracies and distances are means ± standard deviations over the classifiers. "
                    "A per-label, per-channel Gaussian is scored as a reference. With --json the last "
                    "line printed is one JSON object.", formatter_class=HelpFormatter)
    p.add_argument("--run", action="append", required=True, metavar="RUN_DIR", help="a run directory (repeat it)")
    p.add_argument("--data", help="folder, CSV manifest, or 'synthetic' (default: the first run's data)")
    p.add_argument("--json", action="store_true", help="end with one JSON line")
    p.add_argument("--frames", type=int, help="frames of every segment and sample (default: the first run's crop)")
    p.add_argument("--samples", type=int, help="samples per model (default: one per held-out segment)")
    p.add_argument("--max-segments", type=int, help="use only the first N held-out segments")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (cMelGAN: noise scale)")
    p.add_argument("--seed", type=int, default=0, help="seed of the classifier, the samples and the floor's crops")
    p.add_argument("--classifiers", type=int, default=3, help="label classifiers that judge (mean ± std over them)")
    p.add_argument("--classifier-steps", type=int, default=400, help="training steps of each label classifier")
    p.add_argument("--checkpoint", choices=("best", "latest"), default="best")
    p.add_argument("--no-reference", action="store_true", help="leave out the per-label channel Gaussian row")
    p.add_argument("--figure", metavar="OUT.png", help="also draw one sample per label of every model beside the "
                                                       "held-out data")
    add_device_arg(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from melnet_fast.evaluation import compare_runs
    from melnet_fast.train import SYNTHETIC
    from melnet_fast.train.preflight import writable_file
    from melnet_fast.train.run_dir import RunDirError

    for name, value in (("--frames", args.frames), ("--samples", args.samples), ("--max-segments", args.max_segments),
                        ("--classifiers", args.classifiers), ("--classifier-steps", args.classifier_steps)):
        in_range(value, name, 1, integer=True)
    in_range(args.temperature, "--temperature", 0)
    if args.data not in (None, SYNTHETIC) and not Path(args.data).exists():
        raise UserError(f"--data {args.data}: no such folder or CSV file")
    for run in args.run:
        if not Path(run, "config.json").is_file():
            raise UserError(f"--run {run}: no run directory there (no config.json)")
    if args.figure:
        writable_file(args.figure, "--figure")  # before minutes of work, not after
    try:
        result = compare_runs(args.run, args.data, frames=args.frames, samples=args.samples,
                              max_segments=args.max_segments, temperature=args.temperature, seed=args.seed,
                              device=pick_device(args.device), classifiers=args.classifiers,
                              classifier_steps=args.classifier_steps,
                              checkpoint=args.checkpoint, reference=not args.no_reference,
                              log=lambda text: print(text, file=sys.stderr, flush=True))
    except (RunDirError, FileNotFoundError, ValueError) as e:
        raise UserError(str(e)) from None
    print(f"{result.data}: {result.reference_segments} held-out segments of {result.frames} frames x "
          f"{result.n_mels} mels; labels {', '.join(result.label_names) or '(none)'}; temperature "
          f"{result.temperature:g}, seed {result.seed}")
    print(result.table())
    dims = result.feature_dim
    if result.reference_segments < 2 * dims:
        print(f"warning: {result.reference_segments} held-out segments for {dims}-dimensional classifier features: "
              f"the Fréchet distances are noisy (compare them only with each other and with the floor); more "
              f"held-out data (e.g. --synthetic-val-clips when training) steadies them", file=sys.stderr)
    for m in result.models:
        if m.nonfinite:
            print(f"warning: {m.name}: {m.nonfinite} generated values were NaN or infinite (clamped to the audible "
                  f"range before scoring)", file=sys.stderr)
    if args.figure:
        from melnet_fast import audio
        from melnet_fast.plots import plot_grid
        from melnet_fast.train.run_dir import RunDir

        settings = audio.audio_settings(RunDir(args.run[0]).read_config()["model"])
        plot_grid(args.figure, result.examples, result.label_names or ["sample"], settings)
        print(f"figure: {args.figure}")
    if args.json:
        print(json.dumps(result.to_dict()))
    return 0
