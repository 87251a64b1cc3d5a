"""What a batch gives the model as `cond`, and which items a text model can learn from."""

from __future__ import annotations

import warnings
from typing import Sequence

import torch

from melnet_fast.config import MelNetConfig


class SkippedUtteranceWarning(UserWarning):
    """Items were left out of a text model's data: no text, or longer than the longest example (a crop of an
    utterance no longer matches its text)."""


def batch_cond(config: MelNetConfig, labels: torch.Tensor | None, texts: Sequence[str] | None,
               device: torch.device) -> dict | None:
    """The cond of a batch for a model of `config`: "speaker" ids from `labels` [B] when n_speakers > 0, and
    "text" (the B strings) for a text model; None when the model takes neither."""
    cond = {}
    if config.n_speakers > 0 and labels is not None:
        cond["speaker"] = labels.to(device)
    if config.has_text:
        if texts is None or any(not t for t in texts):
            raise ValueError("a text model needs the text of every example; this batch has examples without text "
                             "(give the corpus a 'text' column, or LJSpeech / VCTK transcripts)")
        cond["text"] = list(texts)
    return cond or None


def symbols_per_frame(dataset, frontend, time_factor: int) -> float:
    """The speaking rate of a text corpus: text symbols (end-of-text included, as `frontend` encodes them) per
    frame of the initial tier (the full frames / time_factor), over all items with a text."""
    items = [i for i in range(len(dataset)) if dataset.texts[i]]
    if not items:
        raise ValueError("symbols_per_frame: no item of the data has a text")
    _, lengths = frontend.encode([dataset.texts[i] for i in items])
    frames = sum(dataset.num_frames(i) for i in items) / time_factor
    return float(lengths.sum()) / max(frames, 1.0)


def mismatched_texts(texts: Sequence[str]) -> list[str]:
    """Each text replaced by another one of similar length (texts sorted by length, each taking the next one's,
    the longest the shortest's): conditioning on them measures how much a text model uses its text."""
    if len(texts) < 2:
        raise ValueError("mismatched texts need at least two texts")
    order = sorted(range(len(texts)), key=lambda i: (len(texts[i]), i))
    out = list(texts)
    for k, i in enumerate(order):
        out[i] = texts[order[(k + 1) % len(order)]]
    return out


def whole_utterances(dataset, what: str = "the data"):
    """The items of `dataset` that a text model learns from or is scored on: those with a text and no longer than
    the dataset's crop_frames (longer ones would be cropped, and a crop does not match its text). The others are
    left out with one SkippedUtteranceWarning counting them; ValueError when none is left. Returns the dataset
    itself, or a data_source.Subset of it."""
    from melnet_fast.train.data_source import Subset

    limit = dataset.crop_frames
    no_text = [i for i in range(len(dataset)) if not dataset.texts[i]]
    too_long = [i for i in range(len(dataset)) if dataset.texts[i] and limit is not None
                and dataset.num_frames(i) > limit]
    if not no_text and not too_long:
        return dataset
    keep = sorted(set(range(len(dataset))) - set(no_text) - set(too_long))
    reasons = []
    if no_text:
        reasons.append(f"{len(no_text)} without text")
    if too_long:
        longest = max(dataset.num_frames(i) for i in too_long)
        reasons.append(f"{len(too_long)} longer than {limit} frames (the longest has {longest}; raise crop_frames "
                       f"or max_seconds to keep them)")
    if not keep:
        raise ValueError(f"{what}: no item is usable by a text model: {', '.join(reasons)}")
    warnings.warn(f"{what}: a text model learns from whole utterances with their texts; left out "
                  f"{', '.join(reasons)}; {len(keep)} of {len(dataset)} items kept", SkippedUtteranceWarning,
                  stacklevel=2)
    return Subset(dataset, keep)
