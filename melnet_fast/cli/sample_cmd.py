"""`melnet-fast sample`: draw spectrograms from a trained run, invert them to audio, and plot the tiers."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import List

import numpy as np
import torch

from melnet_fast import audio
from melnet_fast.cli.common import (
    UserError,
    add_device_arg,
    audible_range,
    existing_file,
    frames_for,
    load_run_model,
    out_paths,
    pick_device,
    speaker_id,
)
from melnet_fast.config import MelNetConfig

INVERSIONS = ("gradient", "griffin_lim")


def add_parser(sub) -> None:
    p = sub.add_parser("sample", help="generate audio from a trained run",
                       description="Sample spectrograms (all tiers, coarse to fine) and write OUT.wav, OUT.png (the "
                                   "tiers) and OUT.npy (the normalised log-mel values, [T, F]).",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
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
        raise UserError(f"--prime {path}: cannot read audio ({e})") from None
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
    return model.sample(count, frames, cond, float(temperature), prime, generator, return_log_prob=True)


def to_audio(spec: torch.Tensor, config: MelNetConfig, method: str = "gradient", iters: int = 100,
             seed: int = 0, progress: bool = True):
    """Normalised log-mel [T, F] -> (waveform [(T - 1) * hop], info) with the run's audio settings."""
    kwargs = {"n_iter": iters, "seed": seed, "progress": progress}
    return audio.spectrogram_to_waveform(spec.float().cpu(), config, method=method, **kwargs)


def write_outputs(wav: Path, spec: torch.Tensor, config: MelNetConfig, method: str, iters: int,
                  seed: int = 0, title: str = "generated", progress: bool = True, n_tiers: int | None = None) -> dict:
    """Write wav (audio), wav.png (tiers coarse to fine; n_tiers default config.n_tiers) and wav.npy ([T, F], the
    values as drawn); returns the inversion info, with "clamped": how many values were outside the audible range
    (see audible_range). config: anything with the audio settings (a MelNetConfig, a CMelGANConfig)."""
    from melnet_fast.plots import plot_tiers

    np.save(wav.with_suffix(".npy"), spec.float().cpu().numpy())
    spec, clamped = audible_range(spec)
    waveform, info = to_audio(spec, config, method, iters, seed, progress)
    audio.save_wav(wav, (0.99 * waveform / max(1.0, float(waveform.abs().max()))), config.sample_rate)
    plot_tiers(wav.with_suffix(".png"), spec, config.n_tiers if n_tiers is None else n_tiers, config, title=title)
    info["clamped"] = clamped
    return info


def sample_paths(wav: Path, count: int) -> List[Path]:
    """OUT.wav for one sample; OUT-1.wav, OUT-2.wav, ... for several."""
    return [wav] if count == 1 else [wav.with_name(f"{wav.stem}-{k + 1}.wav") for k in range(count)]


def check_sample_args(args) -> None:
    """UserError for a --count or --temperature out of range."""
    if args.count < 1:
        raise UserError(f"--count must be >= 1, got {args.count}")
    if not (math.isfinite(args.temperature) and args.temperature >= 0):
        raise UserError(f"--temperature must be >= 0, got {args.temperature}")


def write_sample(target: Path, spec: torch.Tensor, config, args, n_tiers: int | None = None,
                 title: str = "generated") -> dict:
    """write_outputs with the command's inversion flags, and a warning when values had to be clamped."""
    info = write_outputs(target, spec, config, args.inversion, args.iters, args.seed, title=title,
                         progress=sys.stderr.isatty(), n_tiers=n_tiers)
    if info["clamped"]:
        print(f"  warning: {info['clamped']} of {spec.numel()} drawn values of {target.name} were not finite or "
              f"implausibly loud and were clamped for the audio and the figure (an undertrained model?)",
              file=sys.stderr)
    return info


def run(args) -> int:
    device = pick_device(args.device, sampling=True)
    doc, model, path = load_run_model(args.run, args.checkpoint, device)
    c: MelNetConfig = model.config
    check_sample_args(args)
    frames = frames_for(args.seconds, c)
    label_names = (doc.get("data") or {}).get("label_names") or []
    cond = speaker_id(args.speaker, c, label_names)
    prime = prime_frames(str(existing_file(args.prime, "--prime")), c, frames) if args.prime else None
    out = args.out or str(Path(args.run) / "samples" / f"sample-seed{args.seed}.wav")
    wav, _, _ = out_paths(out)
    print(f"sampling {args.count} x {frames} frames x {c.n_mels} mels from {path} on {device}"
          + (f", primed with {prime.shape[0]} frames" if prime is not None else ""), flush=True)
    x, log_density = generate(model, frames, count=args.count, temperature=args.temperature, cond=cond,
                              prime=prime, seed=args.seed)
    drawn = (frames - (prime.shape[0] if prime is not None else 0)) * c.n_mels
    for k, target in enumerate(sample_paths(wav, args.count)):
        info = write_sample(target, x[k], c, args)
        print(f"{target}  (+ .png, .npy)  log-density {float(log_density[k]) / drawn:.4f} nats/element, "
              f"inversion spectral convergence {info['spectral_convergence']:.3f}")
    return 0
