"""Figures of spectrograms (PNG): the tiers of a sample coarse to fine, real vs generated, and a lossless-ish
grayscale image format that `melnet-fast invert` reads back.

Figures use matplotlib's object API (matplotlib.figure.Figure), so no global pyplot state and no display.
"""

from __future__ import annotations

import json
import os
from typing import Dict, Sequence

import numpy as np
import torch

from melnet_fast import audio
from melnet_fast._optional import require
from melnet_fast.log_mel_scale import FLOOR, SAMPLE_RANGE, ZERO_DB
from melnet_fast.multiscale import merge_tiers, split_tiers

# The default value range of a spectrogram image: the log floor (-80 dB) to a full-scale sine (0 dB).
IMAGE_VMIN, IMAGE_VMAX = FLOOR, ZERO_DB
_META_KEY = "melnet_fast"


def audible_range(spec: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(spec clamped to the samplers' range [log floor, +30 dB over a full-scale sine], NaN to the floor; number
    of values that were not finite or at / above the top): a runaway value is not audio, and the inversion needs
    finite power. Values below the log floor are just silence (the data is floored there) and are not counted.
    Samples of MelNet.sample are already in the range (runaways kept at its top); a spectrogram from elsewhere
    (a cMelGAN's, a file's) may not be."""
    low, high = SAMPLE_RANGE
    spec = spec.float().cpu()
    bad = int((~torch.isfinite(spec) | (spec >= high)).sum())
    return torch.nan_to_num(spec, nan=low, posinf=high, neginf=low).clamp(low, high), bad


def _as_array(x) -> np.ndarray:
    x = x.detach().cpu().float().numpy() if torch.is_tensor(x) else np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"a spectrogram must be [T, F], got shape {x.shape}")
    return x


def _show(ax, x: np.ndarray, seconds: float, n_mels: int, vmin: float, vmax: float, title: str):
    im = ax.imshow(x.T, origin="lower", aspect="auto", extent=(0, seconds, 0, n_mels), vmin=vmin, vmax=vmax,
                   cmap="magma", interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_ylabel("mel channel")
    return im


def tier_views(x: torch.Tensor, n_tiers: int) -> list[torch.Tensor]:
    """x [T, F] -> [x^<2, x^<3, ..., x]: the spectrogram as known after tiers 1, 1..2, ..., 1..G, each at its
    own (coarser) resolution [T_g, F_g]."""
    tiers, _ = split_tiers(torch.as_tensor(x)[None], n_tiers)
    return [merge_tiers(tiers[:g])[0] for g in range(1, n_tiers + 1)]


def plot_tiers(path, x, n_tiers: int, settings=None, title: str = "generated") -> None:
    """PNG of spectrogram x [T, F] (normalised log-mel) as the tiers build it: one panel per tier, coarse to
    fine, all over the same time / mel axes. settings: anything audio.audio_settings takes (for the time axis)."""
    Figure = require("matplotlib.figure", "plotting").Figure
    s = audio.audio_settings(settings)
    x = torch.as_tensor(_as_array(x))
    seconds = x.shape[0] * s.hop_length / s.sample_rate
    vmin, vmax = float(x.min()), float(x.max())
    fig = Figure(figsize=(8, 1.9 * n_tiers + 0.4), layout="constrained")
    axes = fig.subplots(n_tiers, 1, sharex=True, squeeze=False)[:, 0]
    for g, (ax, view) in enumerate(zip(axes, tier_views(x, n_tiers)), start=1):
        T, F = view.shape
        label = title if n_tiers == 1 else f"{title}: tier 1" if g == 1 else f"tiers 1-{g}"
        im = _show(ax, view.numpy(), seconds, x.shape[1], vmin, vmax, f"{label} ({T} frames x {F} channels)")
    axes[-1].set_xlabel("time (s)")
    fig.colorbar(im, ax=list(axes), label="normalised log-mel", shrink=0.8)
    fig.savefig(os.fspath(path), dpi=110)


def plot_comparison(path, real: Sequence, generated: Sequence, settings=None,
                    real_titles: Sequence[str] | None = None, generated_titles: Sequence[str] | None = None) -> None:
    """PNG with real spectrograms (left column) next to generated ones (right), each [T, F]; the titles name
    each panel (default "#k")."""
    Figure = require("matplotlib.figure", "plotting").Figure
    s = audio.audio_settings(settings)
    real = [_as_array(x) for x in real]
    generated = [_as_array(x) for x in generated]
    rows = max(len(real), len(generated))
    values = np.concatenate([x.ravel() for x in real + generated])
    vmin, vmax = float(values.min()), float(values.max())
    fig = Figure(figsize=(11, 2.2 * rows + 0.4), layout="constrained")
    axes = fig.subplots(rows, 2, squeeze=False)
    columns = (("real (held out)", real, real_titles), ("generated", generated, generated_titles))
    for col, (kind, specs, titles) in enumerate(columns):
        for row in range(rows):
            ax = axes[row, col]
            if row >= len(specs):
                ax.axis("off")
                continue
            x = specs[row]
            name = titles[row] if titles is not None and row < len(titles) else f"#{row + 1}"
            im = _show(ax, x, x.shape[0] * s.hop_length / s.sample_rate, x.shape[1], vmin, vmax,
                       f"{kind} {name}")
        axes[-1, col].set_xlabel("time (s)")
    fig.colorbar(im, ax=axes.ravel().tolist(), label="normalised log-mel", shrink=0.8)
    fig.savefig(os.fspath(path), dpi=110)


def plot_grid(path, rows: Dict[str, Sequence], column_titles: Sequence[str], settings=None) -> None:
    """PNG of spectrograms [T, F] in a grid: one row per entry of `rows` (its name on the left), one column per
    title (e.g. a genre), all on one colour scale (the log floor to 0 dB, values clamped by audible_range)."""
    Figure = require("matplotlib.figure", "plotting").Figure
    s = audio.audio_settings(settings)
    n_cols = len(column_titles)
    fig = Figure(figsize=(2.6 * n_cols + 1.2, 1.9 * len(rows) + 0.4), layout="constrained")
    axes = fig.subplots(len(rows), n_cols, squeeze=False, sharex=True, sharey=True)
    for r, (name, specs) in enumerate(rows.items()):
        for c in range(n_cols):
            ax = axes[r, c]
            x = _as_array(audible_range(torch.as_tensor(_as_array(specs[c])))[0])
            im = _show(ax, x, x.shape[0] * s.hop_length / s.sample_rate, x.shape[1], IMAGE_VMIN, IMAGE_VMAX,
                       column_titles[c] if r == 0 else "")
            if c:
                ax.set_ylabel("")
        axes[r, 0].set_ylabel(f"{name}\nmel channel", fontsize=8)
    for ax in axes[-1]:
        ax.set_xlabel("time (s)")
    fig.colorbar(im, ax=axes.ravel().tolist(), label="normalised log-mel", shrink=0.8)
    fig.savefig(os.fspath(path), dpi=110)


def save_spectrogram_image(path, x, vmin: float | None = None, vmax: float | None = None) -> None:
    """x [T, F] -> 16-bit grayscale PNG (width T, height F, low channels at the bottom); the value range
    [vmin, vmax] (default: the data's) is stored in the PNG so load_spectrogram_image maps pixels back."""
    Image = require("PIL.Image", "spectrogram images")
    PngInfo = require("PIL.PngImagePlugin", "spectrogram images").PngInfo
    x = _as_array(x)
    vmin = float(x.min()) if vmin is None else float(vmin)
    vmax = float(x.max()) if vmax is None else float(vmax)
    scale = max(vmax - vmin, 1e-12)
    pixels = np.round(np.clip((x - vmin) / scale, 0, 1) * 65535).astype(np.uint16)
    info = PngInfo()
    info.add_text(_META_KEY, json.dumps({"vmin": vmin, "vmax": vmax}))
    Image.fromarray(np.ascontiguousarray(pixels.T[::-1])).save(os.fspath(path), pnginfo=info)


def load_spectrogram_image(path) -> torch.Tensor:
    """PNG -> spectrogram [T, F] float32 (T = width, F = height, the bottom row is channel 0).

    Images written by save_spectrogram_image carry their value range; for any other image (colour is turned into
    luminance) black..white map to IMAGE_VMIN..IMAGE_VMAX (the log floor to 0 dB)."""
    Image = require("PIL.Image", "spectrogram images")
    with Image.open(os.fspath(path)) as im:
        meta = json.loads(im.text[_META_KEY]) if _META_KEY in getattr(im, "text", {}) else {}
        if im.mode in ("I;16", "I;16B", "I;16L", "I"):
            pixels = np.asarray(im, dtype=np.float64) / 65535.0
        else:
            pixels = np.asarray(im.convert("L"), dtype=np.float64) / 255.0
    vmin, vmax = meta.get("vmin", IMAGE_VMIN), meta.get("vmax", IMAGE_VMAX)
    x = vmin + pixels * (vmax - vmin)
    return torch.from_numpy(np.ascontiguousarray(x[::-1].T)).float()


def plot_alignment(path, alignment, symbols: str, settings=None, frame_seconds: float | None = None,
                   title: str = "attention") -> None:
    """PNG of a text model's alignment [T_1, U] (attention weight of symbol u at initial-tier frame i): frames
    (as seconds) on the x axis, the symbols of the text (end-of-text last, shown as "~") on the y axis.
    frame_seconds: duration of one initial-tier frame (default: one hop of `settings`)."""
    Figure = require("matplotlib.figure", "plotting").Figure
    a = _as_array(alignment)
    T, U = a.shape
    if len(symbols) != U:
        raise ValueError(f"plot_alignment: {len(symbols)} symbols for an alignment over {U} positions")
    s = audio.audio_settings(settings)
    step = frame_seconds if frame_seconds is not None else s.hop_length / s.sample_rate
    fig = Figure(figsize=(max(6.0, min(16.0, 0.04 * T + 3)), max(3.0, min(14.0, 0.16 * U + 1.2))),
                 layout="constrained")
    ax = fig.subplots()
    im = ax.imshow(a.T, origin="lower", aspect="auto", extent=(0, T * step, -0.5, U - 0.5), vmin=0.0,
                   vmax=max(1e-6, float(a.max())), cmap="viridis", interpolation="nearest")
    ax.set_yticks(range(U), labels=["␣" if ch == " " else ch for ch in symbols], fontsize=7)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("text")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, label="attention weight", shrink=0.8)
    fig.savefig(os.fspath(path), dpi=110)
