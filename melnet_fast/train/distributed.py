"""Multi-GPU training under torchrun: which rank trains which tiers, process groups, and state exchange.

Each tier of MelNet is an independent model (its loss involves only its own parameters, with the coarser tiers
taken from the data), so ranks can split the work two ways, freely mixed:
  - by tier: disjoint groups of tiers on disjoint groups of ranks, which never talk during a step;
  - by data: the ranks of one group train the same tiers on different batches (DDP over that group).
A TierPlan lists the groups. Between steps, at checkpoints, every group's first rank (its leader) broadcasts its
tiers' parameters and optimizer state, so that every rank holds the whole model and rank 0 can write it.
Single-process training needs none of this: the Trainer only calls here when torch.distributed is in use.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Dict, List, Sequence, Tuple

import torch
import torch.distributed as dist

from melnet_fast.config import MelNetConfig
from melnet_fast.multiscale import tier_shapes

Group = Tuple[Tuple[int, ...], Tuple[int, ...]]  # (tiers, ranks)


@dataclasses.dataclass(frozen=True)
class TierPlan:
    """groups: ((tiers, ranks), ...) with disjoint tiers, disjoint ranks covering 0..world_size-1."""

    groups: Tuple[Group, ...]

    def __post_init__(self):
        tiers = [g for t, _ in self.groups for g in t]
        ranks = sorted(r for _, rs in self.groups for r in rs)
        if len(set(tiers)) != len(tiers):
            raise ValueError(f"a tier is assigned to two rank groups: {self.describe()}")
        if ranks != list(range(len(ranks))):
            raise ValueError(f"the ranks of a plan must be 0..world_size-1, each once: {self.describe()}")
        if any(not t or not rs for t, rs in self.groups):
            raise ValueError(f"every group needs at least one tier and one rank: {self.describe()}")

    @property
    def world_size(self) -> int:
        return sum(len(rs) for _, rs in self.groups)

    def group_index(self, rank: int) -> int:
        for i, (_, rs) in enumerate(self.groups):
            if rank in rs:
                return i
        raise ValueError(f"rank {rank} is not in the plan {self.describe()}")

    def tiers_of(self, rank: int) -> Tuple[int, ...]:
        """The tiers rank `rank` trains."""
        return self.groups[self.group_index(rank)][0]

    def ranks_of(self, tier: int) -> Tuple[int, ...]:
        """The ranks that train tier `tier` (data parallel among themselves)."""
        for t, rs in self.groups:
            if tier in t:
                return rs
        raise ValueError(f"tier {tier} is not in the plan {self.describe()}")

    def describe(self) -> str:
        return "; ".join(f"tiers {','.join(map(str, t))} on ranks {','.join(map(str, rs))}"
                         for t, rs in self.groups)


def tier_costs(config: MelNetConfig, frames: int | None = None) -> Dict[int, float]:
    """Relative cost of one training step of each tier: its grid size times its LSTM directions per element
    (4 per tier-network layer: 3 in the time-delayed stack, 1 in the frequency-delayed; 4 per feature layer)."""
    frames = frames or config.max_frames
    shapes = tier_shapes(frames, config.n_mels, config.n_tiers)
    costs = {}
    for g, ((T, F), L) in enumerate(zip(shapes, config.layers), start=1):
        costs[g] = float(T * F * (4 * L + (4 * config.feature_layers if g > 1 else 0)))
    return costs


def assign_tiers(tiers: Sequence[int], world_size: int, costs: Dict[int, float] | None = None,
                 mode: str = "tier") -> TierPlan:
    """A TierPlan for `tiers` over ranks 0..world_size-1.

    mode "data": one group, every rank trains every tier. mode "tier": with no more ranks than tiers, tiers are
    packed into world_size groups of balanced cost (largest first onto the least loaded rank); with more ranks
    than tiers, each tier gets one rank and each spare rank joins the tier with the most cost per rank.
    Any other mode is read as an explicit spec, see parse_assignment.
    """
    tiers = sorted(tiers)
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    costs = {g: 1.0 for g in tiers} if costs is None else costs
    if mode == "data":
        return TierPlan(((tuple(tiers), tuple(range(world_size))),))
    if mode != "tier":
        return parse_assignment(mode, tiers, world_size)
    if world_size <= len(tiers):
        bins: List[List[int]] = [[] for _ in range(world_size)]
        load = [0.0] * world_size
        for g in sorted(tiers, key=lambda g: (-costs[g], g)):
            r = min(range(world_size), key=lambda r: (load[r], r))
            bins[r].append(g)
            load[r] += costs[g]
        return TierPlan(tuple((tuple(sorted(b)), (r,)) for r, b in enumerate(bins)))
    count = {g: 1 for g in tiers}
    for _ in range(world_size - len(tiers)):
        g = max(tiers, key=lambda g: (costs[g] / count[g], -g))
        count[g] += 1
    groups, next_rank = [], 0
    for g in tiers:
        groups.append(((g,), tuple(range(next_rank, next_rank + count[g]))))
        next_rank += count[g]
    return TierPlan(tuple(groups))


def read_assignment(spec: str) -> Dict[Tuple[int, ...], List[int]]:
    """The syntax of an explicit plan (see parse_assignment): tiers -> ranks. ValueError when it is not one."""
    by_tiers: Dict[Tuple[int, ...], List[int]] = {}
    seen = set()
    try:
        for part in filter(None, (p.strip() for p in spec.split(";"))):
            rank_text, tier_text = part.split(":")
            rank = int(rank_text)
            group = tuple(sorted(int(t) for t in tier_text.split(",")))
            if rank in seen:
                raise ValueError(f"rank {rank} appears twice")
            seen.add(rank)
            by_tiers.setdefault(group, []).append(rank)
        if not by_tiers:
            raise ValueError("it names no rank")
    except ValueError as e:
        raise ValueError(f"tier assignment {spec!r} must be 'tier', 'data' or look like '0:1,2;1:3' "
                         f"(rank:tiers;...): {e}") from None
    return by_tiers


def parse_assignment(spec: str, tiers: Sequence[int], world_size: int) -> TierPlan:
    """An explicit plan "RANK:TIER,TIER;RANK:TIER...", e.g. "0:1;1:2,3;2:2,3" (ranks 1 and 2 share tiers 2
    and 3 data-parallel). Every rank must appear once; ranks listing the same tiers form a group."""
    by_tiers = read_assignment(spec)
    seen = {r for ranks in by_tiers.values() for r in ranks}
    if seen != set(range(world_size)):
        raise ValueError(f"tier assignment {spec!r} must name every rank 0..{world_size - 1} once")
    covered = sorted(g for group in by_tiers for g in group)
    if covered != sorted(tiers):
        raise ValueError(f"tier assignment {spec!r} covers tiers {covered}; the run trains {sorted(tiers)}, "
                         f"each in exactly one group")
    return TierPlan(tuple((t, tuple(sorted(rs))) for t, rs in sorted(by_tiers.items(), key=lambda kv: kv[1][0])))


# ------------------------------------------------------------------------------------------ runtime


def launched_by_torchrun() -> bool:
    """True when the environment describes a process group (torchrun sets RANK, WORLD_SIZE, MASTER_ADDR)."""
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR"))


@dataclasses.dataclass
class DistContext:
    """This process's place in a distributed run. group: the process group of its tier group."""

    rank: int
    world_size: int
    local_rank: int
    plan: TierPlan
    group: Any
    owns_process_group: bool

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def tiers(self) -> Tuple[int, ...]:
        return self.plan.tiers_of(self.rank)

    @property
    def group_ranks(self) -> Tuple[int, ...]:
        return self.plan.groups[self.plan.group_index(self.rank)][1]

    def close(self) -> None:
        if self.owns_process_group and dist.is_initialized():
            dist.destroy_process_group()


def init_distributed(tiers: Sequence[int], costs: Dict[int, float] | None, assignment: str = "tier",
                     backend: str | None = None) -> DistContext:
    """Join (or create, from torchrun's environment) the default process group, make the tier plan and one
    process group per tier group. Every rank must call this with the same arguments."""
    owns = False
    if not dist.is_initialized():
        backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        dist.init_process_group(backend=backend)
        owns = True
    rank, world = dist.get_rank(), dist.get_world_size()
    plan = assign_tiers(tiers, world, costs, assignment)
    mine = None
    for _, ranks in plan.groups:  # every rank creates every group, in the same order
        pg = dist.new_group(list(ranks))
        if rank in ranks:
            mine = pg
    local = int(os.environ.get("LOCAL_RANK", rank))
    return DistContext(rank, world, local, plan, mine, owns)


def all_gather(obj: Any) -> List[Any]:
    """obj from every rank, in rank order."""
    out: List[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def _tier_prefixes(tiers: Sequence[int]) -> Tuple[str, ...]:
    return tuple(f"tiers.{g - 1}." for g in tiers)


def broadcast_tiers(model: torch.nn.Module, optimizer: torch.optim.Optimizer, ctx: DistContext) -> None:
    """Make every rank's copy of every tier (parameters and optimizer state) equal to its group leader's."""
    named = dict(model.named_parameters())
    for tiers, ranks in ctx.plan.groups:
        leader = ranks[0]
        prefixes = _tier_prefixes(tiers)
        payload: List[Any] = [None]
        if ctx.rank == leader:
            payload[0] = {
                "params": {n: p.detach().cpu() for n, p in named.items() if n.startswith(prefixes)},
                "optim": {n: {k: v.cpu() if torch.is_tensor(v) else v for k, v in optimizer.state[p].items()}
                          for n, p in named.items() if n.startswith(prefixes) and p in optimizer.state},
            }
        dist.broadcast_object_list(payload, src=leader)
        if ctx.rank != leader:
            with torch.no_grad():
                for n, t in payload[0]["params"].items():
                    named[n].copy_(t)
            for n, st in payload[0]["optim"].items():
                p = named[n]
                optimizer.state[p] = {k: v.to(p.device) if torch.is_tensor(v) and v.dim() else v
                                      for k, v in st.items()}
