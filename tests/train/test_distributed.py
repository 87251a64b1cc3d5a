"""Multi-GPU plumbing on the CPU: the tier-to-rank plans, and a real one-process gloo group through DDP."""

import pytest
import torch
import torch.distributed as dist

from melnet_fast.train import TierPlan, Trainer, assign_tiers, parse_assignment, tier_costs
from tests.train.conftest import make_model, options


@pytest.mark.parametrize("world, want", [
    pytest.param(1, (((1, 2, 3), (0,)),), id="one-rank-trains-all"),
    pytest.param(3, (((1,), (0,)), ((2,), (1,)), ((3,), (2,))), id="one-tier-per-rank"),
])
def test_assign_tiers_simple(world, want):
    assert assign_tiers([1, 2, 3], world).groups == want


def test_fewer_ranks_than_tiers_balances_cost():
    costs = {1: 10.0, 2: 6.0, 3: 5.0, 4: 1.0}
    plan = assign_tiers([1, 2, 3, 4], 2, costs)
    assert plan.groups == (((1, 4), (0,)), ((2, 3), (1,)))  # loads 11 and 11
    assert plan.tiers_of(1) == (2, 3) and plan.ranks_of(4) == (0,)


def test_spare_ranks_join_the_costliest_tiers():
    costs = {1: 8.0, 2: 2.0, 3: 4.0}
    plan = assign_tiers([1, 2, 3], 6, costs)
    # one rank each, then spare ranks by cost per rank: tier 1 (8 -> 4), tier 1 or 3 at 4 (lower tier first)...
    assert plan.groups == (((1,), (0, 1, 2)), ((2,), (3,)), ((3,), (4, 5)))
    assert plan.world_size == 6 and plan.ranks_of(1) == (0, 1, 2)


def test_data_parallel_mode():
    assert assign_tiers([2, 3], 4, mode="data").groups == (((2, 3), (0, 1, 2, 3)),)


def test_explicit_assignment():
    plan = parse_assignment("0:1;1:2,3;2:3,2", [1, 2, 3], 3)
    assert plan.groups == (((1,), (0,)), ((2, 3), (1, 2)))
    assert assign_tiers([1, 2, 3], 3, mode="0:1;1:2,3;2:2,3") == plan


@pytest.mark.parametrize("spec, message", [
    ("0:1;0:2,3", "appears twice"),
    ("0:1;1:2", "covers tiers"),
    ("0:1,2,3", "every rank"),
    ("zero:1", "must be .tier., .data. or look like"),
    ("0:1,2;1:2,3", "exactly one group"),
])
def test_bad_assignments(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_assignment(spec, [1, 2, 3], 2)


def test_plan_rejects_gaps_in_ranks_and_shared_tiers():
    with pytest.raises(ValueError, match="0..world_size-1"):
        TierPlan((((1,), (0,)), ((2,), (2,))))
    with pytest.raises(ValueError, match="two rank groups"):
        TierPlan((((1, 2), (0,)), ((2,), (1,))))


def test_tier_costs_follow_grid_and_depth(tiny_config):
    costs = tier_costs(tiny_config, 16)  # tiers 1, 2: 8 x 8 grids; tier 3: 8 x 16; layers 2, 1, 1; 1 feature layer
    assert costs == {1: 64 * 8, 2: 64 * (4 + 4), 3: 128 * (4 + 4)}


def test_gloo_single_process_matches_plain_training(tiny_config, datasets, tmp_path):
    """A one-rank process group runs the DDP path (plan, process groups, DDP wrapper, state broadcast, RNG
    gather) and trains exactly like the plain loop."""
    train, val = datasets
    plain = make_model(tiny_config)
    Trainer(plain, train, val, options(steps=3)).fit()
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        trainer = Trainer(make_model(tiny_config), train, val, options(steps=3, checkpoint_every=2),
                          tmp_path / "run", distributed=True)
        assert trainer.dist is not None and trainer.dist.plan.groups == (((1, 2, 3), (0,)),)
        assert isinstance(trainer.loss_module, torch.nn.parallel.DistributedDataParallel)
        trainer.fit()
        trainer.close()
    finally:
        dist.destroy_process_group()
    for name, value in plain.state_dict().items():
        torch.testing.assert_close(trainer.model.state_dict()[name], value, rtol=0, atol=1e-7, msg=name)
    assert (tmp_path / "run" / "checkpoints" / "latest.pt").is_file()


def _tier_split_worker(rank: int, root: str) -> None:
    """One rank of a two-process gloo run: rank 0 trains tiers 1 and 2, rank 1 tier 3."""
    from melnet_fast import MelNetConfig
    from melnet_fast.train import DataSpec, build_datasets

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{root}/pg", rank=rank, world_size=2)
    try:
        config = MelNetConfig.preset("tiny")
        spec = DataSpec("synthetic", synthetic_clips=6, synthetic_val_clips=4, synthetic_seconds=0.6)
        train, val = build_datasets(spec, config, 16)
        trainer = Trainer(make_model(config), train, val, options(steps=2, tier_assignment="0:1,2;1:3"),
                          f"{root}/run", distributed=True)
        assert trainer.tiers == ((1, 2) if rank == 0 else (3,))
        trainer.fit()
        trainer.close()
    finally:
        dist.destroy_process_group()


def test_two_ranks_split_by_tier_train_like_one_process(tiny_config, datasets, tmp_path):
    """Tiers are independent models, so two ranks training disjoint tiers on the same batches must end where one
    process training all of them ends; rank 0's checkpoint must hold rank 1's tier (the state broadcast)."""
    from melnet_fast import MelNet

    train, val = datasets
    plain = make_model(tiny_config)
    Trainer(plain, train, val, options(steps=2)).fit()
    torch.multiprocessing.spawn(_tier_split_worker, args=(str(tmp_path),), nprocs=2, join=True)
    saved = MelNet.load(tmp_path / "run" / "checkpoints" / "latest.safetensors")
    for name, value in plain.state_dict().items():
        torch.testing.assert_close(saved.state_dict()[name], value, rtol=0, atol=1e-7, msg=name)
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    val_row = next(r for r in rows if ",val," in r).split(",")
    assert all(val_row[6:9]), "the validation row has every tier's NLL (gathered from both ranks)"
