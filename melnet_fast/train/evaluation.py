"""Held-out negative log-likelihood per tier and overall, in nats and bits per element, next to the baseline."""

from __future__ import annotations

import dataclasses
import math
from typing import Dict, List, Sequence, Tuple

import torch

from melnet_fast.lengths import length_mask
from melnet_fast.model import MelNet
from melnet_fast.multiscale import tier_index
from melnet_fast.train.baseline import ChannelGaussian
from melnet_fast.train.conditioning import batch_cond

LN2 = math.log(2.0)


@dataclasses.dataclass
class EvalResult:
    """NLLs in nats per element. tiers: tier -> model NLL; baseline_tiers: tier -> baseline NLL on the same
    elements; elements: tier -> number of elements scored; segments: how many [frames, F] segments."""

    tiers: Dict[int, float]
    elements: Dict[int, int]
    baseline_tiers: Dict[int, float]
    segments: int
    segment_frames: int

    @property
    def nll_nats(self) -> float:
        """Overall model NLL: total nats over the scored tiers / their elements."""
        n = sum(self.elements.values())
        return sum(self.tiers[g] * self.elements[g] for g in self.tiers) / n

    @property
    def baseline_nll_nats(self) -> float | None:
        if not self.baseline_tiers:
            return None
        n = sum(self.elements.values())
        return sum(self.baseline_tiers[g] * self.elements[g] for g in self.baseline_tiers) / n

    def to_dict(self) -> Dict:
        base = self.baseline_nll_nats
        return {
            "nll_nats": self.nll_nats, "nll_bits": self.nll_nats / LN2,
            "baseline_nll_nats": base, "baseline_nll_bits": None if base is None else base / LN2,
            "tiers": {str(g): {"nll_nats": v, "nll_bits": v / LN2, "elements": self.elements[g],
                               "baseline_nll_nats": self.baseline_tiers.get(g)}
                      for g, v in self.tiers.items()},
            "segments": self.segments, "segment_frames": self.segment_frames,
        }


def segments(dataset, frames: int, max_segments: int | None = None, multiple: int = 1
             ) -> List[Tuple[int, int, int]]:
    """(item, start frame, length) of the non-overlapping segments that tile every item, item by item: segments of
    `frames` frames, and a last shorter one for the remainder (rounded down to a multiple of `multiple`; dropped
    when that leaves nothing). The first max_segments of them when given. Deterministic."""
    out = []
    for i in range(len(dataset)):
        n = dataset.num_frames(i)
        for start in range(0, n, frames):
            length = min(frames, n - start)
            length -= length % multiple
            if length <= 0:
                break
            out.append((i, start, length))
            if max_segments is not None and len(out) >= max_segments:
                return out
    return out


def full_segments(dataset, frames: int, max_segments: int | None = None) -> List[Tuple[int, int]]:
    """(item, start frame) of the segments of exactly `frames` frames among `segments(dataset, frames)` (the
    shorter remainders left out), the first max_segments of them when given: for models that make clips of one
    length."""
    out = [(i, start) for i, start, length in segments(dataset, frames) if length == frames]
    return out if max_segments is None else out[:max_segments]


@torch.no_grad()
def evaluate(model: MelNet, dataset, segment_frames: int, *, tiers: Sequence[int] | None = None,
             baseline: ChannelGaussian | None = None, batch_size: int = 8, max_segments: int | None = None,
             conditional: bool | None = None, texts: Sequence[str] | None = None) -> EvalResult:
    """Score the segments of `dataset` (see `segments`) with `model` on its own device.

    dataset: anything with len, num_frames(i), spectrogram(i) -> [T_i, F] and labels (a SpectrogramCropDataset).
    segment_frames: a multiple of model.config.time_factor; items are cut into segments of that many frames and
    a last shorter one, scored in batches of similar lengths with `lengths` (every element of an item counts,
    but the last few frames short of a multiple of time_factor). tiers: which tiers to score (default all).
    conditional: pass the dataset labels as speaker ids (default: when the model has n_speakers > 0).
    A text model scores whole utterances with their texts (dataset.texts, or `texts`, one per item, e.g.
    train.conditioning.mismatched_texts(dataset.texts)): every item must fit in one segment.
    """
    c = model.config
    tiers = list(range(1, c.n_tiers + 1)) if tiers is None else sorted(tiers)
    if segment_frames % c.time_factor:
        raise ValueError(f"segment_frames={segment_frames} must be a multiple of {c.time_factor}")
    conditional = c.n_speakers > 0 if conditional is None else conditional
    param = next(model.parameters())
    where = segments(dataset, segment_frames, max_segments, c.time_factor)
    if not where:
        raise ValueError(f"no item of the evaluation data has {c.time_factor} frames or more")
    if c.has_text:
        cut = sorted({i for i, start, _ in where if start > 0})
        if cut:
            raise ValueError(f"a text model scores whole utterances, but {len(cut)} items are longer than "
                             f"segment_frames={segment_frames} (item {cut[0]} has {dataset.num_frames(cut[0])} "
                             f"frames): raise the segment length")
    where = sorted(where, key=lambda seg: seg[2])  # batches of similar lengths: little padding
    owner = tier_index(segment_frames, c.n_mels, c.n_tiers).to(param.device)  # [T, F]: tier of each position
    totals = {g: 0.0 for g in tiers}
    base_totals = {g: 0.0 for g in tiers}
    counts = {g: 0 for g in tiers}
    was_training = model.training
    model.eval()
    try:
        for b in range(0, len(where), batch_size):
            chunk = where[b:b + batch_size]
            lengths = torch.tensor([n for _, _, n in chunk], device=param.device)
            T = int(lengths.max())
            x = param.new_zeros(len(chunk), T, c.n_mels)
            for k, (i, s, n) in enumerate(chunk):
                x[k, :n] = dataset.spectrogram(i)[s:s + n].to(x)
            labels = torch.tensor([dataset.labels[i] for i, _, _ in chunk]) if conditional else None
            chunk_texts = [(texts or dataset.texts)[i] for i, _, _ in chunk] if c.has_text else None
            cond = batch_cond(c, labels, chunk_texts, param.device)
            real = length_mask(lengths, T)[:, :, None]  # [B, T, 1]
            base = baseline.nll(x) if baseline is not None else None
            for g in tiers:
                in_tier = real & (owner[:T] == g)  # owner of the first T frames: the tiers' grids repeat in time
                n = int(in_tier.sum())
                totals[g] += float(model.loss(x, cond, tiers=[g], lengths=lengths)) * n
                counts[g] += n
                if base is not None:
                    base_totals[g] += float(base[in_tier.expand_as(base)].sum())
    finally:
        model.train(was_training)
    return EvalResult(
        tiers={g: totals[g] / counts[g] for g in tiers}, elements=counts,
        baseline_tiers={g: base_totals[g] / counts[g] for g in tiers} if baseline is not None else {},
        segments=len(where), segment_frames=segment_frames)
