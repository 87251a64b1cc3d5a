"""`melnet-fast tts`: speak text with a trained text-to-speech run: audio, spectrogram and alignment plots."""

from __future__ import annotations

import sys
from pathlib import Path

from melnet_fast.cli.common import (
    HelpFormatter,
    UserError,
    add_device_arg,
    frames_for,
    in_range,
    load_run_model,
    out_paths,
    pick_device,
    speaker_id,
)
from melnet_fast.cli.sample_cmd import INVERSIONS, check_length, check_memory, lock_if_inside, write_outputs
from melnet_fast.train.preflight import writable_file
from melnet_fast.train.run_dir import RunDir


def add_parser(sub) -> None:
    p = sub.add_parser("tts", help="text to speech with a trained text model",
                       description="Synthesise each --text with a run trained on text (a tts_* preset): writes "
                                   "OUT.wav, OUT.png (the tiers), OUT.npy ([T, F]) and OUT-alignment.png (the "
                                   "attention: the text on one axis, frames on the other). Sampling of each text "
                                   "stops when the attention has read past its end (or at --max-seconds).",
                       formatter_class=HelpFormatter)
    p.add_argument("--run", required=True, metavar="RUN_DIR")
    p.add_argument("--text", required=True, action="append", help="text to speak (repeat for several)")
    p.add_argument("--out", required=True, metavar="OUT.wav", help="OUT-1.wav, OUT-2.wav, ... for several texts")
    p.add_argument("--max-seconds", type=float, help="cap on the length of each utterance (default: the run's "
                                                     "max_seconds)")
    p.add_argument("--temperature", type=float, default=1.0, help="0 = most probable component's mean, 1 = model")
    p.add_argument("--stop-threshold", type=float, default=0.5,
                   help="stop when this much attention lies past the end of the text")
    p.add_argument("--speaker", help="speaker / label id or name, for multi-speaker models")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint", choices=("best", "latest"), default="best")
    p.add_argument("--inversion", choices=INVERSIONS, default="gradient")
    p.add_argument("--iters", type=int, default=100, help="iterations of the inversion")
    add_device_arg(p)
    p.set_defaults(func=run)


def run(args) -> int:
    in_range(args.temperature, "--temperature", 0)
    in_range(args.iters, "--iters", 1, integer=True)
    in_range(args.max_seconds, "--max-seconds", 0, low_open=True)
    if not 0 < args.stop_threshold < 1:
        raise UserError(f"--stop-threshold must lie in (0, 1), got {args.stop_threshold}")
    device = pick_device(args.device, sampling=True)
    doc, model, path = load_run_model(args.run, args.checkpoint, device)
    c = model.config
    if not c.has_text:
        raise UserError(f"{args.run} is not a text-to-speech run (its model has no text conditioning); train one "
                        f"with a tts_* preset")
    frames = frames_for(args.max_seconds if args.max_seconds is not None else c.max_seconds, c)
    check_length(frames, c, "--max-seconds")
    try:
        ids, lengths = model.text_frontend.encode(args.text)
    except (ValueError, RuntimeError) as e:  # bad text, or phonemes asked for without phonemizer / espeak-ng
        raise UserError(f"--text: {e}") from None
    label_names = (doc.get("data") or {}).get("label_names") or []
    cond = {"text": ids.to(device), "text_lengths": lengths.to(device)}
    speaker = speaker_id(args.speaker, c, label_names)
    if speaker is not None:
        cond["speaker"] = speaker.to(device).expand(len(args.text)).contiguous()
    check_memory(c, len(args.text), frames, device, "--max-seconds / --text")
    wav, _, _ = out_paths(args.out)
    targets = [wav] if len(args.text) == 1 else [wav.with_name(f"{wav.stem}-{k + 1}.wav")
                                                 for k in range(len(args.text))]
    for target in targets:  # every file it will write, before any sampling
        out_paths(str(target))
        writable_file(_alignment_path(target), "--out")
    lock = lock_if_inside(RunDir(args.run), wav, "melnet-fast tts")
    try:
        return _speak(args, model, path, frames, ids, lengths, cond, targets, device)
    finally:
        if lock is not None:
            lock.release()


def _alignment_path(target: Path) -> Path:
    return target.with_name(f"{target.stem}-alignment.png")


def _speak(args, model, path, frames: int, ids, lengths, cond, targets, device) -> int:
    import torch

    from melnet_fast.multiscale import tier_shapes
    from melnet_fast.plots import plot_alignment

    c = model.config
    print(f"speaking {len(args.text)} text(s), at most {frames} frames each, with {path} on {device}", flush=True)
    generator = torch.Generator(device=device).manual_seed(args.seed)
    s = model.sample(len(args.text), frames, cond, float(args.temperature), generator=generator,
                     return_log_prob=True, stop_threshold=args.stop_threshold)
    ratio = frames // tier_shapes(frames, c.n_mels, c.n_tiers)[0][0]  # frames per initial-tier frame
    for k, target in enumerate(targets):
        n = int(s.lengths[k])
        x = s.x[k, :n]
        info = write_outputs(target, x, c, args.inversion, args.iters, args.seed, title="spoken",
                             progress=sys.stderr.isatty())
        symbols = model.text_frontend.decode(ids[k, :int(lengths[k])])
        alignment = _alignment_path(target)
        plot_alignment(alignment, s.alignment[k, :n // ratio, :len(symbols)], symbols, c,
                       ratio * c.hop_length / c.sample_rate, title=f"attention over {args.text[k]!r}")
        stopped = "stopped by the attention" if n < frames else "reached --max-seconds (the attention had not " \
                                                                "read past the end)"
        print(f"{target}  (+ .png, .npy, {alignment.name})  {n * c.hop_length / c.sample_rate:.2f} s, {stopped}; "
              f"log-density {float(s.log_prob[k]) / max(1, n * c.n_mels):.4f} nats/element")
        if info["clamped"]:
            print(f"  warning: {info['clamped']} of {x.numel()} drawn values were not finite or implausibly loud "
                  f"and were clamped for the audio and the figure (an undertrained model?)", file=sys.stderr)
        if info["padded"]:
            print(f"  note: {n} frames are fewer than the audio inversion needs; {info['padded']} silent frames "
                  f"were appended for the audio", file=sys.stderr)
    return 0
