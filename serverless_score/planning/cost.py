"""Cost arithmetic, pure: how long a plan's groups should run, what that costs, and what a run's
measured container seconds cost. No I/O: prices and assumptions come in as data
(``serverless_score.pricing`` reads them from a TOML file).

The model (every assumption is printed with the estimate):

* a group runs its tasks one after another, so its seconds are ``startup_seconds`` (image pull,
  container and runtime start, model load) plus, per task, ``task bytes / throughput`` (or
  ``shard_seconds`` for a shard task);
* the backend bills each group for what it *requests*: vCPU-seconds = seconds x ``cpu``,
  GB-seconds = seconds x ``memory_gb``; cost = vCPU-s x price + GB-s x price;
* retries, repairs and waiting for a free slot are not counted (a retry costs one task again).
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from .tasks import Task

MB = 10**6


@dataclass(frozen=True)
class RegionPrice:
    """What one region charges per second, with where the figure came from."""

    region: str
    vcpu_second: float
    gb_second: float
    currency: str
    as_of: str
    source: str
    verified: bool = False
    priority: str = "Regular"  # "Spot": ACI's Spot meters (evictable groups)
    note: str = ""  # e.g. why a cached or shipped figure was used, and how old it is

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Assumptions:
    throughput_mb_per_s: float  # input bytes a group scores per second
    startup_seconds: float  # per group, for the job's backend
    shard_seconds: float  # per shard task (no bytes to go by)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Estimate:
    """What ``plan`` shows and ``max_cost`` is checked against."""

    backend: str
    tasks: int
    groups: int
    tasks_per_group: int
    max_parallel: int
    cpu: float
    memory_gb: float
    container_seconds: float  # all groups together
    vcpu_seconds: float  # "core-seconds"
    gb_seconds: float
    wall_seconds: float  # groups in parallel under max_parallel, start-up included
    billed: bool  # False for backends on your own machine (local, docker): cost 0
    cost: float | None  # None: billed, but no price for the region
    price: RegionPrice | None
    assumptions: Assumptions
    packing: str = ""  # how tasks were packed into groups, in words
    # The same groups at the other priority's price (Spot when the job runs Regular, and the
    # other way round), so plan shows both; None when that price is unknown.
    alt_price: RegionPrice | None = None
    alt_cost: float | None = None
    calibration: str = ""  # where the throughput and start-up came from, in words

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("container_seconds", "vcpu_seconds", "gb_seconds", "wall_seconds"):
            data[key] = round(data[key], 1)
        for key in ("cost", "alt_cost"):
            if data[key] is not None:
                data[key] = round(data[key], 4)
        return data


def task_seconds(task: Task, assumptions: Assumptions) -> float:
    """Expected scoring seconds of one task (start-up excluded)."""
    if task.kind == "shard":
        return assumptions.shard_seconds
    return task.size / (assumptions.throughput_mb_per_s * MB)


def group_seconds(groups: Sequence[Sequence[Task]], assumptions: Assumptions) -> list[float]:
    """Expected seconds of each group: start-up, then its tasks one after another."""
    return [assumptions.startup_seconds + sum(task_seconds(t, assumptions) for t in group)
            for group in groups]


def wall_seconds(seconds: Sequence[float], max_parallel: int) -> float:
    """When the last group ends if groups start in order, each in the first free slot."""
    slots = [0.0] * max(1, min(max_parallel, len(seconds)))
    for duration in seconds:
        heapq.heappush(slots, heapq.heappop(slots) + duration)
    return max(slots, default=0.0)


def cost_of(vcpu_seconds: float, gb_seconds: float, price: RegionPrice) -> float:
    return vcpu_seconds * price.vcpu_second + gb_seconds * price.gb_second


def estimate(groups: Sequence[Sequence[Task]], *, backend: str, max_parallel: int, cpu: float,
             memory_gb: float, assumptions: Assumptions, billed: bool,
             price: RegionPrice | None, packing: str = "", alt_price: RegionPrice | None = None,
             calibration: str = "") -> Estimate:
    """The estimate of running ``groups`` (tasks already packed, as the scheduler packs them)."""
    seconds = group_seconds(groups, assumptions)
    total = sum(seconds)
    vcpu_s, gb_s = total * cpu, total * memory_gb
    if not billed:
        cost: float | None = 0.0
    else:
        cost = cost_of(vcpu_s, gb_s, price) if price is not None else None
    alt_cost = cost_of(vcpu_s, gb_s, alt_price) if billed and alt_price is not None else None
    return Estimate(
        backend=backend, tasks=sum(len(g) for g in groups), groups=len(groups),
        tasks_per_group=max((len(g) for g in groups), default=0), max_parallel=max_parallel,
        cpu=cpu, memory_gb=memory_gb, container_seconds=total, vcpu_seconds=vcpu_s,
        gb_seconds=gb_s, wall_seconds=wall_seconds(seconds, max_parallel), billed=billed,
        cost=cost, price=price if billed else None, assumptions=assumptions, packing=packing,
        alt_price=alt_price if billed else None, alt_cost=alt_cost, calibration=calibration,
    )
