"""`melnet-fast eval`: held-out NLL per tier and overall, next to the run's per-channel Gaussian baseline, and the
fidelity of generated clips to the data (melnet_fast.cli.sample_quality)."""

from __future__ import annotations

import json
import math
import sys
import warnings
from pathlib import Path

from melnet_fast.cli.common import (
    HelpFormatter,
    UserError,
    add_device_arg,
    frames_for,
    in_range,
    load_run_model,
    pick_device,
)
from melnet_fast.cli.sample_quality import draw_samples, sample_labels, sample_report
from melnet_fast.data import SkippedAudioWarning
from melnet_fast.train import (
    SYNTHETIC,
    ChannelGaussian,
    DataSpec,
    RunDir,
    build_datasets,
    build_eval_dataset,
    evaluate,
)
from melnet_fast.train.conditioning import mismatched_texts
from melnet_fast.train.evaluation import LN2

DEFAULT_SAMPLES = 4  # generated clips of the fidelity measures, for a model that needs no inputs to sample


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="NLL of a run's model on data, per tier, next to the baseline",
                       description="Score all of the data (each item cut into non-overlapping segments of up to the "
                                   "run's training example length) in nats and bits per element; then draw "
                                   "--samples clips and compare their per-channel mean and std and their share of "
                                   "values at the log floor with the data's; on labelled data, small label "
                                   "classifiers trained on the run's training data also give the samples' label "
                                   "accuracy (conditional models) and the Fréchet distance of their features to the "
                                   "data's segments. With --json the last line printed is "
                                   "one JSON object (nll_nats, nll_bits, baseline_nll_nats, tiers, skipped, ..., "
                                   "samples). Files that cannot be scored (unreadable, NaN samples, silent, too "
                                   "short, ...) are skipped and listed.",
                       formatter_class=HelpFormatter)
    p.add_argument("--run", required=True, metavar="RUN_DIR")
    p.add_argument("--data", required=True, help="a corpus (folder, CSV manifest, LJSpeech, VCTK, MAESTRO) or "
                                                 "'synthetic' (the run's held-out clips)")
    p.add_argument("--split", choices=("train", "validation", "test", "all"),
                   help="which entries of a corpus with splits to score (default: its held-out entries: test, "
                        "else validation)")
    p.add_argument("--json", action="store_true", help="end with one JSON line")
    p.add_argument("--checkpoint", choices=("best", "latest"), default="best")
    p.add_argument("--segment-frames", type=int, help="longest segment scored at once (default: the run's maximum "
                                                      "training example length)")
    p.add_argument("--max-segments", type=int, help="score only the first N segments")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--samples", type=int,
                   help=f"clips to generate for the fidelity measures, 0 = none (default: {DEFAULT_SAMPLES}; 0 for a "
                        f"model conditioned on text or features, which eval has no inputs for)")
    p.add_argument("--sample-seconds", type=float, default=4.0, help="length of each generated clip")
    p.add_argument("--temperature", type=float, default=1.0, help="of the generated clips")
    p.add_argument("--seed", type=int, default=0, help="of the generated clips")
    p.add_argument("--other-texts", action="store_true",
                   help="text models: score each utterance with another one's text of similar length (how much the "
                        "model uses the text: compare with the NLL of its own texts)")
    add_device_arg(p)
    p.set_defaults(func=run)


def _check_sample_args(args, c) -> None:
    needs_inputs = c.has_text or c.cond_dim
    if args.samples is None:
        args.samples = 0 if needs_inputs else DEFAULT_SAMPLES
    if args.samples < 0:
        raise UserError(f"--samples must be >= 0, got {args.samples}")
    if not (math.isfinite(args.temperature) and args.temperature >= 0):
        raise UserError(f"--temperature must be >= 0, got {args.temperature}")
    frames_for(args.sample_seconds, c)  # UserError unless a positive length
    if args.samples and needs_inputs:
        raise UserError(f"--samples {args.samples}: this model is conditioned on "
                        f"{'text' if c.has_text else 'features (cond_dim > 0)'}, which eval cannot make up for "
                        f"sampling: pass --samples 0")


def _sample_quality(args, model, data, spec: DataSpec, run_dir: RunDir, segment_frames: int) -> dict:
    """Draw args.samples clips and print / return their fidelity to every spectrogram of `data`; on labelled data
    also the label classifiers' measures (classifiers trained on the run's training data, judging windows of
    segment_frames frames against `data`'s segments)."""
    frames = frames_for(args.sample_seconds, model.config)
    generated = draw_samples(model, args.samples, frames, args.temperature, args.seed)
    judge = {}
    if len(data.label_names) >= 2:
        try:
            train, _ = build_datasets(spec, model.config, segment_frames, cache_dir=run_dir.cache)
        except (FileNotFoundError, ValueError) as e:
            print(f"warning: the run's training data {spec.source} cannot be read for the label classifiers ({e})",
                  file=sys.stderr)
        else:
            judge = dict(labels=sample_labels(model, args.samples), train=train, held_out=data,
                         frames=min(segment_frames, frames), seed=args.seed)
    measures, lines = sample_report(generated, [data.spectrogram(i) for i in range(len(data))], args.temperature,
                                    **judge)
    print("\n".join(lines))
    return measures


def run(args) -> int:
    in_range(args.batch_size, "--batch-size", 1, integer=True)
    in_range(args.max_segments, "--max-segments", 1, integer=True)
    in_range(args.segment_frames, "--segment-frames", 1, integer=True)
    device = pick_device(args.device)
    doc, model, path = load_run_model(args.run, args.checkpoint, device)
    c = model.config
    _check_sample_args(args, c)
    if args.other_texts and not c.has_text:
        raise UserError("--other-texts: this run's model is not conditioned on text")
    run_dir = RunDir(args.run)
    try:
        baseline = ChannelGaussian.load(run_dir.baseline)
    except (FileNotFoundError, ValueError) as e:
        raise UserError(f"{args.run}: no usable baseline.json ({e}); it is written when training starts") from None
    if baseline.n_mels != c.n_mels:
        raise UserError(f"{run_dir.baseline} has {baseline.n_mels} channels, the model {c.n_mels}")
    frames = args.segment_frames or (doc.get("train") or {}).get("crop_frames") or c.max_frames
    if frames % c.time_factor or frames < c.time_factor:
        raise UserError(f"--segment-frames must be a positive multiple of {c.time_factor}, got {frames}")
    if args.data != SYNTHETIC and not Path(args.data).exists():
        raise UserError(f"--data {args.data}: no such folder or CSV file")
    try:
        spec = DataSpec.from_dict(doc.get("data") or {"source": SYNTHETIC})
    except ValueError as e:
        raise UserError(f"{run_dir.config}: invalid data description: {e}") from None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            data = build_eval_dataset(args.data, spec, c, frames, cache_dir=run_dir.cache, split=args.split)
        except (FileNotFoundError, ValueError) as e:
            raise UserError(f"--data {args.data}: {e}") from None
    for w in caught:  # the skipped files are listed below, the rest (a damaged cache file...) said here
        if not issubclass(w.category, SkippedAudioWarning):
            print(f"warning: {w.message}", file=sys.stderr)
    skipped = getattr(getattr(data, "base", data), "skipped", {})  # a text model scores a Subset of it
    if c.n_speakers and data.label_names and spec.label_names and list(data.label_names) != spec.label_names:
        raise UserError(f"--data {args.data} has labels {data.label_names}, the run was trained on "
                        f"{spec.label_names}")
    try:
        texts = mismatched_texts(data.texts) if args.other_texts else None
    except ValueError as e:
        raise UserError(f"--other-texts: {e} (--data {args.data} has {len(data)} scorable item(s))") from None
    try:
        result = evaluate(model, data, frames, baseline=baseline, batch_size=args.batch_size,
                          max_segments=args.max_segments, texts=texts)
    except ValueError as e:
        raise UserError(f"--data {args.data}: {e}") from None
    d = result.to_dict()
    split = getattr(data, "split", None)
    print(f"{path}: {result.segments} segments of up to {frames} frames x {c.n_mels} mels from {args.data}"
          + (f" (split: {split})" if split else "")
          + (", each with another utterance's text" if args.other_texts else ""))
    print(f"{'tier':>6} {'elements':>10} {'nats/elem':>10} {'bits/elem':>10} {'baseline':>10} {'bits':>8}")
    for g, t in d["tiers"].items():
        print(f"{g:>6} {t['elements']:>10} {t['nll_nats']:>10.4f} {t['nll_bits']:>10.4f} "
              f"{t['baseline_nll_nats']:>10.4f} {t['baseline_nll_nats'] / LN2:>8.4f}")
    print(f"{'all':>6} {sum(result.elements.values()):>10} {d['nll_nats']:>10.4f} {d['nll_bits']:>10.4f} "
          f"{d['baseline_nll_nats']:>10.4f} {d['baseline_nll_bits']:>8.4f}")
    print(f"model - baseline: {d['nll_nats'] - d['baseline_nll_nats']:+.4f} nats/element (negative is better)")
    if args.samples:
        d["samples"] = _sample_quality(args, model, data, spec, run_dir, frames)
    for reason, paths in skipped.items():
        print(f"skipped {len(paths)} {reason} file(s): {', '.join(paths)}")
    if args.json:
        d.update(run=str(args.run), checkpoint=str(path), data=args.data, split=split, skipped=skipped)
        if c.has_text:
            d["texts"] = "other" if args.other_texts else "own"
        print(json.dumps(d))
    return 0
