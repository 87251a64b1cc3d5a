"""`melnet-fast invert IN.npy|IN.png OUT.wav`: a spectrogram back to audio."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from melnet_fast import audio
from melnet_fast.cli.common import HelpFormatter, UserError, audible_range, existing_file, in_range, preset_config


def add_parser(sub) -> None:
    p = sub.add_parser("invert", help="spectrogram (.npy or .png) -> audio",
                       description="Invert a normalised log-mel spectrogram to a waveform. IN.npy holds [T, F] "
                                   "(as `sample` writes); IN.png is a grayscale image, frames left to right, "
                                   "channel 0 at the bottom (as melnet_fast.plots.save_spectrogram_image writes). "
                                   "The audio settings come from --run or --preset.",
                       formatter_class=HelpFormatter)
    p.add_argument("input", metavar="IN.npy|IN.png")
    p.add_argument("output", metavar="OUT.wav")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--run", metavar="RUN_DIR", help="take the audio settings of this run")
    source.add_argument("--preset", help="take the audio settings of this preset")
    p.add_argument("--method", choices=("gradient", "griffin_lim"), default="gradient")
    p.add_argument("--iters", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def read_spectrogram(path: Path) -> torch.Tensor:
    """[T, F] float32 from a .npy or .png file; UserError for anything else."""
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            x = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise UserError(f"{path}: not a readable .npy array ({e})") from None
        x = np.squeeze(x)
        if x.ndim != 2 or not np.issubdtype(x.dtype, np.floating):
            raise UserError(f"{path}: expected a float array [T, F], got {x.dtype} {list(x.shape)}")
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    if suffix == ".png":
        from melnet_fast.plots import load_spectrogram_image

        try:
            return load_spectrogram_image(path)
        except OSError as e:
            raise UserError(f"{path}: not a readable PNG ({e})") from None
    raise UserError(f"{path}: expected a .npy or .png spectrogram")


def run(args) -> int:
    from melnet_fast.train import preflight
    from melnet_fast.train.run_dir import RunDir, RunDirError

    in_range(args.iters, "--iters", 1, integer=True)
    out = Path(args.output)
    if out.suffix.lower() != ".wav":
        raise UserError(f"the output must be a .wav file, got {args.output}")
    preflight.writable_file(out, "OUT.wav")
    spec = read_spectrogram(existing_file(args.input, "input"))
    if args.run:
        try:
            config = RunDir(args.run).read_config()["model"]
        except RunDirError as e:
            raise UserError(str(e)) from None
    elif args.preset:
        config = preset_config(args.preset)
    else:
        raise UserError("pass --run RUN_DIR or --preset NAME: the audio settings (sample rate, hop, mels) are "
                        "not stored in the spectrogram")
    if spec.shape[1] != config.n_mels:
        raise UserError(f"{args.input} has {spec.shape[1]} mel channels ([T, F] = {list(spec.shape)}), the "
                        f"settings have n_mels={config.n_mels}")
    if spec.shape[0] < audio.min_frames(config):
        raise UserError(f"{args.input} has {spec.shape[0]} frames; the inversion needs at least "
                        f"{audio.min_frames(config)} with these settings (n_fft {config.n_fft}, hop "
                        f"{config.hop_length})")
    preflight.enough_memory(preflight.inversion_bytes(config, spec.shape[0]), "cpu", args.input,
                            f"inverting {spec.shape[0]} frames")
    spec, clamped = audible_range(spec)
    if clamped:
        print(f"warning: {clamped} of {spec.numel()} values were not finite or outside the audible range; "
              f"clamped", file=sys.stderr)
    waveform, info = audio.spectrogram_to_waveform(spec, config, method=args.method, n_iter=args.iters,
                                                   seed=args.seed)
    audio.save_wav(out, 0.99 * waveform / max(1.0, float(waveform.abs().max())), config.sample_rate)
    seconds = waveform.numel() / config.sample_rate
    print(f"{out}: {seconds:.2f} s at {config.sample_rate} Hz ({args.method}, spectral convergence "
          f"{info['spectral_convergence']:.3f})")
    return 0
