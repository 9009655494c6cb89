"""The fan-out loop: launch groups under ``max_parallel``, poll their states, collect logs and
results, delete every group, retry what failed. Backend-neutral: it only speaks ``Backend``.

Every group this loop creates is deleted before ``run`` returns or raises (success, failure,
Ctrl-C, SIGTERM), and every loop here has a deadline.
"""

from __future__ import annotations

import logging
import math
import os
import random
import re
import secrets
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Protocol

from ..backends import Backend, GroupSpec, GroupState, Phase
from ..backends.base import (
    LABEL_EXPIRES,
    LABEL_JOB,
    LABEL_TASKS,
    PacesCreates,
    WaitsForGroups,
)
from ..errors import ScoreError, TaskFailed
from ..layout import JobLayout
from ..planning.partition import Link, chain_repairs, exact_begins, fleet_size
from ..planning.tasks import Task
from ..runner.contract import (
    ENV_GROUP,
    ENV_NOTIFY,
    ENV_WORK,
    AttemptStatus,
    Outcome,
    TaskResult,
    WorkOrder,
)
from ..storage import Store, is_local
from ..units import plural
from .access import WorkerAccess
from .launches import LaunchBook, LaunchRecord
from .signals import held
from .tickets import Offer, TicketBook
from .usage import UsageMeter
from .wakeup import StatusWakeup

log = logging.getLogger(__name__)
LOG_TAIL_LINES = 25
# Stragglers: how many tasks must have finished before a median means something, and the least
# a task must have run before it counts as one (tiny tasks vary by more than 3x at random).
MIN_DURATIONS = 3
MIN_STRAGGLER_SECONDS = 2.0
# Tasks waiting to be offered: (not before, task, a straggler's second attempt?)
Backlog = list[tuple[float, Task, bool]]


class Progress(Protocol):
    def job_started(self, total_tasks: int) -> None: ...
    def task_done(self, task: Task, result: TaskResult) -> None: ...
    def task_retry(self, task: Task, attempt: int, reason: str) -> None: ...


@dataclass
class TaskRecord:
    task: Task
    attempts: int = 0  # attempts started by this controller and earlier ones
    reasons: list[str] = field(default_factory=list)
    evictions: int = 0  # attempts of it lost to evicted (Spot) groups of this controller


def _highest_group_number(job_id: str, records: Sequence[LaunchRecord]) -> int:
    """Groups are numbered past every group this job ever launched: a name is never reused."""
    pattern = re.compile(rf"^{re.escape(job_id)}-g(\d+)$")
    numbers = [int(m.group(1)) for r in records if (m := pattern.match(r.group))]
    return max(numbers, default=0)


def group_labels(job_id: str, tasks: Sequence[Task], lifetime: float) -> dict[str, str]:
    """Tags of a group: its job, its tasks ("queue" for a group that pulls them) and when it
    should be gone (its deadline plus a grace period), so ``cleanup --expired`` can delete what a
    dead controller left behind. ACI tag values hold 256 characters: a long task list keeps its
    first and last id."""
    ids = ",".join(t.id for t in tasks) or "queue"
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


@dataclass
class _Group:
    spec: GroupSpec
    created_at: float  # controller clock
    claimed: int = 0  # tickets seen claimed by it


class Scheduler:
    """Runs a job's tasks on groups that pull them (``controller/tickets.py``,
    ``runner/pull.py``): each task's attempt is offered as a ticket, and the scheduler keeps up
    to ``max_parallel`` groups alive while tickets wait, never one group per task. A task that
    runs ``straggler_factor`` x longer than the median, once nothing else waits, gets a second
    attempt beside it on a free group; the first to finish wins and the other is stopped."""

    def __init__(self, *, job_id: str, backend: Backend, store: Store, layout: JobLayout,
                 work: WorkOrder, progress: Progress, max_parallel: int, retries: int,
                 timeout: float, cpu: float = 1.0, memory_gb: float = 1.5,
                 poll_interval: float = 0.2, retry_delay: float = 0.5,
                 straggler_factor: float = 3.0, linger: float = 20.0,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep,
                 access: WorkerAccess | None = None, max_evictions: int = 3,
                 region: str | None = None) -> None:
        self.job_id = job_id
        self.backend = backend
        self.store = store
        self.layout = layout
        self.work = work
        self.progress = progress
        self.max_parallel = max(1, max_parallel)
        self.retries = retries
        self.timeout = timeout
        self.cpu = cpu
        self.memory_gb = memory_gb
        self.poll_interval = poll_interval
        self.retry_delay = retry_delay
        self.straggler_factor = straggler_factor
        self.linger = linger
        # Evictions per task that cost no retry (``[azure] max_evictions``), and where the
        # groups run (ACI's location), for the message of a task evicted past them.
        self.max_evictions = max_evictions
        self.region = region
        self.clock = clock
        self.sleep = sleep
        self.launches = LaunchBook(store, layout)
        # What workers on SAS URLs are given: only what each attempt and the queue need.
        self.access = access
        self.records: dict[str, TaskRecord] = {}
        self._running: dict[str, _Group] = {}
        self._last_states: dict[str, GroupState] = {}  # what each group's backend last said
        self._known: dict[str, TaskResult] = {}
        self._chain: dict[int, Task] = {}  # every byte task of the job, by index
        self._waiting: list[tuple[Task, AttemptStatus]] = []  # failed, not yet re-queued
        self.repaired: set[str] = set()  # tasks re-run from an exact boundary (not retries)
        self.copied: set[str] = set()  # stragglers given a second attempt beside the first
        self.evicted: set[str] = set()  # Spot groups Azure evicted (see _retry_or_fail)
        self.usage = UsageMeter()  # container seconds per group, for the manifest
        self._book: TicketBook | None = None
        self._run_token = f"{int(time.time())}-{secrets.token_hex(3)}"
        self._runs = 0
        self._wakeup: StatusWakeup | None = None  # (controller/wakeup.py)
        self._group_number = _highest_group_number(job_id, self.launches.all())
        self._durations: list[float] = []  # seconds of succeeded attempts, for stragglers
        self._start_failures = 0  # groups in a row that ended without taking a ticket
        self._create_not_before = 0.0
        self._tasks = 0  # in the current run, for the lifetime of its groups
        self.fleet = self.max_parallel  # groups kept alive while work waits (``begin``)
        # How often claims and statuses are read: each look is a request per running attempt
        # on a remote store, where a second more before a result is seen costs nothing.
        self._store_interval = (poll_interval if is_local(layout.work)
                                else max(1.0, poll_interval))
        self._next_store_look = 0.0
        self._results_in = 0  # results come in so far (a count that only grows)
        self._chain_seen = -1  # ... when the chain was last checked
        self._next_chain_look = 0.0

    # -- public -------------------------------------------------------------------------------
    def run(self, tasks: Sequence[Task], previous_attempts: dict[str, int], *,
            known: dict[str, TaskResult] | None = None,
            chain: Sequence[Task] = ()) -> dict[str, TaskResult]:
        """Run ``tasks`` to completion; return their results, or raise TaskFailed.

        ``known`` are results of the job's other, finished tasks and ``chain`` all its byte tasks:
        with them a failed task whose boundary guess may have been wrong is re-run from its
        predecessor's exact end (see ``_repair_begin``)."""
        try:
            backlog = self.begin(tasks, previous_attempts, known=known, chain=chain)
        except BaseException:
            self._close_wakeup()  # made before the queue that failed
            raise
        book = self._book
        assert book is not None
        results: dict[str, TaskResult] = {}
        try:
            while backlog or self._waiting or book.open:
                self._top_up(len(backlog))
                self._offer_due(backlog)
                self._pause()
                self._poll(backlog, results)
                in_flight = bool(backlog) or book.open
                self._release_waiting(backlog, results, stalled=not in_flight)
                self._second_attempts(backlog, results)
            book.close()
            for name in list(self._running):  # waiting for work that will not come
                self._end_group(name, None, backlog, results, stopped="done")
        finally:
            try:
                self.stop_all()
            finally:
                self._close_wakeup()
        return results

    def _close_wakeup(self) -> None:
        if self._wakeup is not None:
            self._wakeup.close()
            self._wakeup = None

    def begin(self, tasks: Sequence[Task], previous_attempts: dict[str, int], *,
              known: dict[str, TaskResult] | None = None, chain: Sequence[Task] = ()) -> Backlog:
        """A new queue for ``tasks``; returns them as a backlog to offer (``run`` does it)."""
        for task in tasks:
            old = self.records.get(task.id)  # a repair run: its evictions still count
            self.records[task.id] = TaskRecord(task, previous_attempts.get(task.id, 0),
                                               evictions=old.evictions if old else 0)
        self._known = dict(known or {})
        self._chain = {t.index: t for t in chain if t.kind == "bytes"}
        self._runs += 1
        self._tasks = len(tasks)
        # How many groups: the backend's packing (ACI amortises a group's start-up over enough
        # tasks) decides how many tasks each should get, max_parallel caps how many run.
        per_group = self.backend.tasks_per_group(len(tasks), self.max_parallel)
        self.fleet = max(1, fleet_size(len(tasks), per_group, self.max_parallel))
        lifetime = self._lifetime(len(tasks))
        run = f"{self._run_token}-{self._runs}"
        self._close_wakeup()
        if is_local(self.layout.work):  # workers on this file system can wake the controller
            # a plain absolute path: the same in a worker's working directory or a container
            folder = os.path.abspath(self.layout.queues_dir.removeprefix("file://"))
            self._wakeup = StatusWakeup.create(os.path.join(folder, f"{run}.wakeup"))
        self._book = TicketBook(
            self.store, self.layout, run,
            access=self.access.for_queue(lifetime) if self.access is not None else None,
            poll=min(2.0, max(0.05, self.poll_interval)), linger=self.linger)
        self._book.stride = self.fleet
        return [(0.0, task, False) for task in tasks]

    def stop_all(self, outcome: str = "stopped") -> None:
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
                self.usage.finished(name, None, outcome)
                self.launches.ended(name, outcome)
        if survivors:
            raise ScoreError(
                f"could not delete {len(survivors)} group(s): {'; '.join(survivors)}",
                hint=f"They may still run (and cost): delete them with `serverless-score cleanup "
                     f"--job {self.job_id}` or in the portal.")

    @property
    def groups_created(self) -> int:
        return len(self.usage.groups)

    # -- groups -------------------------------------------------------------------------------
    def _lifetime(self, tasks: int) -> float:
        """How long a group of this run may live (its SAS URLs and its ``expires`` tag): every
        task one after another on its share of the groups, plus its idle wait."""
        rounds = math.ceil(max(1, tasks) / self.fleet) + 1
        return self.timeout * rounds + self.linger

    def _pause(self) -> None:
        """Until the next look at the queue and the groups: a poll interval, cut short by a
        backend that can tell when a group finishes, or by a worker's byte on the run's wake-up
        pipe (a status was stored: the next look reads the statuses at once)."""
        wakeup = self._wakeup
        if not self._running:
            self.sleep(0.05)
            return
        if isinstance(self.backend, WaitsForGroups):
            woken = self.backend.wait_any(list(self._running), self.poll_interval,
                                          wakeup.fd if wakeup is not None else None)
        elif wakeup is not None and self.sleep is time.sleep:  # (not on a test's fake clock)
            woken = wakeup.wait(self.poll_interval)
        else:
            self.sleep(self.poll_interval)
            return
        if woken and wakeup is not None:
            wakeup.drain()
            self._next_store_look = 0.0  # a status was stored: read it now

    def _top_up(self, to_offer: int = 0) -> None:
        """Keep as many groups alive as there is work for, up to the fleet's size: the tickets
        running plus those waiting (a group with nothing to claim exits after its idle wait)."""
        book = self._book
        assert book is not None
        wanted = min(self.fleet, len(book.running()) + len(book.unclaimed()) + to_offer)
        now = self.clock()
        while len(self._running) < wanted and now >= self._create_not_before:
            if isinstance(self.backend, PacesCreates) and self.backend.create_delay() > 0:
                break  # the backend's create rate (ACI's windows): keep polling meanwhile
            self._create_group(book, now)

    def _create_group(self, book: TicketBook, now: float) -> None:
        self._group_number += 1
        name = f"{self.job_id}-g{self._group_number:03d}"
        lifetime = self._lifetime(self._tasks)
        queue = book.queue()
        work = replace(self.work, orders=[], queue=asdict(queue))
        secure = (dict(self.access.secure_env([], book.group_grants(), lifetime))
                  if self.access is not None else {})
        book.group_created()
        spec = GroupSpec(
            name=name, job_id=self.job_id, task_ids=(),
            env={ENV_WORK: work.to_json(), ENV_GROUP: name,
                 **({ENV_NOTIFY: self._wakeup.path} if self._wakeup is not None else {})},
            cpu=self.cpu,
            memory_gb=self.memory_gb, labels=group_labels(self.job_id, [], lifetime),
            secure_env=secure,
        )
        self.usage.created(name, [], {}, self.cpu, self.memory_gb)
        # Recorded before it is asked for, in the store and here: a create whose answer is
        # lost, or a Ctrl-C or kill -9 while it is in flight (the group may exist on the far
        # side already), still leaves its name for stop_all and for the next controller.
        self.launches.launching(name, self.job_id, {})
        self._running[name] = _Group(spec, now)
        self.backend.begin_create_group(spec)

    def _end_group(self, name: str, state: GroupState | None, backlog: Backlog,
                   results: dict[str, TaskResult], *, stopped: str | None = None) -> None:
        """The group finished, or is stopped (``stopped``: why, e.g. timed out): keep what the
        backend kept of its log, delete it, and settle every attempt it had claimed."""
        group = self._running.get(name)
        if group is None:
            return
        ended = stopped or (state.phase.value if state is not None else "failed")
        if state is not None and state.evicted:
            ended = "evicted"
            self.evicted.add(name)
        if stopped is None:  # seen finished: it stopped using its resources then
            self.usage.finished(name, state, ended)
        group_log = self.backend.get_logs(name)
        if not self.store.exists(self.layout.group_log(name)):
            self.store.write_bytes(self.layout.group_log(name), group_log.encode())
        with held():  # deleted and off the books together, or neither
            self.backend.delete_group(name)
            self._running.pop(name, None)
            self.launches.ended(name, ended)
        if stopped is not None:  # ran (and was billed) until deleted: from when its backend
            # says it started (ACI: the pull), if it said, to now
            seen = self._last_states.get(name)
            started = seen.started_at if seen is not None else None
            self.usage.finished(name, GroupState(name, Phase.FAILED, None, finished_at=time.time(),
                                                 started_at=started) if started else state, ended)
        self._last_states.pop(name, None)
        book = self._book
        assert book is not None
        claimed = book.claims_of(name, self.clock())
        for offer in claimed:
            self.usage.claimed(name, offer.task.id, offer.attempt)
            self._settle(offer, self._read_status(offer.task, offer.attempt, name, state),
                         backlog, results)
        failed = state is not None and state.phase is Phase.FAILED
        if (group.claimed == 0 and not claimed and (failed or stopped == "timed-out")
                and name not in self.evicted):  # an eviction is no failure to start
            self._start_failed(name, state, backlog)

    def _start_failed(self, name: str, state: GroupState | None, backlog: Backlog) -> None:
        """A group ended before it took a task (its image could not be pulled, it never
        started): tried again after a pause, until retries run out or it cannot help."""
        self._start_failures += 1
        book = self._book
        assert book is not None
        waiting = [o.task for o in book.unclaimed()] + [t for _, t, _ in backlog]
        if not waiting:
            return
        status = lost_attempt(waiting[0].id, self.records[waiting[0].id].attempts, name, state)
        if not status.retryable or self._start_failures > self.retries:
            raise self._failure(waiting[0], status, self._start_failures)
        self.progress.task_retry(waiting[0], status.attempt, f"group {name}: {status.reason}")
        self._create_not_before = self.clock() + self._backoff(self._start_failures - 1)

    # -- tickets ------------------------------------------------------------------------------
    def _offer_due(self, backlog: Backlog) -> None:
        book = self._book
        assert book is not None
        now = self.clock()
        due = [item for item in backlog if item[0] <= now]
        if not due:
            return
        backlog[:] = [item for item in backlog if item[0] > now]
        items = []
        for _, task, copy in due:
            record = self.records[task.id]
            record.attempts += 1
            items.append((task, record.attempts, copy))
        book.offer_many(items)

    def _poll(self, backlog: Backlog, results: dict[str, TaskResult]) -> None:
        book = self._book
        assert book is not None
        states = self.backend.get_states(list(self._running)) if self._running else {}
        self._last_states.update(states)
        now = self.clock()
        if any(s.phase.finished for s in states.values()) or now >= self._next_store_look:
            self._look_at_queue(book, states, now, backlog, results)
        for name, state in states.items():
            group = self._running.get(name)
            if group is None:
                continue
            if state.phase.finished:
                self._end_group(name, state, backlog, results)
            elif (group.claimed == 0 and book.unclaimed()
                  and now - group.created_at > self.timeout):
                self._end_group(name, GroupState(
                    name, Phase.FAILED, None,
                    f"timed out after {self.timeout:g}s without taking a task and was stopped"),
                    backlog, results, stopped="timed-out")

    def _look_at_queue(self, book: TicketBook, states: Mapping[str, GroupState], now: float,
                       backlog: Backlog, results: dict[str, TaskResult]) -> None:
        """New claims, and how claimed attempts ended. Each look costs a read per running
        attempt (and a few claims): on a remote store it is made at most once a second."""
        self._next_store_look = now + self._store_interval
        for offer in book.see_claims(now, lookahead=len(self._running) + 4):
            self._start_failures = 0
            if offer.group in self._running:
                self._running[offer.group].claimed += 1
                self.usage.claimed(offer.group, offer.task.id, offer.attempt)
        for offer in book.running():
            if offer.ended:  # settled meanwhile, with the group that ran it
                continue
            assert offer.group is not None and offer.claimed_at is not None
            state = states.get(offer.group)
            gone = offer.group not in self._running
            status = self._peek_status(offer)
            if status is not None or gone:
                self._settle(offer, status or self._read_status(
                    offer.task, offer.attempt, offer.group, state), backlog, results)
            elif now - offer.claimed_at > self.timeout:
                self._end_group(offer.group, GroupState(
                    offer.group, Phase.FAILED, None,
                    f"timed out after {self.timeout:g}s on task {offer.task.id} and was stopped"),
                    backlog, results, stopped="timed-out")

    def _peek_status(self, offer: Offer) -> AttemptStatus | None:
        """The attempt's status if its worker wrote one (a claim's group still runs)."""
        try:
            data = self.store.read_bytes(offer.ticket.order.status)
        except FileNotFoundError:
            return None
        assert offer.group is not None
        return self._read_status(offer.task, offer.attempt, offer.group, None, data)

    def _settle(self, offer: Offer, status: AttemptStatus, backlog: Backlog,
                results: dict[str, TaskResult]) -> None:
        """One attempt ended. The first success of a task is its result (any other attempt of
        it is withdrawn or stopped, and its part never used); a failure counts only when no
        other attempt of the task is still out."""
        book = self._book
        assert book is not None
        if offer.ended:
            return
        others = book.others(offer)
        book.end(offer)
        task = offer.task
        if task.id in results or task.id not in self.records:
            return  # another attempt won: this one's part is discarded
        if status.result is not None:  # succeeded, its part checked by _read_status
            results[task.id] = status.result
            self._results_in += 1
            self._durations.append(status.seconds or status.result.seconds)
            self.progress.task_done(self.records[task.id].task, status.result)
            for other in others:
                self._supersede(other, status.attempt, backlog, results)
            return
        if others:
            return  # the other attempt may still win
        self._waiting.append((self.records[task.id].task, status))

    def _supersede(self, offer: Offer, winner: int, backlog: Backlog,
                   results: dict[str, TaskResult]) -> None:
        """Take back an attempt whose task another attempt finished: withdrawn if nobody took
        it yet, else its group is stopped (it runs nothing else meanwhile)."""
        book = self._book
        assert book is not None
        if offer.group is None and book.withdraw(offer, self.clock()):
            return
        # Stop the group only while it still runs the losing attempt: one that already wrote
        # its status (both finished between two looks) has moved on to other tasks.
        if offer.group in self._running and self._peek_status(offer) is None:
            why = GroupState(offer.group, Phase.FAILED, None,
                             f"was stopped: attempt {winner} of {offer.task.id} finished first")
            self._end_group(offer.group, why, backlog, results, stopped="superseded")
        book.end(offer)

    def _second_attempts(self, backlog: Backlog, results: dict[str, TaskResult]) -> None:
        """Stragglers: a task running ``straggler_factor`` x the median task time, and longer
        than the tickets still waiting would keep the other groups busy, gets a second attempt,
        marked urgent in the queue's head so the next group to finish a task takes it before
        its own next ticket. At most one per task, and fewer at once than the fleet has
        groups (the rest keep to the queue). The first attempt to finish wins; output is the
        same: both attempts score the same records."""
        book = self._book
        assert book is not None
        if (self.straggler_factor <= 0 or self.fleet < 2
                or len(self._durations) < MIN_DURATIONS):
            return
        unclaimed = book.unclaimed()
        unclaimed_copies = sum(1 for o in unclaimed if o.copy)
        copies = unclaimed_copies + sum(1 for o in book.running() if o.copy)
        room = self.fleet - 1 - copies
        if room <= 0:
            return
        median = statistics.median(self._durations)
        threshold = max(self.straggler_factor * median, MIN_STRAGGLER_SECONDS)
        # While tickets wait, the other groups have work: a straggler is copied only once
        # that work would not keep them busy for as long as it has already run (with nothing
        # else to go on, about as long as it still will). Copied earlier, the second attempt
        # takes a group from the queue that pulling alone would have emptied around it.
        waiting = len(unclaimed) - unclaimed_copies + len(backlog)
        queued_seconds = waiting * median / max(1, self.fleet - 1)
        now = self.clock()
        for offer in sorted(book.running(), key=lambda o: o.claimed_at or now):
            task = offer.task
            age = now - (offer.claimed_at or now)
            if room <= 0 or age <= threshold or age <= queued_seconds:
                break
            if task.id in self.copied or task.id in results or offer.copy:
                continue
            self.copied.add(task.id)
            room -= 1
            self.progress.task_retry(
                self.records[task.id].task, offer.attempt,
                f"running for {age:.0f}s, over {self.straggler_factor:g}x the median task "
                f"({median:.1f}s): a second attempt runs beside it, the first to finish wins")
            backlog.append((now, self.records[task.id].task, True))

    def _backoff(self, retries_used: int) -> float:
        return self.retry_delay * (2 ** retries_used) * (0.5 + random.random())

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

    def _repair_finished(self, backlog: Backlog, results: dict[str, TaskResult], *,
                         stalled: bool = False) -> None:
        """Re-run, pinned to their exact begin, the finished tasks whose guess the chain proves
        wrong (a task inside a long quoted field may "succeed" on a wrong guess): at once, not
        after the run, because the tasks after them wait for their exact end. A repair is not a
        retry: it spends none of the task's retries."""
        # The chain is re-read only when a result came in since (it costs O(tasks)), and then
        # at most once a second while work is in flight, or when nothing else can move.
        if not self._guesses() or self._results_in == self._chain_seen:
            return
        now = self.clock()
        if now < self._next_chain_look and not stalled:
            return
        self._chain_seen, self._next_chain_look = self._results_in, now + 1.0
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
            backlog.append((self.clock(), pinned, False))

    def _release_waiting(self, backlog: Backlog, results: dict[str, TaskResult], *,
                         stalled: bool) -> None:
        """Finished tasks that began at a wrong guess are re-run from their exact begin, and
        failed tasks go back in the queue: re-run from an exact boundary when their guess may
        have been wrong (free: not a retry), else retried or failed as usual."""
        self._repair_finished(backlog, results, stalled=stalled)
        stalled = stalled and not backlog
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
                backlog.append((self.clock(), pinned, False))
            else:
                self._retry_or_fail(task, status, backlog)

    def _read_status(self, task: Task, attempt: int, group: str, state: GroupState | None,
                     data: bytes | None = None) -> AttemptStatus:
        """How the attempt ended, from the status its runner stored (``data``, when already
        read); a status that is not this group's own for this attempt (torn, or a zombie's)
        does not count."""
        try:
            if data is None:
                data = self.store.read_bytes(self.layout.status(task.id, attempt))
            status = AttemptStatus.from_json(data)
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

    def _retry_or_fail(self, task: Task, status: AttemptStatus, backlog: Backlog) -> None:
        record = self.records[task.id]
        evicted = status.group in self.evicted and not status.succeeded
        reason = status.reason
        if evicted:
            record.evictions += 1
            if record.evictions <= self.max_evictions:
                # Its group was evicted (Spot): run it again at once, spending none of its
                # retries. Only max_evictions times: a region short of Spot capacity would
                # otherwise rerun it for as long as the evictions go on.
                self.progress.task_retry(task, status.attempt, f"{reason}; eviction "
                                         f"{record.evictions} of {self.max_evictions} free of retries")
                backlog.append((self.clock(), task, False))
                return
            reason = (f"{reason}; evicted {plural(record.evictions, 'time')}, past [azure] "
                      f"max_evictions = {self.max_evictions}: this one spends a retry")
        record.reasons.append(status.reason)
        retries_used = len(record.reasons) - 1
        if status.retryable and retries_used < self.retries:
            self.progress.task_retry(task, status.attempt, reason)
            backlog.append((self.clock() + self._backoff(retries_used), task, False))
            return
        if evicted:
            raise self._evicted_failure(task, status, record.evictions)
        raise self._failure(task, status, status.attempt)

    def _evicted_failure(self, task: Task, status: AttemptStatus, evictions: int) -> TaskFailed:
        """A task whose Spot groups were evicted past ``max_evictions`` and its retries: what
        happened, and what to change."""
        log_tail, log_path = self._log_tail(task, status)
        where = f" in region {self.region}" if self.region else ""
        return TaskFailed(
            f"task {task.id} ({task.describe()}) failed after "
            f"{plural(status.attempt, 'attempt')}: it was evicted {plural(evictions, 'time')}"
            f"{where} (Azure reclaimed its Spot capacity); {plural(self.max_evictions, 'eviction')} "
            f"cost no retry ([azure] max_evictions = {self.max_evictions}), and its retries "
            f"(retries = {self.retries}) ran out",
            task_id=task.id,
            log_tail=log_tail,
            hint=f"Spot capacity{where} is short: run the job at [azure] priority = \"Regular\", "
                 f"or raise [azure] max_evictions or retries; running it again keeps the "
                 f"finished tasks. Full log: {log_path}",
        )

    def _failure(self, task: Task, status: AttemptStatus, attempts: int) -> TaskFailed:
        log_tail, log_path = self._log_tail(task, status)
        tries = (f"after {attempts} attempt{'s' if attempts > 1 else ''}" if status.retryable
                 else "(not retried: running it again cannot help)")
        return TaskFailed(
            f"task {task.id} ({task.describe()}) failed {tries}: {status.reason}",
            task_id=task.id,
            log_tail=log_tail,
            hint=f"Full log: {log_path}",
        )
