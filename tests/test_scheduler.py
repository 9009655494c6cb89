"""The scheduler (controller/watch.py) against a scripted backend and a fake clock: retries,
permanent failures, timeouts, stop, and signals during cleanup. The store is a real local store;
only the groups are scripted, and they write what a worker writes (part, then status)."""

from __future__ import annotations

import hashlib
import os
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from serverless_score.backends import GroupSpec, GroupState, Phase
from serverless_score.controller.launches import LaunchBook, unended
from serverless_score.controller.signals import held, interrupts
from serverless_score.controller.watch import Scheduler
from serverless_score.errors import ScoreError, TaskFailed
from serverless_score.layout import JobLayout
from serverless_score.planning.tasks import Shard, Task
from serverless_score.runner.contract import (
    ENV_WORK,
    AttemptStatus,
    TaskOrder,
    TaskResult,
    WorkOrder,
)
from serverless_score.runner.contract import Outcome as Ended
from serverless_score.storage import get_store


@dataclass
class Outcome:
    """What one attempt of one task does: run ``seconds`` of fake time, then succeed or fail."""

    seconds: float = 1.0
    ok: bool = True
    detail: str = "exited with code 1"
    retryable: bool = True
    begin: int | None = None  # byte tasks: where the attempt found its first record
    end: int | None = None  # ... and where its last one ended (success only)


@dataclass
class FakeClock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class _Group:
    spec: GroupSpec
    orders: list[TaskOrder]
    started: float
    ended: bool = False
    phase: Phase = Phase.RUNNING
    detail: str = ""
    retryable: bool = True


@dataclass
class ScriptedBackend:
    """A backend whose groups follow ``script(task_id, attempt)``; records every create and
    delete, and refuses a second group under a name already used (one group per attempt)."""

    store: object
    clock: FakeClock
    script: Callable[[str, int], Outcome]
    name: str = "scripted"
    groups: dict[str, _Group] = field(default_factory=dict)
    created: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    failing_deletes: dict[str, int] = field(default_factory=dict)  # name -> deletes that fail
    on_delete: Callable[[str], None] | None = None

    def tasks_per_group(self, pending: int, max_parallel: int) -> int:
        return 1

    def begin_create_group(self, group: GroupSpec) -> None:
        assert group.name not in self.created, f"a second group named {group.name}"
        self.created.append(group.name)
        work = WorkOrder.from_json(group.env[ENV_WORK])
        self.groups[group.name] = _Group(group, list(work.orders), self.clock())

    def _advance(self, group: _Group) -> None:
        if group.ended:
            return
        outcomes = [self.script(o.task.id, o.attempt) for o in group.orders]
        if self.clock() - group.started < max(o.seconds for o in outcomes):
            return
        group.ended = True
        for order, outcome in zip(group.orders, outcomes, strict=True):
            if outcome.ok:
                _write_result(self.store, order, group.spec.name, outcome)
            elif outcome.begin is not None:  # the worker said where it began, then failed
                status = AttemptStatus(order.task.id, order.attempt, group.spec.name,
                                       Ended.FAILED, reason=outcome.detail, begin=outcome.begin)
                self.store.write_bytes(order.status, status.to_json().encode())
                group.phase, group.detail = Phase.FAILED, outcome.detail
            else:
                group.phase, group.detail = Phase.FAILED, outcome.detail
                group.retryable = outcome.retryable
        if group.phase is Phase.RUNNING:
            group.phase = Phase.SUCCEEDED

    def get_states(self, names: Sequence[str]) -> dict[str, GroupState]:
        states = {}
        for name in names:
            group = self.groups.get(name)
            if group is None:
                states[name] = GroupState(name, Phase.FAILED, None, "no longer exists")
                continue
            self._advance(group)
            states[name] = GroupState(name, group.phase, 0 if group.phase is Phase.SUCCEEDED
                                      else None, group.detail, retryable=group.retryable)
        return states

    def get_logs(self, name: str) -> str:
        return f"log of {name}\n"

    def delete_group(self, name: str) -> None:
        if self.on_delete is not None:
            self.on_delete(name)
        if self.failing_deletes.get(name, 0) > 0:
            self.failing_deletes[name] -= 1
            raise ScoreError(f"Azure refused to delete {name}")
        self.groups.pop(name, None)
        self.deleted.append(name)

    def list_groups(self, job_id: str) -> list[str]:
        return sorted(self.groups)

    def list_all_groups(self) -> list:
        return []


def _write_result(store, order: TaskOrder, group: str, outcome: Outcome) -> None:
    part = f"{order.task.id},scored\n".encode()
    store.write_bytes(order.part, part)
    result = TaskResult(order.task.id, order.attempt, 1, 1, outcome.begin, outcome.end,
                        order.task.pinned_begin, "id,score",
                        ["id", "score"], order.part, hashlib.sha256(part).hexdigest(), len(part),
                        0.1)
    status = AttemptStatus(order.task.id, order.attempt, group, Ended.SUCCEEDED, result=result)
    store.write_bytes(order.status, status.to_json().encode())


class Events:
    def __init__(self) -> None:
        self.done: list[str] = []
        self.retries: list[tuple[str, int, str]] = []

    def job_started(self, total_tasks: int) -> None:
        pass

    def task_done(self, task: Task, result: TaskResult) -> None:
        self.done.append(task.id)

    def task_retry(self, task: Task, attempt: int, reason: str) -> None:
        self.retries.append((task.id, attempt, reason))


def shard_tasks(count: int) -> list[Task]:
    return [Task(i, "shard", shard=Shard(i, count, i, i)) for i in range(count)]


@pytest.fixture
def rig(tmp_path: Path):
    def make(script: Callable[[str, int], Outcome], *, retries: int = 2, timeout: float = 60,
             max_parallel: int = 2):
        clock = FakeClock()
        output = str(tmp_path / "out" / "s.csv")
        store = get_store(output)
        layout = JobLayout(output)
        backend = ScriptedBackend(store, clock, script)
        work = WorkOrder(job_id="job", format=None, record_pattern=None, runtime="command",
                         scorer="cat", predict_method="predict", id_columns=[], model=None,
                         output_format="csv")
        events = Events()
        scheduler = Scheduler(job_id="job", backend=backend, store=store, layout=layout,
                              work=work, progress=events, max_parallel=max_parallel,
                              retries=retries, timeout=timeout, poll_interval=1.0,
                              retry_delay=1.0, clock=clock, sleep=clock.sleep)
        return scheduler, backend, events, LaunchBook(store, layout)
    return make


def test_a_retryable_failure_is_retried_under_a_new_name_until_it_succeeds(rig) -> None:
    script = lambda task, attempt: Outcome(ok=not (task == "t00001" and attempt < 3))  # noqa: E731
    scheduler, backend, events, launches = rig(script, retries=2)
    results = scheduler.run(shard_tasks(3), {})
    assert sorted(results) == ["t00000", "t00001", "t00002"]
    assert results["t00001"].attempt == 3
    assert [r[:2] for r in events.retries] == [("t00001", 1), ("t00001", 2)]
    assert "exited with code 1" in events.retries[0][2]
    # one group per attempt, every one deleted, every launch record ended
    assert backend.created.count("job-t00001-3") == 1 and len(backend.created) == 5
    assert sorted(backend.deleted) == sorted(backend.created) and not backend.groups
    assert unended(launches.all()) == [] and len(launches.all()) == 5


def test_retries_run_out(rig) -> None:
    scheduler, backend, _, _ = rig(lambda task, attempt: Outcome(ok=task != "t00000"), retries=1)
    with pytest.raises(TaskFailed) as err:
        scheduler.run(shard_tasks(2), {})
    assert "task t00000" in err.value.message and "after 2 attempts" in err.value.message
    assert not backend.groups and not scheduler._running


def test_a_permanent_failure_is_not_retried(rig) -> None:
    script = lambda task, attempt: Outcome(  # noqa: E731
        ok=task != "t00000", detail="could not pull image x: unauthorized", retryable=False)
    scheduler, backend, events, _ = rig(script, retries=5)
    with pytest.raises(TaskFailed) as err:
        scheduler.run(shard_tasks(1), {})
    assert "not retried" in err.value.message and "unauthorized" in err.value.message
    assert backend.created == ["job-t00000-1"] and events.retries == []


def test_a_group_that_never_finishes_times_out_is_deleted_and_retried(rig) -> None:
    script = lambda task, attempt: Outcome(seconds=1e9 if attempt == 1 else 1.0)  # noqa: E731
    scheduler, backend, events, launches = rig(script, retries=1, timeout=30)
    results = scheduler.run(shard_tasks(1), {})
    assert results["t00000"].attempt == 2
    assert "timed out after 30s" in events.retries[0][2]
    assert backend.deleted[0] == "job-t00000-1"
    outcomes = {r.group: r.outcome for r in launches.all()}
    assert outcomes == {"job-t00000-1": "timed-out", "job-t00000-2": "succeeded"}


def test_a_task_that_failed_on_a_wrong_guess_is_repaired_from_its_predecessors_end(rig) -> None:
    """CSV bytes [0,100) [100,200) [200,300): t00000's last record runs to byte 130, so
    t00001's guess 105 (inside a quoted field) was wrong and it failed. It is re-run pinned at
    130 as soon as t00000 is finished (its begin is exact): a repair, not a retry."""
    ends = {"t00000": (0, 130), "t00001": (130, 210), "t00002": (210, 300)}

    def script(task: str, attempt: int) -> Outcome:
        if task == "t00001" and attempt == 1:
            return Outcome(seconds=3.0, ok=False, detail="parse error at byte 105", begin=105)
        return Outcome(begin=ends[task][0], end=ends[task][1])

    scheduler, backend, events, _ = rig(script, retries=0)
    scheduler.work = replace(scheduler.work, format="csv")
    tasks = [Task(i, "bytes", "in.csv", start=i * 100, end=(i + 1) * 100, size=100,
                 file_size=300) for i in range(3)]
    results = scheduler.run(tasks, {}, chain=tasks)
    assert {t: (r.begin, r.end) for t, r in results.items()} == ends
    assert results["t00001"].attempt == 2 and results["t00001"].pinned_begin == 130
    assert scheduler.repaired == {"t00001"}
    assert [(t, a) for t, a, _ in events.retries] == [("t00001", 1)]
    assert "re-running it from byte 130" in events.retries[0][2]
    assert sorted(backend.created) == ["job-t00000-1", "job-t00001-1", "job-t00001-2",
                                       "job-t00002-1"]


def test_attempt_numbers_continue_past_earlier_controllers(rig) -> None:
    scheduler, backend, _, _ = rig(lambda task, attempt: Outcome())
    scheduler.run(shard_tasks(2), {"t00000": 4})
    assert sorted(backend.created) == ["job-t00000-5", "job-t00001-1"]


def test_stop_keeps_a_group_whose_delete_failed_and_deletes_it_on_the_next_stop(rig) -> None:
    scheduler, backend, _, launches = rig(lambda task, attempt: Outcome(seconds=1e9),
                                          max_parallel=3)
    scheduler._launch(_queue(scheduler, shard_tasks(3)))
    backend.failing_deletes["job-t00001-1"] = 1
    with pytest.raises(ScoreError) as err:
        scheduler.stop_all()
    assert "could not delete 1 group(s): job-t00001-1 (Azure refused" in err.value.message
    assert "cleanup --job job" in err.value.hint
    assert list(scheduler._running) == ["job-t00001-1"]  # still on the books: it may bill
    assert unended(launches.all()) == ["job-t00001-1"]
    scheduler.stop_all()
    assert not scheduler._running and not backend.groups
    assert unended(launches.all()) == []


def test_a_second_signal_during_stop_is_held_until_every_group_is_deleted(rig) -> None:
    scheduler, backend, _, _ = rig(lambda task, attempt: Outcome(seconds=1e9), max_parallel=3)
    scheduler._launch(_queue(scheduler, shard_tasks(3)))
    sent: list[int] = []

    def impatient_user(name: str) -> None:  # Ctrl-C, then SIGTERM, while deletes run
        sig = signal.SIGINT if not sent else signal.SIGTERM
        sent.append(sig)
        os.kill(os.getpid(), sig)

    backend.on_delete = impatient_user
    with interrupts(), pytest.raises(KeyboardInterrupt) as err:
        scheduler.stop_all()
    assert len(sent) == 3
    assert "held until cleanup ended" in str(err.value)
    assert sorted(backend.deleted) == ["job-t00000-1", "job-t00001-1", "job-t00002-1"]
    assert not scheduler._running


def test_an_interrupt_while_running_stops_every_group_even_if_signalled_again(rig) -> None:
    scheduler, backend, _, launches = rig(lambda task, attempt: Outcome(seconds=1e9),
                                          max_parallel=3)
    polls = []
    real_get_states = backend.get_states

    def get_states(names):
        polls.append(1)
        if len(polls) == 3:
            os.kill(os.getpid(), signal.SIGTERM)  # a supervisor stops the controller
        return real_get_states(names)

    backend.get_states = get_states  # type: ignore[method-assign]
    backend.on_delete = lambda name: os.kill(os.getpid(), signal.SIGINT)  # and Ctrl-C, twice
    with interrupts(), pytest.raises(KeyboardInterrupt):
        scheduler.run(shard_tasks(3), {})
    assert sorted(backend.deleted) == sorted(backend.created) and len(backend.created) == 3
    assert not backend.groups and not scheduler._running
    assert {r.outcome for r in launches.all()} == {"stopped"}


def test_held_outside_interrupts_still_holds_a_signal(rig) -> None:
    with pytest.raises(KeyboardInterrupt), held():
        os.kill(os.getpid(), signal.SIGINT)
        reached = True
    assert reached


def test_a_lost_create_answer_leaves_a_launch_record_and_the_group_is_deleted(rig) -> None:
    """The create was applied but its answer never came: the scheduler fails, yet the group is
    deleted by name (it was on the books before the call) and its record says so."""
    scheduler, backend, _, launches = rig(lambda task, attempt: Outcome(seconds=1e9))
    real_create = backend.begin_create_group

    def create_then_lose_the_answer(group: GroupSpec) -> None:
        real_create(group)
        raise ConnectionResetError("connection reset by peer")

    backend.begin_create_group = create_then_lose_the_answer  # type: ignore[method-assign]
    with pytest.raises(ConnectionResetError):
        scheduler.run(shard_tasks(1), {})
    assert backend.created == ["job-t00000-1"] and backend.deleted == ["job-t00000-1"]
    assert [(r.group, r.outcome) for r in launches.all()] == [("job-t00000-1", "stopped")]


def _queue(scheduler: Scheduler, tasks: list[Task]):
    """What ``run`` queues for ``tasks``, for tests that launch without running the loop."""
    from collections import deque

    from serverless_score.controller.watch import TaskRecord
    scheduler.records.update({t.id: TaskRecord(t) for t in tasks})
    return deque((0.0, [t]) for t in tasks)
