"""The scheduler (controller/watch.py) against a scripted backend and a fake clock: retries,
permanent failures, timeouts, stop, and signals during cleanup. The store is a real local store;
only the groups are scripted, and they write what a worker writes (part, then status)."""

from __future__ import annotations

import hashlib
import json
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
    Claim,
    QueueOrder,
    TaskOrder,
    TaskResult,
    Ticket,
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
    evicted: bool = False  # its group is evicted (Spot) mid-attempt


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
    queue: QueueOrder
    seq: int
    current: tuple[TaskOrder, Outcome, float] | None = None
    idle_since: float | None = None
    tried_urgent: set[int] = field(default_factory=set)
    ended: bool = False
    phase: Phase = Phase.RUNNING
    detail: str = ""
    retryable: bool = True
    evicted: bool = False


@dataclass
class ScriptedBackend:
    """A backend whose groups pull tickets like a worker (``runner/pull.py``: read the next
    ticket, create its claim only if absent) and run each claimed attempt as
    ``script(task_id, attempt)`` says, in fake time; records every create and delete, and
    refuses a second group under a name already used."""

    store: object
    clock: FakeClock
    script: Callable[[str, int], Outcome]
    name: str = "scripted"
    groups: dict[str, _Group] = field(default_factory=dict)
    created: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    failing_deletes: dict[str, int] = field(default_factory=dict)  # name -> deletes that fail
    on_delete: Callable[[str], None] | None = None
    start_failure: tuple[str, bool] | None = None  # groups fail before a claim: (detail, retryable)
    ran: list[tuple[str, str, int]] = field(default_factory=list)  # (group, task, attempt)

    def tasks_per_group(self, pending: int, max_parallel: int) -> int:
        return 1

    def begin_create_group(self, group: GroupSpec) -> None:
        assert group.name not in self.created, f"a second group named {group.name}"
        self.created.append(group.name)
        work = WorkOrder.from_json(group.env[ENV_WORK])
        assert work.queue is not None and not work.orders, "a group pulls its work"
        queue = QueueOrder(**work.queue)
        self.groups[group.name] = _Group(group, queue, queue.start)

    def _read(self, uri: str) -> bytes | None:
        try:
            return self.store.read_bytes(uri)
        except FileNotFoundError:
            return None

    def _advance(self, group: _Group) -> None:
        name = group.spec.name
        while not group.ended:
            if self.start_failure is not None:
                group.detail, group.retryable = self.start_failure
                group.phase, group.ended = Phase.FAILED, True
                return
            if group.current is not None:
                order, outcome, since = group.current
                if self.clock() - since < outcome.seconds:
                    return
                group.current = None
                if outcome.ok:
                    _write_result(self.store, order, name, outcome)
                elif outcome.begin is not None:  # the worker said where it began, then failed
                    status = AttemptStatus(order.task.id, order.attempt, name, Ended.FAILED,
                                           reason=outcome.detail, begin=outcome.begin)
                    self.store.write_bytes(order.status, status.to_json().encode())
                else:  # the worker dies with its attempt
                    group.phase, group.detail, group.retryable = (Phase.FAILED, outcome.detail,
                                                                  outcome.retryable)
                    group.evicted = outcome.evicted
                    group.ended = True
                    return
                continue
            urgent = self._urgent(group)  # a straggler's second attempt, before the next
            data = urgent if urgent is not None else self._read(group.queue.ticket(group.seq))
            if data is None:
                now = self.clock()
                group.idle_since = now if group.idle_since is None else group.idle_since
                if (self._read(group.queue.closed) is not None
                        or now - group.idle_since >= group.queue.linger):
                    group.phase, group.ended = Phase.SUCCEEDED, True
                return
            group.idle_since = None
            ticket = Ticket.from_json(data)
            if urgent is None:
                group.seq += 1
            try:
                with self.store.open_atomic(ticket.claim, overwrite=False) as out:
                    out.write(Claim(name, ticket.seq, "").to_json())
            except FileExistsError:
                continue
            order = ticket.order
            self.ran.append((name, order.task.id, order.attempt))
            group.current = (order, self.script(order.task.id, order.attempt), self.clock())

    def _urgent(self, group: _Group) -> bytes | None:
        """The first ticket the queue's head names urgent that this group has not tried (the
        runner takes those before its own next ticket)."""
        head = self._read(group.queue.head)
        for seq in json.loads(head).get("urgent") or [] if head is not None else []:
            if seq not in group.tried_urgent:
                group.tried_urgent.add(seq)
                data = self._read(group.queue.ticket(seq))
                if data is not None:
                    return data
        return None

    def get_states(self, names: Sequence[str]) -> dict[str, GroupState]:
        states = {}
        for name in names:
            group = self.groups.get(name)
            if group is None:
                states[name] = GroupState(name, Phase.FAILED, None, "no longer exists")
                continue
            self._advance(group)
            states[name] = GroupState(name, group.phase, 0 if group.phase is Phase.SUCCEEDED
                                      else None, group.detail, retryable=group.retryable,
                                      evicted=group.evicted)
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
                        outcome.seconds)
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
             max_parallel: int = 2, straggler_factor: float = 3.0, max_evictions: int = 3):
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
                              retry_delay=1.0, straggler_factor=straggler_factor,
                              clock=clock, sleep=clock.sleep, max_evictions=max_evictions,
                              region="westeurope")
        return scheduler, backend, events, LaunchBook(store, layout)
    return make


def _ended_attempts(backend: ScriptedBackend) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for _, task, attempt in backend.ran:
        out.setdefault(task, []).append(attempt)
    return out


def test_groups_pull_every_task_once_and_never_outnumber_max_parallel(rig) -> None:
    scheduler, backend, events, launches = rig(lambda task, attempt: Outcome(), max_parallel=3)
    results = scheduler.run(shard_tasks(50), {})
    assert sorted(results) == [f"t{i:05d}" for i in range(50)]
    assert _ended_attempts(backend) == {f"t{i:05d}": [1] for i in range(50)}
    assert backend.created == ["job-g001", "job-g002", "job-g003"]
    # the work was shared: each group ran several tasks, loading its model once
    per_group = {name: sum(1 for g, _, _ in backend.ran if g == name) for name in backend.created}
    assert all(count >= 10 for count in per_group.values()), per_group
    assert sorted(backend.deleted) == sorted(backend.created) and not backend.groups
    assert unended(launches.all()) == []
    assert sorted(events.done) == sorted(results)


def test_a_group_that_dies_mid_task_loses_only_its_claim(rig) -> None:
    script = lambda task, attempt: Outcome(  # noqa: E731
        ok=not (task == "t00007" and attempt == 1), detail="was killed (exit code 137)")
    scheduler, backend, events, launches = rig(script, max_parallel=3)
    results = scheduler.run(shard_tasks(20), {})
    assert sorted(results) == [f"t{i:05d}" for i in range(20)]
    attempts = _ended_attempts(backend)
    assert attempts.pop("t00007") == [1, 2]
    assert all(a == [1] for a in attempts.values())  # no other task ran twice
    assert [(t, a) for t, a, _ in events.retries] == [("t00007", 1)]
    assert "was killed (exit code 137)" in events.retries[0][2]
    assert len(backend.created) == 4  # three, and one to replace the dead one
    assert {r.outcome for r in launches.all()} <= {"failed", "succeeded", "done"}
    assert [r.outcome for r in launches.all()].count("failed") == 1


def test_a_retryable_failure_is_retried_under_a_new_attempt_until_it_succeeds(rig) -> None:
    script = lambda task, attempt: Outcome(  # noqa: E731
        ok=not (task == "t00001" and attempt < 3), begin=0)
    scheduler, backend, events, launches = rig(script, retries=2)
    results = scheduler.run(shard_tasks(3), {})
    assert sorted(results) == ["t00000", "t00001", "t00002"]
    assert results["t00001"].attempt == 3
    assert [r[:2] for r in events.retries] == [("t00001", 1), ("t00001", 2)]
    assert "exited with code 1" in events.retries[0][2]
    # the workers stayed up (the failure was the task's, written as its status)
    assert len(backend.created) == 2
    assert sorted(backend.deleted) == sorted(backend.created) and not backend.groups
    assert unended(launches.all()) == []


def test_retries_run_out(rig) -> None:
    scheduler, backend, _, _ = rig(lambda task, attempt: Outcome(ok=task != "t00000"), retries=1)
    with pytest.raises(TaskFailed) as err:
        scheduler.run(shard_tasks(2), {})
    assert "task t00000" in err.value.message and "after 2 attempts" in err.value.message
    assert not backend.groups and not scheduler._running


EVICTED = "was evicted: Azure reclaimed its Spot capacity and restarted it"


def test_evictions_up_to_max_evictions_cost_no_retry(rig) -> None:
    script = lambda task, attempt: Outcome(  # noqa: E731
        ok=not (task == "t00001" and attempt <= 3), detail=EVICTED, evicted=True)
    scheduler, backend, events, launches = rig(script, retries=0, max_evictions=3)
    results = scheduler.run(shard_tasks(3), {})
    assert sorted(results) == ["t00000", "t00001", "t00002"]
    assert results["t00001"].attempt == 4  # three evictions, then a success: no retry spent
    record = scheduler.records["t00001"]
    assert record.evictions == 3 and record.reasons == []
    assert [r[:2] for r in events.retries] == [("t00001", 1), ("t00001", 2), ("t00001", 3)]
    assert "eviction 3 of 3 free of retries" in events.retries[-1][2]
    assert [r.outcome for r in launches.all()].count("evicted") == 3
    assert sorted(backend.deleted) == sorted(backend.created) and not backend.groups
    assert {t: r.evictions for t, r in scheduler.records.items()} == {
        "t00000": 0, "t00001": 3, "t00002": 0}


def test_evictions_past_max_evictions_spend_the_retries_then_fail_the_job(rig) -> None:
    script = lambda task, attempt: Outcome(  # noqa: E731
        ok=task != "t00000", detail=EVICTED, evicted=True)
    scheduler, backend, events, launches = rig(script, retries=1, max_evictions=2)
    with pytest.raises(TaskFailed) as err:
        scheduler.run(shard_tasks(2), {})
    # 2 evictions free, the 3rd spends the one retry, the 4th fails the job
    assert _ended_attempts(backend)["t00000"] == [1, 2, 3, 4]
    assert scheduler.records["t00000"].evictions == 4
    assert "past [azure] max_evictions = 2: this one spends a retry" in events.retries[-1][2]
    message, hint = err.value.message, err.value.hint
    assert message.startswith("task t00000 (shard 0/2") and "failed after 4 attempts" in message
    assert "evicted 4 times in region westeurope" in message
    assert "[azure] max_evictions = 2" in message and "retries = 1" in message
    assert 'priority = "Regular"' in hint and "max_evictions" in hint and "retries" in hint
    assert not backend.groups and not scheduler._running
    assert sorted(backend.deleted) == sorted(backend.created)
    assert unended(launches.all()) == []


def test_max_evictions_0_makes_every_eviction_an_ordinary_failure(rig) -> None:
    script = lambda task, attempt: Outcome(  # noqa: E731
        ok=not (task == "t00000" and attempt == 1), detail=EVICTED, evicted=True)
    scheduler, _, events, _ = rig(script, retries=1, max_evictions=0)
    results = scheduler.run(shard_tasks(1), {})
    assert results["t00000"].attempt == 2
    assert scheduler.records["t00000"].reasons == [f"before the task finished, the worker {EVICTED}"]
    assert "past [azure] max_evictions = 0: this one spends a retry" in events.retries[0][2]


def test_with_no_free_eviction_and_no_retry_the_first_eviction_fails_the_job(rig) -> None:
    script = lambda task, attempt: Outcome(ok=False, detail=EVICTED, evicted=True)  # noqa: E731
    scheduler, backend, events, _ = rig(script, retries=0, max_evictions=0)
    with pytest.raises(TaskFailed, match="after 1 attempt: it was evicted 1 time in region"):
        scheduler.run(shard_tasks(1), {})
    assert events.retries == [] and backend.created == ["job-g001"] and not backend.groups


def test_a_permanent_failure_is_not_retried(rig) -> None:
    script = lambda task, attempt: Outcome(  # noqa: E731
        ok=task != "t00000", detail="its scorer cannot load the model", retryable=False)
    scheduler, backend, events, _ = rig(script, retries=5)
    with pytest.raises(TaskFailed) as err:
        scheduler.run(shard_tasks(1), {})
    assert "not retried" in err.value.message and "cannot load the model" in err.value.message
    assert backend.created == ["job-g001"] and events.retries == []


def test_a_group_that_cannot_start_fails_the_job_at_once_when_retrying_cannot_help(rig) -> None:
    scheduler, backend, events, launches = rig(lambda task, attempt: Outcome(), retries=5)
    backend.start_failure = ("could not pull image x: unauthorized", False)
    with pytest.raises(TaskFailed) as err:
        scheduler.run(shard_tasks(4), {})
    assert "not retried" in err.value.message and "unauthorized" in err.value.message
    assert len(backend.created) <= 2 and events.retries == []  # the first failure decided
    assert sorted(backend.deleted) == sorted(backend.created)
    assert unended(launches.all()) == []


def test_groups_that_keep_failing_to_start_spend_the_retries_then_fail(rig) -> None:
    scheduler, backend, events, _ = rig(lambda task, attempt: Outcome(), retries=2,
                                        max_parallel=1)
    backend.start_failure = ("its image pull timed out", True)
    with pytest.raises(TaskFailed) as err:
        scheduler.run(shard_tasks(2), {})
    assert "pull timed out" in err.value.message
    assert len(backend.created) == 3 and len(events.retries) == 2
    assert not backend.ran  # no task was ever claimed, so none was charged an attempt


def test_a_task_that_never_finishes_times_out_its_group_is_deleted_and_retried(rig) -> None:
    script = lambda task, attempt: Outcome(seconds=1e9 if attempt == 1 else 1.0)  # noqa: E731
    scheduler, backend, events, launches = rig(script, retries=1, timeout=30,
                                               straggler_factor=0)
    results = scheduler.run(shard_tasks(1), {})
    assert results["t00000"].attempt == 2
    assert "timed out after 30s" in events.retries[0][2]
    assert backend.deleted[0] == "job-g001"
    outcomes = {r.group: r.outcome for r in launches.all()}
    assert outcomes == {"job-g001": "timed-out", "job-g002": "done"}


def test_a_straggler_gets_a_second_attempt_and_the_first_to_finish_wins(rig) -> None:
    script = lambda task, attempt: Outcome(  # noqa: E731
        seconds=100.0 if (task, attempt) == ("t00003", 1) else 2.0)
    scheduler, backend, events, launches = rig(script, max_parallel=3, timeout=1000)
    clock = scheduler.clock
    results = scheduler.run(shard_tasks(12), {})
    assert sorted(results) == [f"t{i:05d}" for i in range(12)]
    assert results["t00003"].attempt == 2  # the second attempt won
    assert scheduler.copied == {"t00003"}
    assert clock() < 40, "the slow attempt did not hold the job"
    assert any("second attempt" in reason for _, _, reason in events.retries)
    # the loser's group was stopped, nothing bills, and the task counts once
    assert {r.outcome for r in launches.all()} >= {"superseded"}
    assert sorted(backend.deleted) == sorted(backend.created) and not backend.groups
    assert events.done.count("t00003") == 1


def test_a_losing_attempt_that_already_ended_does_not_stop_its_group(rig) -> None:
    """Both attempts of a straggler end between two looks of the controller, and the loser's
    group has already taken its next task: the controller settles the winner and must not stop
    that group (it would cut the next task short and run it twice)."""
    clock: list[FakeClock] = []
    ends: dict[str, float] = {}

    def script(task: str, attempt: int) -> Outcome:
        if task != "t00003":
            return Outcome(seconds=2.0)
        now = clock[0]()
        if attempt == 1:
            ends[task] = now + 32.0
            return Outcome(seconds=32.0)
        return Outcome(seconds=max(0.5, ends[task] - now))  # ends when attempt 1 does

    # 60 tasks of 2 s on 3 groups: attempt 1 of t00003 has run longer than the queue left
    # would keep the other two groups busy at about 30 s, so its copy starts while tickets
    # still wait, and both attempts end at 34 s with tickets left to move on to.
    scheduler, backend, _, launches = rig(script, max_parallel=3, timeout=1000)
    clock.append(scheduler.clock)
    results = scheduler.run(shard_tasks(60), {})
    assert sorted(results) == [f"t{i:05d}" for i in range(60)]
    assert scheduler.copied == {"t00003"}
    ran = _ended_attempts(backend)
    assert ran.pop("t00003") == [1, 2]
    assert all(attempts == [1] for attempts in ran.values()), ran  # nobody else ran twice
    assert "superseded" not in {r.outcome for r in launches.all()}
    assert sorted(backend.deleted) == sorted(backend.created) and not backend.groups


def test_no_second_attempt_while_the_queue_would_outlast_the_straggler(rig) -> None:
    """A task 4x slower than the others early in a long queue: pulling absorbs it (the other
    groups take the queue around it), and a copy would only take one of them away."""
    script = lambda task, attempt: Outcome(  # noqa: E731
        seconds=8.0 if (task, attempt) == ("t00003", 1) else 2.0)
    scheduler, backend, _, _ = rig(script, max_parallel=3, timeout=1000)
    results = scheduler.run(shard_tasks(30), {})
    assert sorted(results) == [f"t{i:05d}" for i in range(30)]
    assert scheduler.copied == set()
    assert _ended_attempts(backend)["t00003"] == [1]


def test_without_second_attempts_a_straggler_holds_the_job(rig) -> None:
    script = lambda task, attempt: Outcome(  # noqa: E731
        seconds=100.0 if (task, attempt) == ("t00003", 1) else 2.0)
    scheduler, _, _, _ = rig(script, max_parallel=3, timeout=1000, straggler_factor=0)
    results = scheduler.run(shard_tasks(12), {})
    assert results["t00003"].attempt == 1 and scheduler.clock() >= 100


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
    assert sorted(_ended_attempts(backend).items()) == [("t00000", [1]), ("t00001", [1, 2]),
                                                        ("t00002", [1])]


def test_attempt_numbers_and_group_names_continue_past_earlier_controllers(rig) -> None:
    scheduler, backend, _, launches = rig(lambda task, attempt: Outcome())
    launches.launching("job-g007", "job", {})  # an earlier controller's last group
    scheduler = replace_scheduler(scheduler, launches)
    scheduler.run(shard_tasks(2), {"t00000": 4})
    assert sorted(_ended_attempts(backend).items()) == [("t00000", [5]), ("t00001", [1])]
    assert backend.created[0] == "job-g008"


def replace_scheduler(scheduler: Scheduler, launches: LaunchBook) -> Scheduler:
    """A new scheduler over the same job, as the next controller would make."""
    return Scheduler(job_id=scheduler.job_id, backend=scheduler.backend, store=scheduler.store,
                     layout=scheduler.layout, work=scheduler.work, progress=scheduler.progress,
                     max_parallel=scheduler.max_parallel, retries=scheduler.retries,
                     timeout=scheduler.timeout, poll_interval=scheduler.poll_interval,
                     retry_delay=scheduler.retry_delay, clock=scheduler.clock,
                     sleep=scheduler.sleep)


def _launch(scheduler: Scheduler, tasks: list[Task]) -> None:
    """Offer ``tasks`` and create the groups for them, as ``run`` starts, without its loop."""
    backlog = scheduler.begin(tasks, {})
    scheduler._offer_due(backlog)
    scheduler._top_up()


def test_stop_keeps_a_group_whose_delete_failed_and_deletes_it_on_the_next_stop(rig) -> None:
    scheduler, backend, _, launches = rig(lambda task, attempt: Outcome(seconds=1e9),
                                          max_parallel=3)
    _launch(scheduler, shard_tasks(3))
    backend.failing_deletes["job-g002"] = 1
    with pytest.raises(ScoreError) as err:
        scheduler.stop_all()
    assert "could not delete 1 group(s): job-g002 (Azure refused" in err.value.message
    assert "cleanup --job job" in err.value.hint
    assert list(scheduler._running) == ["job-g002"]  # still on the books: it may bill
    assert unended(launches.all()) == ["job-g002"]
    scheduler.stop_all()
    assert not scheduler._running and not backend.groups
    assert unended(launches.all()) == []


def test_a_second_signal_during_stop_is_held_until_every_group_is_deleted(rig) -> None:
    scheduler, backend, _, _ = rig(lambda task, attempt: Outcome(seconds=1e9), max_parallel=3)
    _launch(scheduler, shard_tasks(3))
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
    assert sorted(backend.deleted) == ["job-g001", "job-g002", "job-g003"]
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
    assert backend.created == ["job-g001"] and backend.deleted == ["job-g001"]
    assert [(r.group, r.outcome) for r in launches.all()] == [("job-g001", "stopped")]


def test_a_claim_is_taken_by_exactly_one_of_many_groups(tmp_path: Path) -> None:
    """The claim is the protocol's only lock: of many workers racing for each ticket, exactly
    one wins it (real threads, a real local store)."""
    import threading

    from serverless_score.controller.tickets import TicketBook
    from serverless_score.runner.pull import TicketQueue
    from serverless_score.storage import StoreConfig

    output = str(tmp_path / "s.csv")
    store, layout = get_store(output), JobLayout(output)
    book = TicketBook(store, layout, "run", poll=0.01, linger=0.2)
    for task in shard_tasks(200):
        book.offer(task, 1)
    book.close()
    taken: dict[str, list[int]] = {}
    lock = threading.Lock()

    def worker(name: str) -> None:
        for ticket in TicketQueue(book.queue(), name, StoreConfig()).claims():
            with lock:
                taken.setdefault(name, []).append(ticket.seq)

    threads = [threading.Thread(target=worker, args=(f"g{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    seqs = sorted(s for got in taken.values() for s in got)
    assert seqs == list(range(1, 201))
    assert len(taken) > 1  # they shared the queue
    claims = [Claim.from_json(store.read_bytes(o.ticket.claim)) for o in book.offers]
    assert all(c.group in taken and c.seq in taken[c.group] for c in claims)
