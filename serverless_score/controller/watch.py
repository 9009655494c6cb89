"""The fan-out loop: launch groups under ``max_parallel``, poll their states, collect logs and
results, delete every group, retry what failed. Backend-neutral: it only speaks ``Backend``.

Every group this loop creates is deleted before ``run`` returns or raises (success, failure,
Ctrl-C, SIGTERM), and every loop here has a deadline.
"""

from __future__ import annotations

import logging
import random
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Protocol

from ..backends import Backend, GroupSpec, GroupState, Phase
from ..backends.base import LABEL_EXPIRES, LABEL_JOB, LABEL_TASKS, WaitsForGroups
from ..errors import ScoreError, TaskFailed
from ..layout import JobLayout
from ..planning.partition import Link, chain_repairs, exact_begins, pack_groups
from ..planning.tasks import Task
from ..runner.contract import (
    ENV_GROUP,
    ENV_WORK,
    AttemptStatus,
    Outcome,
    TaskOrder,
    TaskResult,
    WorkOrder,
)
from ..storage import Store
from .launches import LaunchBook
from .signals import held
from .usage import UsageMeter

log = logging.getLogger(__name__)
LOG_TAIL_LINES = 25


class Progress(Protocol):
    def job_started(self, total_tasks: int) -> None: ...
    def task_done(self, task: Task, result: TaskResult) -> None: ...
    def task_retry(self, task: Task, attempt: int, reason: str) -> None: ...


@dataclass
class TaskRecord:
    task: Task
    attempts: int = 0  # attempts started by this controller and earlier ones
    reasons: list[str] = field(default_factory=list)


@dataclass
class _Running:
    spec: GroupSpec
    tasks: list[Task]
    attempts: dict[str, int]
    deadline: float


def group_labels(job_id: str, tasks: Sequence[Task], lifetime: float) -> dict[str, str]:
    """Tags of a group: its job, its tasks and when it should be gone (its deadline plus a grace
    period), so ``cleanup --expired`` can delete what a dead controller left behind. ACI tag
    values hold 256 characters: a long task list keeps its first and last id."""
    ids = ",".join(t.id for t in tasks)
    if len(ids) > 256:
        ids = f"{tasks[0].id}..{tasks[-1].id}"
    expires = datetime.now(UTC) + timedelta(seconds=lifetime) + timedelta(minutes=10)
    return {LABEL_JOB: job_id, LABEL_TASKS: ids,
            LABEL_EXPIRES: expires.replace(microsecond=0).isoformat().replace("+00:00", "Z")}


def lost_attempt(task_id: str, attempt: int, group: str, state: GroupState | None) -> AttemptStatus:
    """The status of an attempt whose worker wrote none (it died, was stopped or never started):
    what went wrong, and whether running again can help, from the group's state."""
    if state is not None and state.detail:
        reason, retryable = f"before the task finished, the worker {state.detail}", state.retryable
    else:
        reason, retryable = "the task wrote no status (its worker ended without a word)", True
    return AttemptStatus(task_id, attempt, group,
                         Outcome.FAILED if retryable else Outcome.FAILED_PERMANENTLY, reason=reason)


def chain_of(tasks: Sequence[Task], done: Mapping[str, TaskResult]) -> list[Link]:
    """The job's byte tasks as links of their files' chains (range, pin, and where each finished
    one says its records begin and end): what both the scheduler's repairs and the job's final
    chain check reason about (``planning.partition.exact_begins``). A task is pinned when it or
    its result says so."""
    links = []
    for t in tasks:
        if t.kind != "bytes":
            continue
        result = done.get(t.id)
        pinned = t.pinned_begin if t.pinned_begin is not None else (
            result.pinned_begin if result is not None else None)
        links.append(Link(t.index, t.file_index, t.start, t.end, pinned,
                          result.begin if result is not None else None,
                          result.end if result is not None else None))
    return links


def reported_begin(status: AttemptStatus) -> int | None:
    """The offset where the runner found the task's first record (None: it never got that far)."""
    return status.begin


def tail(text: str, lines: int = LOG_TAIL_LINES) -> str:
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])


class Scheduler:
    def __init__(self, *, job_id: str, backend: Backend, store: Store, layout: JobLayout,
                 work: WorkOrder, progress: Progress, max_parallel: int, retries: int,
                 timeout: float, cpu: float = 1.0, memory_gb: float = 1.5,
                 poll_interval: float = 0.2, retry_delay: float = 0.5,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep,
                 secure_env: Callable[[list[TaskOrder]], Mapping[str, str]] | None = None) -> None:
        self.job_id = job_id
        self.backend = backend
        self.store = store
        self.layout = layout
        self.work = work
        self.progress = progress
        self.max_parallel = max_parallel
        self.retries = retries
        self.timeout = timeout
        self.cpu = cpu
        self.memory_gb = memory_gb
        self.poll_interval = poll_interval
        self.retry_delay = retry_delay
        self.clock = clock
        self.sleep = sleep
        self.launches = LaunchBook(store, layout)
        # The secrets a group's worker gets (SAS URLs of exactly its tasks' blobs), made at launch
        # so they expire with the group's deadline.
        self.secure_env = secure_env
        self.records: dict[str, TaskRecord] = {}
        self._running: dict[str, _Running] = {}
        self._known: dict[str, TaskResult] = {}
        self._chain: dict[int, Task] = {}  # every byte task of the job, by index
        self._waiting: list[tuple[Task, AttemptStatus]] = []  # failed, not yet re-queued
        self.repaired: set[str] = set()  # tasks re-run from an exact boundary (not retries)
        self.usage = UsageMeter()  # container seconds per group, for the manifest

    # -- public -------------------------------------------------------------------------------
    def run(self, tasks: Sequence[Task], previous_attempts: dict[str, int], *,
            known: dict[str, TaskResult] | None = None,
            chain: Sequence[Task] = ()) -> dict[str, TaskResult]:
        """Run ``tasks`` to completion; return their results, or raise TaskFailed.

        ``known`` are results of the job's other, finished tasks and ``chain`` all its byte tasks:
        with them a failed task whose boundary guess may have been wrong is re-run from its
        predecessor's exact end (see ``_repair_begin``)."""
        for task in tasks:
            self.records[task.id] = TaskRecord(task, previous_attempts.get(task.id, 0))
        self._known = dict(known or {})
        self._chain = {t.index: t for t in chain if t.kind == "bytes"}
        per_group = self.backend.tasks_per_group(len(tasks), self.max_parallel)
        queue: deque[tuple[float, list[Task]]] = deque(
            (0.0, group) for group in pack_groups(tasks, per_group))
        results: dict[str, TaskResult] = {}
        try:
            while queue or self._running or self._waiting:
                self._launch(queue)
                self._pause()
                self._collect(queue, results)
                self._release_waiting(queue, results, stalled=not (queue or self._running))
        finally:
            self.stop_all()
        return results

    def stop_all(self) -> None:
        """Delete every group still running (also on Ctrl-C / SIGTERM). One delete that fails
        does not stop the others; the survivors are named afterwards and stay in the
        bookkeeping, so a later ``stop_all`` (the job's ``__exit__``) tries them again. Signals
        that arrive meanwhile are held until every delete has been tried: a second Ctrl-C must
        not orphan a group that bills."""
        survivors = []
        with held():
            for name in list(self._running):
                try:
                    self.backend.delete_group(name)
                except Exception as err:
                    survivors.append(f"{name} ({err})")
                    continue
                self._running.pop(name, None)  # only now: the group is really gone
                self.usage.finished(name, None, "stopped")
                self.launches.ended(name, "stopped")
        if survivors:
            raise ScoreError(
                f"could not delete {len(survivors)} group(s): {'; '.join(survivors)}",
                hint=f"They may still run (and cost): delete them with `serverless-score cleanup "
                     f"--job {self.job_id}` or in the portal.")

    # -- internals ----------------------------------------------------------------------------
    def _pause(self) -> None:
        """Until the next look at the groups: a poll interval, cut short by a backend that can
        tell when a group finishes (a short job would otherwise lose up to one interval)."""
        if not self._running:
            self.sleep(0.05)
        elif isinstance(self.backend, WaitsForGroups):
            self.backend.wait_any(list(self._running), self.poll_interval)
        else:
            self.sleep(self.poll_interval)

    def _launch(self, queue: deque[tuple[float, list[Task]]]) -> None:
        now = self.clock()
        while queue and len(self._running) < self.max_parallel:
            not_before, tasks = queue[0]
            if not_before > now:
                break
            queue.popleft()
            attempts = {}
            orders = []
            for task in tasks:
                record = self.records[task.id]
                record.attempts += 1
                attempts[task.id] = record.attempts
                # Each attempt writes in its own folder: a stale result cannot count.
                orders.append(TaskOrder.of(self.layout, task, record.attempts))
            name = f"{self.job_id}-{tasks[0].id}-{attempts[tasks[0].id]}"
            work = replace(self.work, orders=orders)
            spec = GroupSpec(
                name=name, job_id=self.job_id, task_ids=tuple(t.id for t in tasks),
                env={ENV_WORK: work.to_json(), ENV_GROUP: name}, cpu=self.cpu,
                memory_gb=self.memory_gb,
                labels=group_labels(self.job_id, tasks, self.timeout * len(tasks)),
                secure_env=dict(self.secure_env(orders)) if self.secure_env else {},
            )
            self.usage.created(name, spec.task_ids, attempts, self.cpu, self.memory_gb)
            # Recorded before it is asked for, in the store and here: a create whose answer is
            # lost, or a Ctrl-C or kill -9 while it is in flight (the group may exist on the far
            # side already), still leaves its name for stop_all and for the next controller.
            self.launches.launching(name, self.job_id, attempts)
            self._running[name] = _Running(spec, tasks, attempts, now + self.timeout * len(tasks))
            self.backend.begin_create_group(spec)

    def _collect(self, queue: deque[tuple[float, list[Task]]],
                 results: dict[str, TaskResult]) -> None:
        if not self._running:
            return
        states = self.backend.get_states(list(self._running))
        now = self.clock()
        for name, running in list(self._running.items()):
            state = states.get(name)
            timed_out = now > running.deadline and not (state and state.phase.finished)
            if not timed_out and not (state and state.phase.finished):
                continue
            if timed_out:
                state = GroupState(name, Phase.FAILED, None,
                                   f"timed out after {self.timeout:g}s per task and was stopped")
            self._finish_group(running, state, queue, results, timed_out=timed_out)

    def _finish_group(self, running: _Running, state: GroupState | None,
                      queue: deque[tuple[float, list[Task]]],
                      results: dict[str, TaskResult], *, timed_out: bool) -> None:
        name = running.spec.name
        ended = "timed-out" if timed_out else (state.phase.value if state is not None else "failed")
        # A group seen finished stopped using its resources then; one that timed out runs (and
        # is billed) until it is deleted.
        if not timed_out:
            self.usage.finished(name, state, ended)
        # What the backend kept of the group's log (ACI: its last 1,000 lines), read before the
        # delete loses it: for people, when a worker died before it could store its tasks' logs.
        group_log = self.backend.get_logs(name)
        if not self.store.exists(self.layout.group_log(name)):
            self.store.write_bytes(self.layout.group_log(name), group_log.encode())
        with held():  # deleted and off the books together, or neither
            self.backend.delete_group(name)
            self._running.pop(name, None)
            self.launches.ended(name, ended)
        if timed_out:
            self.usage.finished(name, state, "timed-out")
        # Gone now: whatever it wrote is all it will write. Its statuses, not its log, say how
        # each task ended.
        for task in running.tasks:
            attempt = running.attempts[task.id]
            status = self._read_status(task, attempt, name, state)
            if status.result is not None:  # succeeded, its part checked by _read_status
                results[task.id] = status.result
                self.progress.task_done(task, status.result)
                continue
            self._waiting.append((task, status))
        self._release_waiting(queue, results, stalled=False)

    def _repair_begin(self, task: Task, results: dict[str, TaskResult]) -> int | str | None:
        """For a failed byte task that *guessed* where its records begin: the exact begin, once
        the chain before it proves it (``exact_begins``), ``"wait"`` until it does, or None when
        the guess cannot be the cause (pinned, first in its file, not bytes, or line-delimited
        input such as JSONL, where the first line start is always exact)."""
        previous = self._chain.get(task.index - 1)
        if (task.kind != "bytes" or task.pinned_begin is not None or previous is None
                or previous.file_index != task.file_index or not self._guesses()):
            return None
        begin = exact_begins(self._links({**self._known, **results})).get(task.index)
        return "wait" if begin is None else begin

    def _guesses(self) -> bool:
        """Whether a byte task's first record start is a guess that can be wrong (CSV: quoted
        line ends; records: a pattern that also matches inside a record), not a line start."""
        return self.work.format in ("csv", "records")

    def _links(self, done: Mapping[str, TaskResult]) -> list[Link]:
        """The chain as it stands: pins of tasks queued or running included."""
        current = [self.records[t.id].task if t.id in self.records else t
                   for t in self._chain.values()]
        return chain_of(current, done)

    def _repair_finished(self, queue: deque[tuple[float, list[Task]]],
                         results: dict[str, TaskResult]) -> None:
        """Re-run, pinned to their exact begin, the finished tasks whose guess the chain proves
        wrong (a task inside a long quoted field may "succeed" on a wrong guess): at once, not
        after the run, because the tasks after them wait for their exact end. A repair is not a
        retry: it spends none of the task's retries."""
        if not self._guesses():
            return
        done = {**self._known, **results}
        for index, begin in chain_repairs(self._links(done)):
            task = self._chain[index]
            if task.id in self.records:
                task = self.records[task.id].task
            result = results.pop(task.id, None) or self._known.pop(task.id)
            record = self.records.setdefault(task.id, TaskRecord(task, result.attempt))
            pinned = task.pinned(begin)
            record.task = pinned
            self.repaired.add(task.id)
            self.progress.task_retry(task, result.attempt,
                                     f"its records begin at byte {begin}, not at its guess "
                                     f"{result.begin}; re-running it from byte {begin}")
            queue.append((self.clock(), [pinned]))

    def _release_waiting(self, queue: deque[tuple[float, list[Task]]],
                         results: dict[str, TaskResult], *, stalled: bool) -> None:
        """Finished tasks that began at a wrong guess are re-run from their exact begin, and
        failed tasks go back in the queue: re-run from an exact boundary when their guess may
        have been wrong (free: not a retry), else retried or failed as usual."""
        self._repair_finished(queue, results)
        stalled = stalled and not queue
        waiting, self._waiting = self._waiting, []
        for task, status in waiting:
            begin = self._repair_begin(task, results)
            if isinstance(begin, int) and reported_begin(status) == begin:
                begin = None  # it began at the right record: the failure is the scorer's own
            if begin == "wait" and not stalled:
                self._waiting.append((task, status))
            elif isinstance(begin, int):
                pinned = task.pinned(begin)
                self.records[task.id].task = pinned
                self.repaired.add(task.id)
                self.progress.task_retry(task, status.attempt,
                                         f"{status.reason}; re-running it from byte {begin}")
                queue.append((self.clock(), [pinned]))
            else:
                self._retry_or_fail(task, status, queue)

    def _read_status(self, task: Task, attempt: int, group: str,
                     state: GroupState | None) -> AttemptStatus:
        """How the attempt ended, from the status its runner stored; a status that is not this
        group's own for this attempt (torn, or a zombie's) does not count."""
        try:
            status = AttemptStatus.from_json(self.store.read_bytes(self.layout.status(task.id, attempt)))
        except FileNotFoundError:
            return self._record_lost(lost_attempt(task.id, attempt, group, state))
        except (ValueError, TypeError, KeyError) as err:
            log.warning("ignoring the unreadable status of %s attempt %d: %s", task.id, attempt, err)
            return lost_attempt(task.id, attempt, group, state)
        if (status.task_id, status.attempt, status.group) != (task.id, attempt, group):
            return lost_attempt(task.id, attempt, group, state)
        if status.succeeded and self._read_result(status) is None:
            return replace(status, outcome=Outcome.FAILED, result=None,
                           reason="its part is missing or not the size its status says")
        return status

    def _record_lost(self, status: AttemptStatus) -> AttemptStatus:
        """Store the status of an attempt whose worker wrote none (its group is gone), so that
        ``status``, ``logs`` and a resumed run know the attempt was made, and how it ended. Only
        if absent, like every file of an attempt."""
        uri = self.layout.status(status.task_id, status.attempt)
        try:
            with self.store.open_atomic(uri, overwrite=False) as out:
                out.write(status.to_json().encode())
        except FileExistsError:
            pass  # written after all, too late to count: the attempt stays lost
        return status

    def _read_result(self, status: AttemptStatus) -> TaskResult | None:
        """The result of a succeeded attempt whose part is its own and complete."""
        result = status.result
        if result is None:
            return None
        part = self.layout.part(status.task_id, status.attempt)
        if (result.part != part or not self.store.exists(part)
                or self.store.size(part) != result.part_bytes):
            return None
        return result

    def _log_tail(self, task: Task, status: AttemptStatus) -> tuple[str, str]:
        """(the end of the attempt's log, where the whole of it is), from its stored log or,
        when its worker left none, from what the backend kept of the group's log."""
        for uri in (self.layout.task_log(task.id, status.attempt),
                    self.layout.group_log(status.group)):
            try:
                text = self.store.read_bytes(uri).decode("utf-8", errors="replace")
            except FileNotFoundError:
                continue
            return tail(text), uri
        return "", self.layout.task_log(task.id, status.attempt)

    def _retry_or_fail(self, task: Task, status: AttemptStatus,
                       queue: deque[tuple[float, list[Task]]]) -> None:
        attempt, reason, retryable = status.attempt, status.reason, status.retryable
        record = self.records[task.id]
        record.reasons.append(reason)
        retries_used = len(record.reasons) - 1
        if retryable and retries_used < self.retries:
            delay = self.retry_delay * (2 ** retries_used) * (0.5 + random.random())
            self.progress.task_retry(task, attempt, reason)
            queue.append((self.clock() + delay, [task]))
            return
        log_tail, log_path = self._log_tail(task, status)
        tries = f"after {attempt} attempt{'s' if attempt > 1 else ''}" if retryable else "(not retried: running it again cannot help)"
        raise TaskFailed(
            f"task {task.id} ({task.describe()}) failed {tries}: {reason}",
            task_id=task.id,
            log_tail=log_tail,
            hint=f"Full log: {log_path}",
        )
