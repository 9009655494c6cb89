"""What a run's groups actually used: container seconds per group, measured by the controller from
the moment it asked for the group until it saw the group finished (or stopped it), and their cost.

A backend that knows better (ACI's container start and finish times) can report them on the
``GroupState`` it returns (``started_at`` / ``finished_at``, epoch seconds); they are used instead
and the group's ``measured_by`` says ``backend``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..backends import GroupState
from ..planning.cost import Estimate, RegionPrice, cost_of


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class GroupUsage:
    name: str
    tasks: list[str]
    attempts: dict[str, int]
    cpu: float
    memory_gb: float
    created_at: float  # epoch seconds, when the controller asked for the group
    seconds: float | None = None
    finished_at: float | None = None
    outcome: str = "running"  # succeeded | failed | evicted | timed-out | stopped
    measured_by: str = "controller"
    # Create to its first task taken (seen by the controller while the group ran), and the
    # image pull where the backend reports it (ACI's Pulling/Pulled events).
    startup_seconds: float | None = None
    pull_seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["created_at"] = _iso(self.created_at)
        data["finished_at"] = _iso(self.finished_at) if self.finished_at is not None else None
        for key in ("seconds", "startup_seconds", "pull_seconds"):
            if data[key] is not None:
                data[key] = round(data[key], 3)
        return data


@dataclass
class UsageMeter:
    """Fed by the scheduler: ``created`` when it creates a group, ``finished`` when it is done
    with it (collected, timed out or stopped)."""

    wall: Callable[[], float] = time.time
    clock: Callable[[], float] = time.monotonic
    groups: dict[str, GroupUsage] = field(default_factory=dict)
    _started: dict[str, float] = field(default_factory=dict)
    _created: dict[str, float] = field(default_factory=dict)  # clock at create, kept

    def created(self, name: str, task_ids: Sequence[str], attempts: dict[str, int], cpu: float,
                memory_gb: float) -> None:
        self._started[name] = self._created[name] = self.clock()
        self.groups[name] = GroupUsage(name, list(task_ids), dict(attempts), cpu, memory_gb,
                                       created_at=self.wall())

    def claimed(self, name: str, task_id: str, attempt: int) -> None:
        """A pulling group took an attempt of a task: its seconds are shared by its tasks."""
        usage = self.groups.get(name)
        if usage is not None and usage.seconds is None and usage.startup_seconds is None:
            usage.startup_seconds = self.clock() - self._created.get(name, self.clock())
        if usage is not None and usage.attempts.get(task_id) != attempt:
            if task_id not in usage.tasks:
                usage.tasks.append(task_id)
            usage.attempts[task_id] = attempt

    def finished(self, name: str, state: GroupState | None, outcome: str) -> None:
        usage = self.groups.get(name)
        if usage is None or usage.seconds is not None:
            return
        usage.outcome = outcome
        usage.finished_at = self.wall()
        usage.seconds = max(0.0, self.clock() - self._started.pop(name, self.clock()))
        usage.pull_seconds = getattr(state, "pull_seconds", None)
        started = getattr(state, "started_at", None)
        ended = getattr(state, "finished_at", None)
        if started is not None and ended is not None and ended >= started:
            usage.seconds, usage.measured_by = ended - started, "backend"

    def summary(self, *, billed: bool, price: RegionPrice | None,
                estimate: Estimate | None = None) -> dict[str, Any]:
        """Totals, per-group figures and the cost, for the manifest and ``run --json``."""
        done = [g for g in self.groups.values() if g.seconds is not None]
        seconds = sum(g.seconds or 0.0 for g in done)
        vcpu_s = sum((g.seconds or 0.0) * g.cpu for g in done)
        gb_s = sum((g.seconds or 0.0) * g.memory_gb for g in done)
        if not billed:
            cost: float | None = 0.0
        else:
            cost = round(cost_of(vcpu_s, gb_s, price), 9) if price is not None else None
        return {
            "groups": len(done),
            "container_seconds": round(seconds, 3),
            "vcpu_seconds": round(vcpu_s, 3),
            "gb_seconds": round(gb_s, 3),
            "cost": cost,
            "currency": price.currency if price is not None else "USD",
            "billed": billed,
            "price": price.to_dict() if price is not None and billed else None,
            "estimate": _versus(estimate, seconds, cost) if estimate is not None else None,
            "evictions": sum(1 for g in done if g.outcome == "evicted"),
            "per_group": [g.to_dict() for g in done],
        }

    def task_seconds(self) -> dict[str, float]:
        """Container seconds per task: each group's seconds shared equally by its tasks (a
        group's start-up is paid by all of them), summed over the task's attempts."""
        per: dict[str, float] = {}
        for group in self.groups.values():
            if group.seconds is None or not group.tasks:
                continue
            share = group.seconds / len(group.tasks)
            for task in group.tasks:
                per[task] = per.get(task, 0.0) + share
        return per


def _versus(estimate: Estimate, seconds: float, cost: float | None) -> dict[str, Any]:
    """The estimate made before the run beside what the run used: actual / estimate."""
    def ratio(actual: float | None, expected: float | None) -> float | None:
        if actual is None or not expected:
            return None
        return round(actual / expected, 3)

    return {"cost": round(estimate.cost, 6) if estimate.cost is not None else None,
            "container_seconds": round(estimate.container_seconds, 1),
            "vcpu_seconds": round(estimate.vcpu_seconds, 1),
            "calibration": estimate.calibration,
            "actual_over_estimate": {
                "container_seconds": ratio(seconds, estimate.container_seconds),
                "cost": ratio(cost, estimate.cost)}}
