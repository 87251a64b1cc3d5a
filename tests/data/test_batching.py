"""Variable-length batches: collate pads at the end and carries lengths; length buckets cut the padding."""

import pytest
import torch

from melnet_fast.batching import Example, collate_examples, padded_share, plan_batches


def test_collate_pads_to_the_longest_and_carries_lengths_labels_texts():
    a, b = torch.randn(5, 3), torch.randn(2, 3)
    batch = collate_examples([Example(a, 1, "one"), Example(b, 0, "")])
    assert batch.spec.shape == (2, 5, 3) and batch.lengths.tolist() == [5, 2] and batch.labels.tolist() == [1, 0]
    assert torch.equal(batch.spec[0], a) and torch.equal(batch.spec[1, :2], b) and not batch.spec[1, 2:].any()
    assert batch.texts == ("one", "")
    with pytest.raises(ValueError, match="at least one example"):
        collate_examples([])


def lengths_of(n=200, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(2, 100, (n,), generator=g) * 2).tolist()  # speech-like spread of lengths


@pytest.mark.parametrize("bucket", [0, 1, 8])
@pytest.mark.parametrize("drop_last", [False, True])
def test_every_item_once_per_epoch_and_deterministic(bucket, drop_last):
    lengths = lengths_of(203)
    plan = plan_batches(lengths, 16, torch.Generator().manual_seed(3), bucket_batches=bucket, drop_last=drop_last)
    again = plan_batches(lengths, 16, torch.Generator().manual_seed(3), bucket_batches=bucket, drop_last=drop_last)
    other = plan_batches(lengths, 16, torch.Generator().manual_seed(4), bucket_batches=bucket, drop_last=drop_last)
    assert plan == again and plan != other
    items = [i for batch in plan for i, _ in batch]
    assert len(items) == len(set(items)) == (192 if drop_last else 203)
    assert all(len(b) == 16 for b in plan[:-1] if bucket == 0) and all(len(b) <= 16 for b in plan)
    if drop_last:
        assert all(len(b) == 16 for b in plan)


def test_buckets_cut_the_padded_share():
    lengths = lengths_of(400)
    random = plan_batches(lengths, 16, torch.Generator().manual_seed(0))
    bucketed = plan_batches(lengths, 16, torch.Generator().manual_seed(0), bucket_batches=25)
    share_random, share_bucketed = padded_share(random, lengths), padded_share(bucketed, lengths)
    assert share_bucketed < 0.05 < 0.3 < share_random
    # the share is 1 - real / (B * longest) summed over batches
    real = sum(lengths)
    total = sum(len(b) * max(lengths[i] for i, _ in b) for b in bucketed)
    assert share_bucketed == pytest.approx(1 - real / total)
    assert padded_share(plan_batches([8] * 10, 4, torch.Generator()), [8] * 10) == 0.0


def test_shards_split_the_same_order():
    lengths = lengths_of(50)
    shards = [plan_batches(lengths, 4, torch.Generator().manual_seed(1), bucket_batches=2, shard=r, num_shards=3)
              for r in range(3)]
    items = [[i for b in plan for i, _ in b] for plan in shards]
    assert sorted(sum(items, [])) == list(range(50))
    whole = plan_batches(lengths, 1, torch.Generator().manual_seed(1))
    order = [b[0] for b in whole]  # the item order and crop seeds of the epoch
    for r in range(3):
        assert sorted(p for b in shards[r] for p in b) == sorted(order[r::3])
