"""Variable-length batches: one example, a padded batch, and the length-bucketed order of an epoch.

Examples keep their own length (up to a maximum); a batch pads them at the end to its longest and carries the
lengths (see melnet_fast.lengths and MelNet.loss(..., lengths=)). Bucketing sorts the items of a pool of batches
by length before cutting batches, so that items of similar length share a batch and little compute goes to
padding; padded_share measures what is left.
"""

from __future__ import annotations

import math
from typing import List, NamedTuple, Sequence, Tuple

import torch

Plan = List[List[Tuple[int, int]]]  # batches of (item index, crop seed)


class Example(NamedTuple):
    """One item of a dataset: spec [T_i, F] float32 (normalised log-mel), label id (0 when unlabelled), text
    ("" when the corpus has none)."""

    spec: torch.Tensor
    label: int
    text: str


class Batch(NamedTuple):
    """Examples padded to the longest: spec [B, T, F] float32 (zeros after each example's length), lengths
    LongTensor [B] (frames), labels LongTensor [B], texts (a tuple of B strings)."""

    spec: torch.Tensor
    lengths: torch.Tensor
    labels: torch.Tensor
    texts: Tuple[str, ...]


def collate_examples(examples: Sequence[Example]) -> Batch:
    """Pad a list of Examples at the end to the longest (zeros) and stack them into a Batch."""
    if not examples:
        raise ValueError("collate_examples needs at least one example")
    lengths = torch.tensor([e.spec.shape[0] for e in examples], dtype=torch.long)
    F = examples[0].spec.shape[1]
    spec = examples[0].spec.new_zeros(len(examples), int(lengths.max()), F)
    for b, e in enumerate(examples):
        spec[b, :e.spec.shape[0]] = e.spec
    labels = torch.tensor([int(e.label) for e in examples], dtype=torch.long)
    return Batch(spec, lengths, labels, tuple(e.text for e in examples))


def plan_batches(lengths: Sequence[int], batch_size: int, generator: torch.Generator, *, shuffle: bool = True,
                 bucket_batches: int = 0, drop_last: bool = False, shard: int = 0, num_shards: int = 1) -> Plan:
    """The batches of one epoch over items of the given lengths (frames each item will have), as lists of
    (item index, crop seed), drawn from `generator`.

    The item order (a permutation when shuffle) and one crop seed per item are drawn first; with num_shards > 1
    this shard keeps every num_shards-th item of that order. bucket_batches > 0: the items are taken in pools of
    bucket_batches * batch_size, each pool sorted by length and cut into batches, and the batches shuffled
    (when shuffle); 0: consecutive items form a batch. drop_last: drop a last incomplete batch.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if bucket_batches < 0:
        raise ValueError(f"bucket_batches must be >= 0, got {bucket_batches}")
    n = len(lengths)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    seeds = torch.randint(0, 2**62, (n,), generator=generator)
    pairs = list(zip(order.tolist(), seeds.tolist()))[shard::num_shards]
    pool = bucket_batches * batch_size if bucket_batches else len(pairs) or 1
    batches: Plan = []
    for start in range(0, len(pairs), pool):
        chunk = pairs[start:start + pool]
        if bucket_batches:
            chunk = sorted(chunk, key=lambda pair: lengths[pair[0]])  # stable: ties keep the random order
        batches += [chunk[k:k + batch_size] for k in range(0, len(chunk), batch_size)]
    if drop_last and batches and len(batches[-1]) < batch_size:
        batches.pop()
    if bucket_batches and shuffle and batches:
        batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
    return batches


def padded_share(plan: Plan, lengths: Sequence[int]) -> float:
    """Share of the batched elements that are padding: 1 - sum of lengths / sum over batches of B * longest."""
    real = total = 0
    for batch in plan:
        lens = [lengths[i] for i, _ in batch]
        real += sum(lens)
        total += len(lens) * max(lens)
    return 1.0 - real / total if total else math.nan


__all__ = ["Example", "Batch", "collate_examples", "plan_batches", "padded_share", "Plan"]
