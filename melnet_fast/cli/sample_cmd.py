"""`melnet-fast sample`: draw spectrograms from a trained run, invert them to audio, and plot the tiers."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path
from typing import List

import numpy as np
import torch

from melnet_fast import audio
from melnet_fast.cli.common import (
    HelpFormatter,
    UserError,
    add_device_arg,
    audible_range,
    existing_file,
    frames_for,
    in_range,
    load_run_model,
    out_paths,
    pick_device,
    speaker_id,
)
from melnet_fast.config import MelNetConfig
from melnet_fast.train import RunDir, preflight

INVERSIONS = ("gradient", "griffin_lim")


def add_parser(sub) -> None:
    p = sub.add_parser("sample", help="generate audio from a trained run",
                       description="Sample spectrograms (all tiers, coarse to fine) and write OUT.wav, OUT.png (the "
                                   "tiers) and OUT.npy (the normalised log-mel values, [T, F]).",
                       formatter_class=HelpFormatter)
    p.add_argument("--seconds", type=float, default=4.0, help="length of the audio")
    p.add_argument("--temperature", type=float, default=1.0, help="0 = most probable component's mean, 1 = model")
    p.add_argument("--prime", metavar="FILE.wav", help="continue this audio (its first frames, up to all but "
                                                       "the last few of the output, are kept)")
    add_output_args(p)
    p.set_defaults(func=run)


def add_output_args(p: argparse.ArgumentParser) -> None:
    """The flags every model's `sample` command shares: run, label, count, seed, outputs, inversion, device."""
    p.add_argument("--run", required=True, metavar="RUN_DIR")
    p.add_argument("--out", metavar="OUT.wav", help="default: RUN_DIR/samples/sample-seed<S>.wav")
    p.add_argument("--speaker", help="speaker / label id or name, for conditional models")
    p.add_argument("--count", type=int, default=1, help="number of samples (OUT-1.wav, OUT-2.wav, ... when > 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint", choices=("best", "latest"), default="best")
    p.add_argument("--inversion", choices=INVERSIONS, default="gradient",
                   help="spectrogram -> audio: gradient-based (the paper's) or Griffin-Lim")
    p.add_argument("--iters", type=int, default=100, help="iterations of the inversion")
    add_device_arg(p)


def prime_frames(path: str, config: MelNetConfig, frames: int) -> torch.Tensor:
    """The log-mel [P, F] of a prime file: as many of its frames as fit before the last time_factor frames of
    the output, rounded down to a multiple of config.time_factor."""
    try:
        waveform, _ = audio.load_audio(path, config.sample_rate)
    except Exception as e:  # soundfile raises several types for unreadable files
        raise UserError(f"--prime {path}: cannot read audio ({' '.join(str(e).split())})") from None
    bad = int((~torch.isfinite(waveform)).sum())
    if bad:
        raise UserError(f"--prime {path} holds {bad} NaN or inf samples")
    if waveform.numel() < audio.min_samples(config):
        raise UserError(f"--prime {path} holds {waveform.numel()} samples at {config.sample_rate} Hz; a prime needs "
                        f"at least {audio.min_samples(config)}")
    spec = audio.log_mel_spectrogram(waveform, config).float()
    P = min(spec.shape[0], frames - config.time_factor)
    P -= P % config.time_factor
    if P < config.time_factor:
        raise UserError(f"--prime {path} is too short (or --seconds too small): need at least "
                        f"{config.time_factor} frames of prime and {config.time_factor} to generate")
    return spec[:P]


def generate(model, frames: int, *, count: int = 1, temperature: float = 1.0, cond=None, prime=None,
             seed: int = 0):
    """(x [count, frames, F], log-density [count] of the drawn elements, untempered) from model.sample."""
    param = next(model.parameters())
    generator = torch.Generator(device=param.device).manual_seed(seed)
    if prime is not None:
        prime = prime.to(param.device, param.dtype).expand(count, -1, -1).contiguous()
    if cond is not None:
        cond = cond.to(param.device).expand(count).contiguous()
    from melnet_fast.model import DivergentSampleWarning

    with warnings.catch_warnings():  # the commands report runaway values per output file (write_outputs)
        warnings.simplefilter("ignore", DivergentSampleWarning)
        return model.sample(count, frames, cond, float(temperature), prime, generator, return_log_prob=True)


def to_audio(spec: torch.Tensor, config: MelNetConfig, method: str = "gradient", iters: int = 100,
             seed: int = 0, progress: bool = True):
    """Normalised log-mel [T, F] -> (waveform [(T - 1) * hop], info) with the run's audio settings."""
    kwargs = {"n_iter": iters, "seed": seed, "progress": progress}
    return audio.spectrogram_to_waveform(spec.float().cpu(), config, method=method, **kwargs)


def write_outputs(wav: Path, spec: torch.Tensor, config: MelNetConfig, method: str, iters: int,
                  seed: int = 0, title: str = "generated", progress: bool = True, n_tiers: int | None = None) -> dict:
    """Write wav (audio), wav.png (tiers coarse to fine; n_tiers default config.n_tiers) and wav.npy ([T, F], the
    values as drawn, always finite: see audible_range); returns the inversion info, with "clamped": how many values
    ran away or were not finite, and "padded": the silent frames appended for the audio to a spectrogram shorter
    than the inversion needs (audio.min_frames). Nothing is written before the inversion has succeeded. config:
    anything with the audio settings (a MelNetConfig, a CMelGANConfig)."""
    from melnet_fast.plots import IMAGE_VMIN, plot_tiers

    spec, clamped = audible_range(spec)
    short = audio.min_frames(config) - spec.shape[0]
    heard = spec
    if short > 0:  # a text model can stop before the inversion's window is filled: silence after its end
        heard = torch.cat([spec, spec.new_full((short, spec.shape[1]), IMAGE_VMIN)])  # the log floor
    waveform, info = to_audio(heard, config, method, iters, seed, progress)
    np.save(wav.with_suffix(".npy"), spec.numpy())
    audio.save_wav(wav, (0.99 * waveform / max(1.0, float(waveform.abs().max()))), config.sample_rate)
    plot_tiers(wav.with_suffix(".png"), spec, config.n_tiers if n_tiers is None else n_tiers, config, title=title)
    info["clamped"], info["padded"] = clamped, max(0, short)
    return info


def sample_paths(wav: Path, count: int) -> List[Path]:
    """OUT.wav for one sample; OUT-1.wav, OUT-2.wav, ... for several."""
    return [wav] if count == 1 else [wav.with_name(f"{wav.stem}-{k + 1}.wav") for k in range(count)]


def check_sample_args(args) -> None:
    """UserError for a --count, --temperature or --iters out of range."""
    in_range(args.count, "--count", 1, integer=True)
    in_range(args.temperature, "--temperature", 0)
    in_range(args.iters, "--iters", 1, integer=True)


def write_sample(target: Path, spec: torch.Tensor, config, args, n_tiers: int | None = None,
                 title: str = "generated") -> dict:
    """write_outputs with the command's inversion flags, and a warning when values had to be clamped."""
    info = write_outputs(target, spec, config, args.inversion, args.iters, args.seed, title=title,
                         progress=sys.stderr.isatty(), n_tiers=n_tiers)
    if info["clamped"]:
        print(f"  warning: {info['clamped']} of {spec.numel()} drawn values of {target.name} ran away to the top of "
              f"the samplers' range (+30 dB over a full-scale sine) or were not finite, and were kept at its edges: "
              f"the model diverges (an undertrained model?)", file=sys.stderr)
    return info


def lock_if_inside(run_dir: RunDir, path: Path, command: str):
    """The run's lock (RunDir.claim, RunLockedError naming the holder) when `path` lies inside the run directory,
    so that no trainer writes there at the same time; None when it lies outside."""
    if not Path(os.path.realpath(path)).is_relative_to(os.path.realpath(run_dir.root)):
        return None
    return run_dir.claim(command, arg="--out", hint="wait for it to finish, or pass an --out outside the run to "
                                                    "write while it trains")


def check_length(frames: int, config: MelNetConfig, arg: str = "--seconds") -> None:
    """UserError when `frames` cannot be inverted to audio (too few for the STFT's window)."""
    need = -(-audio.min_frames(config) // config.time_factor) * config.time_factor
    if frames < need:
        raise UserError(f"{arg} gives {frames} frames; the audio needs at least {need} "
                        f"({need * config.hop_length / config.sample_rate:.3g} s at {config.sample_rate} Hz, "
                        f"hop {config.hop_length}, n_fft {config.n_fft})")


def check_memory(config: MelNetConfig, count: int, frames: int, device, arg: str = "--seconds / --count") -> None:
    """UserError (a PreflightError) when sampling `count` x `frames` and inverting one of them to audio will not
    fit in the memory of `device` and of the host."""
    preflight.enough_memory(preflight.sampling_bytes(config, count, frames), device, arg,
                            f"sampling {count} x {frames} frames")
    check_inversion_memory(config, frames, arg)


def check_inversion_memory(config, frames: int, arg: str = "--seconds") -> None:
    """UserError (a PreflightError) when inverting a spectrogram of `frames` frames to audio will not fit in the
    host's memory. config: anything with the audio settings."""
    preflight.enough_memory(preflight.inversion_bytes(config, frames), "cpu", arg,
                            f"inverting {frames} frames to audio")


def run(args) -> int:
    check_sample_args(args)
    in_range(args.seconds, "--seconds", 0, low_open=True)
    device = pick_device(args.device, sampling=True)
    doc, model, path = load_run_model(args.run, args.checkpoint, device)
    c: MelNetConfig = model.config
    if c.has_text:
        raise UserError(f"{args.run} holds a text-to-speech model: speak text with `melnet-fast tts --run "
                        f"{args.run} --text \"...\" --out OUT.wav`")
    frames = frames_for(args.seconds, c)
    check_length(frames, c)
    label_names = (doc.get("data") or {}).get("label_names") or []
    cond = speaker_id(args.speaker, c, label_names)
    prime = prime_frames(str(existing_file(args.prime, "--prime")), c, frames) if args.prime else None
    check_memory(c, args.count, frames, device)
    run_dir = RunDir(args.run)
    out = args.out or str(run_dir.samples / f"sample-seed{args.seed}.wav")
    wav, _, _ = out_paths(out)
    lock = lock_if_inside(run_dir, wav, "melnet-fast sample")
    try:
        return _sample(args, model, path, c, frames, cond, prime, wav)
    finally:
        if lock is not None:
            lock.release()


def _sample(args, model, path, c: MelNetConfig, frames: int, cond, prime, wav: Path) -> int:
    print(f"sampling {args.count} x {frames} frames x {c.n_mels} mels from {path} on {next(model.parameters()).device}"
          + (f", primed with {prime.shape[0]} frames" if prime is not None else ""), flush=True)
    x, log_density = generate(model, frames, count=args.count, temperature=args.temperature, cond=cond,
                              prime=prime, seed=args.seed)
    drawn = (frames - (prime.shape[0] if prime is not None else 0)) * c.n_mels
    for k, target in enumerate(sample_paths(wav, args.count)):
        info = write_sample(target, x[k], c, args)
        print(f"{target}  (+ .png, .npy)  log-density {float(log_density[k]) / drawn:.4f} nats/element, "
              f"inversion spectral convergence {info['spectral_convergence']:.3f}")
    return 0
