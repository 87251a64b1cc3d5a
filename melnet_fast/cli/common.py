"""What the CLI commands share: the user-error type, loading a run's model, devices, and small parsers."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any, Dict, List, Tuple

import torch

from melnet_fast.config import PRESETS, MelNetConfig
from melnet_fast.plots import audible_range  # noqa: F401 (part of this module's interface)


class UserError(Exception):
    """A mistake in the command line or its inputs: reported as one line, exit status 2, no traceback."""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """--help with "(default: X)" after an option's text, unless the text already names its default or there is
    none worth showing (None, a flag's False)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS):
            return text
        return super()._get_help_string(action)


def in_range(value, arg: str, low=None, high=None, *, integer: bool = False, low_open: bool = False,
             high_open: bool = False):
    """`value` when it is a finite number (an integer if `integer`) within low..high (bounds excluded when
    *_open), else UserError naming `arg`. None passes (an option not given)."""
    if value is None:
        return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (not integer or float(value).is_integer())
    ok = ok and (low is None or (value > low if low_open else value >= low))
    ok = ok and (high is None or (value < high if high_open else value <= high))
    if not ok:
        bounds = ([f"{'>' if low_open else '>='} {low:g}"] if low is not None else []) + \
                 ([f"{'<' if high_open else '<='} {high:g}"] if high is not None else [])
        what = "an integer" if integer else "a number"
        raise UserError(f"{arg} must be {what} {' and '.join(bounds)}, got {value!r}")
    return value


def preset_config(name: str, overrides: Dict[str, Any] | None = None) -> MelNetConfig:
    """MelNetConfig of a preset (or "demo") with overrides; UserError when unknown or invalid."""
    from melnet_fast.cli.demo import DEMO_PRESET, demo_config

    try:
        if name == DEMO_PRESET:
            return demo_config(**(overrides or {}))
        return MelNetConfig.preset(name, **(overrides or {}))
    except TypeError as e:
        raise UserError(f"invalid config override: {e}") from None
    except ValueError as e:
        if name not in PRESETS and name != DEMO_PRESET:
            raise UserError(f"unknown preset {name!r}; presets: {', '.join(PRESETS + (DEMO_PRESET,))}") from None
        raise UserError(f"invalid config: {e}") from None


def parse_overrides(items: List[str] | None) -> Dict[str, Any]:
    """["hidden_size=32", "layers=3,2,2", "f_max=3800.0"] -> {"hidden_size": 32, "layers": [3, 2, 2], ...}.
    Values are read as JSON when they parse (numbers, null, true), comma lists as lists, else strings."""
    out: Dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise UserError(f"--set expects KEY=VALUE, got {item!r}")
        key, text = item.split("=", 1)
        out[key.strip()] = _value(text.strip())
    return out


def _value(text: str):
    if "," in text and not text.startswith("["):
        return [_value(t) for t in text.split(",")]
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def pick_device(name: str, sampling: bool = False) -> torch.device:
    """"auto" -> cuda when it can run the job, else cpu. For sampling, "auto" uses cuda only when the cuda
    backend of melnet_fast is built (the per-element sampler is latency-bound: the C++ cpu loop beats plain
    PyTorch on a GPU)."""
    if name == "auto":
        if sampling:
            from melnet_fast.backends import why_unavailable

            return torch.device("cuda" if why_unavailable("cuda") is None else "cpu")
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r} (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name}: torch sees no CUDA device here")
    return device


def load_run_model(run_dir: str, which: str = "best", device: torch.device | str = "cpu",
                   kind: str | None = "melnet"):
    """(run config doc, model in eval mode on device, checkpoint path) of a run directory: a MelNet, or the model
    of `kind` ("melnet", "cmelgan"; None = whichever the run holds). UserError when the run or its checkpoint is
    missing, holds another kind of model, or the checkpoint does not match the run's config."""
    from melnet_fast.train.run_dir import RunDir, RunDirError

    run = RunDir(run_dir)
    try:
        held = run.read_config()["model_kind"]
        if kind is not None and held != kind:
            command = {"melnet": "melnet-fast sample / eval", "cmelgan": "melnet-fast gan sample"}[held]
            raise UserError(f"{run_dir} holds a {held} run, not a {kind} one (use `{command}`)")
        return run.load_model(which, device)
    except (RunDirError, FileNotFoundError) as e:
        raise UserError(str(e)) from None
    except ValueError as e:
        raise UserError(f"incompatible checkpoint: {e}") from None


def frames_for(seconds: float, config: MelNetConfig) -> int:
    """Frames of `seconds` of audio, rounded up to a multiple of config.time_factor."""
    if not (isinstance(seconds, (int, float)) and math.isfinite(seconds) and seconds > 0):
        raise UserError(f"--seconds must be a positive number, got {seconds!r}")
    frames = max(1, round(seconds * config.sample_rate / config.hop_length))
    return -(-frames // config.time_factor) * config.time_factor


def speaker_id(value: str | None, config: MelNetConfig, label_names: List[str]) -> torch.Tensor | None:
    """--speaker (an id or a label name) -> LongTensor [1], or None for an unconditional model."""
    if config.n_speakers == 0:
        if value is not None:
            raise UserError("--speaker was given but this model is not conditioned on speakers / labels")
        return None
    return label_id(value, config.n_speakers, label_names)


def label_id(value: str | None, n_labels: int, label_names: List[str]) -> torch.Tensor:
    """--speaker (an id or a label name) of a model conditioned on n_labels labels -> LongTensor [1]; optional
    (label 0) when there is only one label."""
    if value is None:
        if n_labels == 1:
            return torch.tensor([0])
        names = f" ({', '.join(f'{i}={n}' for i, n in enumerate(label_names))})" if label_names else ""
        raise UserError(f"this model is conditioned on {n_labels} speakers / labels: pass --speaker ID{names}")
    if value in label_names:
        return torch.tensor([label_names.index(value)])
    try:
        sid = int(value)
    except ValueError:
        raise UserError(f"--speaker {value!r} is neither an id in 0..{n_labels - 1} nor a label "
                        f"name ({', '.join(label_names) or 'the run has no label names'})") from None
    if not 0 <= sid < n_labels:
        raise UserError(f"--speaker {sid} is out of range 0..{n_labels - 1}")
    return torch.tensor([sid])


def existing_file(path: str, what: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{what} {path} does not exist")
    return p


SHOWN_WARNINGS = 10  # a corpus with many bad files would otherwise bury the output


def show_warnings(caught) -> None:
    """Print recorded warnings (warnings.catch_warnings(record=True)) on stderr, the first SHOWN_WARNINGS of them
    and how many more there were."""
    for w in caught[:SHOWN_WARNINGS]:
        print(f"  warning: {w.message}", file=sys.stderr)
    if len(caught) > SHOWN_WARNINGS:
        print(f"  ... and {len(caught) - SHOWN_WARNINGS} more warning(s)", file=sys.stderr)


def add_device_arg(p: argparse.ArgumentParser, default: str = "auto") -> None:
    p.add_argument("--device", default=default, help="auto (default), cpu, cuda, cuda:N")


def out_paths(out: str, arg: str = "--out") -> Tuple[Path, Path, Path]:
    """OUT.wav -> (OUT.wav, OUT.png, OUT.npy), checked writable (the folder is created)."""
    from melnet_fast.train.preflight import writable_file

    wav = Path(out)
    if wav.suffix.lower() != ".wav":
        raise UserError(f"{arg} must name a .wav file, got {out}")
    for path in (wav, wav.with_suffix(".png"), wav.with_suffix(".npy")):
        writable_file(path, arg)
    return wav, wav.with_suffix(".png"), wav.with_suffix(".npy")
