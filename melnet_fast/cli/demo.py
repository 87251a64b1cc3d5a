"""`melnet-fast demo`: train a small MelNet on the CPU in a few minutes, then score it on held-out clips against
the per-channel Gaussian baseline, sample audio, and plot real vs generated.

Data: the embedded synthetic music (default, no dependency), or with --data music the real music corpus of
`melnet-fast data music` (made on the first run, held out by piece; needs music21 and FluidSynth).
The "demo" preset is the "tiny" preset widened to a model that learns the synthetic music's structure within
the time budget on two CPU cores (the paper presets are untouched).
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import torch

from melnet_fast.cli.common import HelpFormatter
from melnet_fast.config import MelNetConfig

DEMO_PRESET = "demo"
# Overrides of the "tiny" preset (see the module docstring; the figures in the README come from this).
DEMO_OVERRIDES = dict(n_mels=32, hidden_size=16, layers=(3, 2, 2), n_mixtures=4, feature_layers=1,
                      sample_rate=16000, hop_length=256, max_seconds=4.0, batch_size=8, learning_rate=1e-3)
# Training crops of 1 s and the last 20% of the budget at a tenth of the learning rate: with 0.5 s crops and a
# constant rate, samples of 4 s wandered off the data's level and envelope (a model good one step ahead, not
# over seconds of its own draws).
DEMO_CROP_FRAMES = 64
DEMO_LR_COOLDOWN = 0.2
DEMO_TRAIN_MINUTES = 2.5  # the default time budget of the training steps
DEMO_TRAIN_CLIPS, DEMO_VAL_CLIPS, DEMO_CLIP_SECONDS = 64, 8, 4.0
DEMO_MUSIC = dict(pieces_per_label=6, clip_seconds=4.0, max_piece_seconds=40.0)  # the --data music corpus


def demo_config(**overrides) -> MelNetConfig:
    """The demo's MelNetConfig (the "tiny" preset with DEMO_OVERRIDES, then `overrides`)."""
    return MelNetConfig.preset("tiny", **{**DEMO_OVERRIDES, **overrides})


def demo_options(config: MelNetConfig, n_train: int, steps: int, max_seconds: float | None, seed: int = 0,
                 progress: bool = False):
    """The demo's TrainOptions (its crop, schedule, validation and checkpoint intervals) for n_train training
    examples; also what benchmarks/bench_demo_steps.py times."""
    from melnet_fast.train import TrainOptions

    return TrainOptions(steps=steps, max_seconds=max_seconds, crop_frames=DEMO_CROP_FRAMES,
                        lr_cooldown=DEMO_LR_COOLDOWN, batch_size=min(config.batch_size, n_train), seed=seed,
                        log_every=10, val_every=100, val_segments=32, checkpoint_every=100, progress=progress)


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="train on synthetic music for a few minutes, sample, compare to a baseline",
                       description="Train a small MelNet on the embedded synthetic music (CPU is fine), print its "
                                   "held-out NLL next to a per-channel Gaussian baseline, and write sampled audio "
                                   "and a PNG of real vs generated spectrograms. Running it again on the same --out "
                                   "resumes training for another budget.",
                       formatter_class=HelpFormatter)
    p.add_argument("--out", default="demo_out", metavar="DIR", help="run directory")
    p.add_argument("--data", choices=("synthetic", "music"), default="synthetic",
                   help="the embedded synthetic music, or the real music corpus of `melnet-fast data music` "
                        "(made in --corpus on the first run)")
    p.add_argument("--corpus", metavar="DIR", help="where the --data music corpus is (default: OUT/music_corpus)")
    p.add_argument("--install", action="store_true", help="--data music: apt-get the missing Debian packages")
    p.add_argument("--train-minutes", type=float, default=DEMO_TRAIN_MINUTES, help="training time budget")
    p.add_argument("--max-steps", type=int, default=100_000, help="stop earlier after this many steps")
    p.add_argument("--seconds", type=float, default=4.0, help="length of each generated sample")
    p.add_argument("--samples", type=int, default=2, help="number of generated samples")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--inversion", choices=("gradient", "griffin_lim"), default="gradient")
    p.add_argument("--iters", type=int, default=100, help="iterations of the spectrogram inversion")
    p.add_argument("--set", action="append", dest="overrides", metavar="KEY=VALUE",
                   help="override a field of the demo model config")
    p.add_argument("--clips", type=int, default=DEMO_TRAIN_CLIPS, help="synthetic training clips")
    p.add_argument("--val-clips", type=int, default=DEMO_VAL_CLIPS, help="synthetic held-out clips")
    p.add_argument("--pieces", type=int, default=DEMO_MUSIC["pieces_per_label"],
                   help="--data music: pieces per collection of the corpus")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def _synthetic_data(args, config, run_dir):
    """(data spec, train, held-out, the scored set and its name, real clip writer)."""
    from melnet_fast.audio import save_wav
    from melnet_fast.synthetic import GENRES, synth_clip
    from melnet_fast.train import DataSpec, build_datasets

    spec = DataSpec("synthetic", synthetic_clips=args.clips, synthetic_val_clips=args.val_clips,
                    synthetic_seconds=DEMO_CLIP_SECONDS, synthetic_seed=args.seed, label_names=list(GENRES))
    print(f"[1/4] synthesising {args.clips} training and {args.val_clips} held-out clips of "
          f"{DEMO_CLIP_SECONDS:g} s ({config.sample_rate} Hz, {config.n_mels} mels, hop {config.hop_length})",
          flush=True)
    train, val = build_datasets(spec, config, DEMO_CROP_FRAMES, cache_dir=run_dir.cache)

    def write_real(k, path):  # held-out clip k is synth_clip([seed + 1, k]) (data.py)
        waveform, _ = synth_clip([args.seed + 1, k], config.sample_rate, DEMO_CLIP_SECONDS,
                                 genre=GENRES[k % len(GENRES)])
        save_wav(path, torch.from_numpy(waveform), config.sample_rate)
        return GENRES[k % len(GENRES)]

    return spec, train, val, val, "held-out clips", write_real


def _music_data(args, config, run_dir):
    """As _synthetic_data, for the real music corpus (made first when absent): trained on its train pieces,
    validated on its validation pieces, scored on its test pieces."""
    from melnet_fast.audio import load_audio, save_wav
    from melnet_fast.cli.common import UserError
    from melnet_fast.corpora import MANIFEST_NAME
    from melnet_fast.corpus_makers import MissingTool, make_music_corpus
    from melnet_fast.corpus_makers.music import describe
    from melnet_fast.train import DataSpec, build_datasets, build_eval_dataset
    from melnet_fast.train.preflight import writable_directory

    corpus = Path(args.corpus) if args.corpus else Path(run_dir.root) / "music_corpus"
    if not (corpus / MANIFEST_NAME).is_file():
        writable_directory(corpus, "--corpus")
        print(f"[1/4] making the music corpus in {corpus} ({args.pieces} pieces per collection)", flush=True)
        try:
            summary = make_music_corpus(corpus, **{**DEMO_MUSIC, "pieces_per_label": args.pieces},
                                        sample_rate=config.sample_rate, seed=args.seed, install=args.install,
                                        log=lambda line: None)
        except (MissingTool, ValueError) as e:
            raise UserError(str(e)) from None
        print(f"      {describe(summary)}", flush=True)
    else:
        print(f"[1/4] music corpus {corpus}", flush=True)
    spec = DataSpec(str((corpus / MANIFEST_NAME).resolve()))
    train, val = build_datasets(spec, config, DEMO_CROP_FRAMES, cache_dir=run_dir.cache)
    test = build_eval_dataset(spec.source, spec, config, DEMO_CROP_FRAMES, cache_dir=run_dir.cache, split="test")
    spec.label_names = list(train.label_names)

    def write_real(k, path):  # the audio of held-out (test) excerpt k
        entry = test.entries[k]
        waveform, sr = load_audio(entry.path, config.sample_rate, start=entry.start, end=entry.end)
        save_wav(path, waveform, sr)
        return f"{entry.label} ({Path(entry.path).stem})"

    return spec, train, val, test, "test pieces", write_real


def run(args) -> int:
    from melnet_fast.cli.common import UserError, frames_for, in_range, parse_overrides
    from melnet_fast.cli.sample_cmd import check_length
    from melnet_fast.train import RunDir, RunDirError, SignalStop
    from melnet_fast.train.metrics import show

    start = time.perf_counter()
    for flag in ("samples", "clips", "val_clips", "pieces", "max_steps", "iters"):
        in_range(getattr(args, flag), f"--{flag.replace('_', '-')}", 1, integer=True)
    in_range(args.train_minutes, "--train-minutes", 0)
    in_range(args.seconds, "--seconds", 0, low_open=True)
    in_range(args.temperature, "--temperature", 0)
    try:
        config = demo_config(**parse_overrides(args.overrides))
    except (TypeError, ValueError) as e:
        raise UserError(f"invalid --set: {e}") from None
    frames = frames_for(args.seconds, config)
    check_length(frames, config)
    run_dir = RunDir(args.out)
    with SignalStop(say=show) as stop, run_dir.claim("melnet-fast demo", say=show):
        if run_dir.exists():
            try:
                stored = run_dir.read_config()["model"]
            except RunDirError as e:
                raise UserError(str(e)) from None
            if stored != config:
                raise UserError(f"{args.out} holds a run with another config; pass another --out")
        return _demo(args, config, frames, run_dir, stop, start)


def _demo(args, config, frames: int, run_dir, stop, start: float) -> int:
    from melnet_fast.cli.common import UserError, audible_range
    from melnet_fast.cli.sample_cmd import generate, write_outputs
    from melnet_fast.cli.sample_quality import sample_report
    from melnet_fast.model import MelNet
    from melnet_fast.plots import plot_comparison
    from melnet_fast.train import RunDirError, Trainer, evaluate
    from melnet_fast.train.evaluation import LN2
    from melnet_fast.train.stop_signals import signal_name

    make_data = _music_data if args.data == "music" else _synthetic_data
    spec, train, val, scored, scored_name, write_real = make_data(args, config, run_dir)
    torch.manual_seed(args.seed)
    model = MelNet(config)
    options = demo_options(config, len(train), args.max_steps, args.train_minutes * 60, args.seed,
                           progress=not args.no_progress)
    try:
        trainer = Trainer(model, train, val, options, run_dir.root, data_spec=spec)
    except (RunDirError, ValueError) as e:
        raise UserError(str(e)) from None
    counts = model.parameter_counts()
    print(f"[2/4] training {sum(counts):,} parameters ({config.n_tiers} tiers, hidden {config.hidden_size}, layers "
          f"{list(config.layers)}) for up to {args.train_minutes:g} min on {trainer.device}"
          + (f", resuming at step {trainer.step}" if trainer.step else ""), flush=True)
    try:
        with stop.deferring():
            summary = trainer.fit(stop=stop)
    finally:
        trainer.close()
    print(f"      {summary['step']} steps in {summary['seconds']:.0f} s", flush=True)
    if summary["stopped"] == "signal":
        print(f"stopped by {signal_name(stop.requested)}: checkpoint of step {summary['checkpoint_step']} in "
              f"{run_dir.latest_state}; run the same command to go on", file=sys.stderr)
        return stop.exit_status

    print(f"[3/4] scoring every {scored_name} segment", flush=True)
    model.eval()
    result = evaluate(model, scored, DEMO_CROP_FRAMES, baseline=trainer.baseline, batch_size=16)
    nll, base = result.nll_nats, result.baseline_nll_nats

    print(f"[4/4] sampling {args.samples} x {args.seconds:g} s and inverting to audio", flush=True)
    x, _ = generate(model.cpu(), frames, count=args.samples, temperature=args.temperature, seed=args.seed)
    _, fidelity_lines = sample_report(x, [scored.spectrogram(k) for k in range(len(scored))],
                                      args.temperature, train=train, held_out=scored, frames=DEMO_CROP_FRAMES,
                                      seed=args.seed)
    samples = Path(run_dir.samples)
    samples.mkdir(parents=True, exist_ok=True)
    written = []
    for k in range(args.samples):
        wav = samples / f"generated-{k + 1}.wav"
        info = write_outputs(wav, x[k], config, args.inversion, args.iters, args.seed,
                             progress=not args.no_progress)
        if info["clamped"]:
            print(f"      warning: {info['clamped']} drawn values of {wav.name} ran away to the top of the sampler's "
                  f"range (the model diverges; kept there)")
        written.append(wav)
    real, titles = [], []
    for k in range(min(args.samples, len(scored))):
        titles.append(f"{write_real(k, samples / f'real-{k + 1}.wav')} #{k + 1}")
        real.append(scored.spectrogram(k)[:frames])
    comparison = samples / "real_vs_generated.png"
    plot_comparison(comparison, real, [audible_range(s)[0] for s in x], config, real_titles=titles,
                    generated_titles=[f"sample {k + 1}" for k in range(args.samples)])

    wall = time.perf_counter() - start
    print()
    print(f"{scored_name}: NLL on {result.segments} segments of up to {DEMO_CROP_FRAMES} frames x {config.n_mels} "
          f"mels (nats / bits per element):")
    for g in result.tiers:
        print(f"  tier {g}: model {result.tiers[g]:8.4f}   baseline {result.baseline_tiers[g]:8.4f}")
    print(f"  all   : model {nll:8.4f} ({nll / LN2:.4f} bits)   per-channel Gaussian baseline {base:8.4f} "
          f"({base / LN2:.4f} bits)   difference {nll - base:+.4f} nats/element")
    verdict = "beats" if nll < base else "does NOT beat"
    print(f"the model {verdict} the baseline by {abs(base - nll):.3f} nats/element "
          f"({math.exp(base - nll):.2f}x the density per element)")
    print("\n".join(fidelity_lines))
    print(f"audio: {', '.join(str(p) for p in written)} (+ real-*.wav for reference)")
    print(f"figure: {comparison} (and a tiers figure next to each generated-*.wav)")
    data_arg = "synthetic" if args.data == "synthetic" else f"{spec.source} --split test"
    print(f"run: {run_dir.root} (melnet-fast eval --run {run_dir.root} --data {data_arg}; "
          f"melnet-fast sample --run {run_dir.root} --seconds 4)")
    if summary.get("audio_khz"):
        print(f"training throughput: {summary['elements_per_s']:,.0f} elements/s, {summary['audio_seconds_per_s']:.2f} "
              f"s of audio per s ({summary['audio_khz']:.1f} kHz of samples per s)")
    print(f"demo wall time {wall:.0f} s")
    return 0
