"""The multiscale partition: split / interleave, the tiers' recursion, tier_index and the generation order."""

import pytest
import torch

from melnet_fast import MelNetConfig
from melnet_fast.multiscale import (
    check_divisible,
    generation_order,
    interleave,
    merge_tiers,
    split,
    split_counts,
    split_tiers,
    tier_index,
    tier_shapes,
)


@pytest.mark.parametrize("shape,axis", [
    pytest.param((3, 8, 5), 1, id="even-len-axis1"),
    pytest.param((3, 7, 5), 1, id="odd-len-axis1"),
    pytest.param((2, 4, 6, 3), 2, id="axis2-4d"),
    pytest.param((5,), 0, id="1d-odd"),
    pytest.param((4, 6), -1, id="negative-axis"),
])
def test_split_interleave_round_trip(shape, axis):
    x = torch.randn(shape)
    even, odd = split(x, axis)
    n = shape[axis]
    assert even.shape[axis] == (n + 1) // 2 and odd.shape[axis] == n // 2
    assert torch.equal(even, x.index_select(axis, torch.arange(0, n, 2)))
    assert torch.equal(odd, x.index_select(axis, torch.arange(1, n, 2)))
    assert torch.equal(interleave(even, odd, axis), x)


def test_interleave_rejects_mismatched_halves():
    with pytest.raises(ValueError, match="do not come from one split"):
        interleave(torch.zeros(2, 3), torch.zeros(2, 5), 1)


def test_tier_index_three_tiers_by_hand():
    # Tier 3 = even frames (split along time); of the odd frames, tier 2 = even channels, tier 1 = odd channels.
    expected = torch.tensor([[3, 3, 3, 3],
                             [2, 1, 2, 1],
                             [3, 3, 3, 3],
                             [2, 1, 2, 1]])
    assert torch.equal(tier_index(4, 4, 3), expected)


def test_tier_index_four_tiers_by_hand():
    # Tier 4 = even channels; of the odd channels: tier 3 = even frames; of the odd frames: tier 2 = channels
    # 1, 5 (even among 1, 3, 5, 7), tier 1 = channels 3, 7.
    odd_frame = [4, 2, 4, 1, 4, 2, 4, 1]
    even_frame = [4, 3, 4, 3, 4, 3, 4, 3]
    expected = torch.tensor([even_frame, odd_frame, even_frame, odd_frame])
    assert torch.equal(tier_index(4, 8, 4), expected)


@pytest.mark.parametrize("T,F,G", [(1, 1, 1), (4, 4, 2), (8, 8, 3), (4, 8, 4), (8, 16, 5), (8, 16, 6)])
def test_tier_index_matches_split_of_an_index_grid(T, F, G):
    grid = torch.arange(T * F).view(1, T, F)
    tiers, contexts = split_tiers(grid, G)
    index = tier_index(T, F, G).flatten()
    for g, t in enumerate(tiers, start=1):
        assert torch.all(index[t.flatten()] == g)
    assert sorted(torch.cat([t.flatten() for t in tiers]).tolist()) == list(range(T * F))
    for g in range(2, G + 1):  # x^<g is exactly the union of tiers 1..g-1, with the shape of x^g
        assert contexts[g - 1].shape == tiers[g - 1].shape
        below = torch.cat([t.flatten() for t in tiers[:g - 1]])
        assert sorted(contexts[g - 1].flatten().tolist()) == sorted(below.tolist())
    assert [tuple(t.shape[1:]) for t in tiers] == tier_shapes(T, F, G)


@pytest.mark.parametrize("G", [1, 2, 3, 4, 5, 6])
def test_merge_tiers_inverts_split_tiers(G):
    T, F = 2 ** split_counts(G)[0] * 2, 2 ** split_counts(G)[1] * 3
    x = torch.randn(2, T, F, 3)
    tiers, _ = split_tiers(x, G)
    assert torch.equal(merge_tiers(tiers), x)


def test_generation_order():
    T, F, G = 8, 8, 4
    order = generation_order(T, F, G)
    assert sorted(order.flatten().tolist()) == list(range(T * F))
    tiers, _ = split_tiers(order.unsqueeze(0), G)
    start = 0
    for t in tiers:  # tier by tier; inside a tier row-major over its own grid
        t = t[0]
        assert torch.equal(t, torch.arange(start, start + t.numel()).view(t.shape))
        start += t.numel()
    index = tier_index(T, F, G)
    assert torch.all(order[index == 1] < order[index == 2].min())


@pytest.mark.parametrize("T,F,G,msg", [
    pytest.param(6, 8, 5, "T=6 must be divisible by 4", id="T"),
    pytest.param(8, 6, 4, "F=6 must be divisible by 4", id="F"),
])
def test_check_divisible(T, F, G, msg):
    with pytest.raises(ValueError, match=msg):
        check_divisible(T, F, G)
    with pytest.raises(ValueError, match=msg):
        tier_index(T, F, G)


@pytest.mark.parametrize("name,G,time_factor,freq_factor", [
    ("blizzard", 6, 4, 8), ("maestro", 4, 2, 4), ("voxceleb2", 5, 4, 4), ("tiny", 3, 2, 2), ("small", 3, 2, 2)])
def test_tier_count_per_preset(name, G, time_factor, freq_factor):
    c = MelNetConfig.preset(name)
    assert c.n_tiers == G and len(c.layers) == G
    assert (c.time_factor, c.freq_factor) == (time_factor, freq_factor)
    T = 4 * time_factor
    shapes = tier_shapes(T, c.n_mels, G)
    assert sum(t * f for t, f in shapes) == T * c.n_mels
    assert shapes[0] == shapes[1] == (T // time_factor, c.n_mels // freq_factor)
