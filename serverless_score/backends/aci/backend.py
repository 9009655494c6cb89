"""``backend = "aci"``: each group is one Azure container group with one container running the
runner image, ``restart_policy = Never``.

The scheduler (``controller/watch.py``) calls ``get_states`` every 0.2 s. This backend answers
from a cache and spends ARM calls by its own policy (``polling.PollSchedule``): per task about
1 create + 1 delete + 1 logs + a number of GETs that grows with the group's lifetime (log, then
linear at one per 30 s), under a job-wide read budget, plus one list call per 30 s for the whole
job, plus one read of the create's async operation for a group whose provisioning failed with no
event saying why (Azure's reason is only there).

Creates and deletes are paced (``pacer.py``) to ACI's windows per subscription and region
(``[azure] create_rate``, ``delete_rate``; creates also ``creates_per_minute``), shared with every
other ACI backend of this process on that subscription. Creations never block the scheduler: a
group waiting for its turn (or after a 429) reports STARTING and is created by a later call, and
``create_delay`` says how long a new one would wait. A delete blocks until its turn.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ...errors import ScoreError
from ...units import plural, plural_cores
from ..base import LABEL_EXPIRES, LABEL_JOB, GroupInfo, GroupSpec, GroupState, Phase
from .client import AciClient, QuotaReached, Refused, Throttled
from .groups import build_group
from .pacer import Pacer, RateWindow, SendLog, shared_log, take_turn, windows
from .polling import PollSchedule
from .quota import fitting_parallel, shortfalls
from .settings import AciSettings
from .states import CreateOutcome, group_state, wants_outcome
from .throttle import RETRY_AFTER_CAP, backoff

log = logging.getLogger(__name__)
QUOTA_WAIT = 600.0  # how long to wait for quota to free up (none of our groups running) before failing
DELETE_TIMEOUT = 300.0
LOGS_TIMEOUT = 120.0
MAX_TASKS_PER_GROUP = 50
_GONE_AFTER = 2  # 404s in a row before a group counts as gone (ARM reads can lag a PUT briefly)


@dataclass(frozen=True)
class Packing:
    """How tasks go into groups, and why (what ``plan`` shows)."""

    tasks_per_group: int
    groups: int
    why: str


@dataclass
class _Group:
    name: str
    model: Any  # the ContainerGroup to PUT; None for a group found in Azure (adopted)
    put_sent: bool = False  # a PUT left this machine: the group may exist, delete must be sent
    created: bool = False
    not_before: float = 0.0
    attempts: int = 0
    missing: int = 0
    state: GroupState = field(default_factory=lambda: GroupState("", Phase.STARTING))
    # The create's Azure-AsyncOperation URL: where Azure says why provisioning failed when no
    # event does. Only here, in this process: a group found in Azure (adopted) has none.
    operation_url: str = ""
    outcome: CreateOutcome | None = None  # what that operation said, read at most once
    said: str = ""  # the last STARTING detail logged (a pull Azure retries), not to repeat it


class AciBackend:
    name = "aci"
    # Containers on Azure cannot read this machine's files: the job ships a local scorer script
    # beside the output (controller/job.py), and settings refuse local model/input/output.
    sees_local_files = False

    def __init__(self, settings: AciSettings, *, client: AciClient | None = None,
                 credential: Any = None, schedule: PollSchedule | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, quota_wait: float = QUOTA_WAIT,
                 delete_timeout: float = DELETE_TIMEOUT, check_quota: bool = True) -> None:
        self.settings = settings
        self.clock = clock
        self.sleep = sleep
        self.client = client or AciClient(settings, credential, sleep=sleep, clock=clock)
        self.schedule = schedule or PollSchedule(clock=clock)
        # The job's own cap per minute on top of the subscription's windows.
        self.creates = Pacer((*windows(settings.create_rate),
                              RateWindow(settings.creates_per_minute, 60.0)),
                             self._log("create", clock))
        self.deletes = Pacer(windows(settings.delete_rate), self._log("delete", clock))
        self.quota_wait = quota_wait
        self.delete_timeout = delete_timeout
        self._check_quota = check_quota
        self._expected_groups = settings.max_parallel
        self._groups: dict[str, _Group] = {}
        self._quota_since: float | None = None

    def _log(self, kind: str, clock: Callable[[], float]) -> SendLog:
        """The process-wide log of this subscription's region; a backend on its own clock (a
        test's) keeps a private one, since its times mean nothing to the others."""
        if clock is not time.monotonic:
            return SendLog()
        s = self.settings
        return shared_log(kind, s.arm_endpoint, s.subscription_id, s.location)

    @classmethod
    def from_spec(cls, spec: Any, *, state_dir: str = "") -> AciBackend:
        from ... import __version__

        # state_dir is unused: everything a later controller needs is in the groups' tags.
        return cls(AciSettings.resolve(spec, os.environ, __version__))

    # -- packing ------------------------------------------------------------------------------
    @staticmethod
    def packing(pending: int, max_parallel: int) -> Packing:
        """Tasks run one after another in one container per group, ``max_parallel`` groups.

        On ACI every group pays a cold start (scheduling, image pull, runtime and model load:
        typically 20-90 s, billed) and one create + one delete + one log read against ARM's
        100-creates-per-5-minutes quota. Running a slot's share of the tasks in one container
        pays that once per slot instead of once per task. A task that fails is retried alone in
        a new group, so a long group costs nothing extra on failure.

        At most ``MAX_TASKS_PER_GROUP`` tasks per group (then groups run in waves): the work
        order travels in an environment variable, and a stopped container keeps only its last
        1,000 log lines, so a group of thousands of tasks would lose its early tasks' logs."""
        per = min(MAX_TASKS_PER_GROUP, max(1, math.ceil(pending / max(1, max_parallel))))
        groups = math.ceil(pending / per) if pending else 0
        why = (f"{plural(pending, 'task')} in {plural(groups, 'container group')} of up to "
               f"{plural(per, 'task')} run one "
               "after another: one cold start (image pull, runtime and model load) and one "
               "create/delete per group, not per task")
        if groups > max_parallel:
            why += f"; at most {max_parallel} at once"
        return Packing(per, groups, why)

    def tasks_per_group(self, pending: int, max_parallel: int) -> int:
        packing = self.packing(pending, max_parallel)
        self._expected_groups = max(1, min(max_parallel, packing.groups))
        return packing.tasks_per_group

    # -- lifecycle ----------------------------------------------------------------------------
    def begin_create_group(self, group: GroupSpec) -> None:
        self.settings.check_job()
        model = build_group(group, self.settings)
        self._groups[group.name] = _Group(group.name, model,
                                          state=GroupState(group.name, Phase.STARTING))
        self._pump()

    def create_delay(self) -> float:
        """Seconds until a group given to ``begin_create_group`` now would be sent to Azure (0:
        at once), after the groups already waiting for their turn (PacesCreates)."""
        waiting = sum(1 for g in self._groups.values()
                      if not g.created and not g.state.phase.finished)
        return self.creates.wait_time(self.clock(), ahead=waiting)

    def get_states(self, names: Sequence[str]) -> dict[str, GroupState]:
        """From the cache, refreshed by the poll schedule. A name this backend did not create
        (``status`` from another process, a resumed job's orphans) is adopted and read now."""
        for name in names:
            if name not in self._groups:
                self._adopt(name)
        self._pump()
        self._maybe_list()
        watched = [n for n in names if (g := self._groups.get(n)) and g.created
                   and not g.state.phase.finished]
        for name in self.schedule.due(watched):
            try:
                found = self.client.get(name)
            except Throttled as err:
                self.schedule.pause(backoff(1, err.retry_after))
                break
            except Refused as err:  # a 4xx on a GET: keep watching, say why in the log
                log.warning("reading %s: %s", name, err)
                self.schedule.checked(name)
                continue
            self._record(name, found)
        return {n: self._groups[n].state for n in names}

    def get_logs(self, name: str) -> str:
        group = self._groups.get(name)
        if group is not None and not group.put_sent:
            return ""
        deadline = self.clock() + LOGS_TIMEOUT
        try:
            return self.client.retrying(f"read the logs of {name}",
                                        lambda: self.client.logs(name), deadline=deadline)
        except Refused as err:  # e.g. the container never started: there is no log
            return f"(no log: {err})\n"

    def delete_group(self, name: str) -> None:
        group = self._groups.pop(name, None)
        self.schedule.forget(name)
        if group is not None and not group.put_sent:
            return  # it never left this machine
        what = f"delete container group {name}"
        # Our own pacing does not use up the timeout: only Azure's refusals do.
        take_turn(self.deletes, what, self.clock, self.sleep)
        deadline = self.clock() + self.delete_timeout
        attempts = 0

        def delete() -> None:
            nonlocal attempts
            attempts += 1
            if attempts > 1:  # the first one's turn was taken before the deadline started
                take_turn(self.deletes, what, self.clock, self.sleep)
            try:
                self.client.delete(name, timeout=max(1.0, deadline - self.clock()))
            except Throttled as err:
                if err.retry_after is not None:  # as the blocking retry's own wait, capped
                    self.deletes.learn(self.clock(), err.retry_after, cap=RETRY_AFTER_CAP)
                raise
            finally:
                self.deletes.settle(self.clock())

        try:
            self.client.retrying(what, delete, deadline=deadline)
        except Refused as err:
            raise ScoreError(f"could not delete container group {name!r}: {err}",
                             hint="Delete it with `serverless-score cleanup` or the portal.") from err

    def list_groups(self, job_id: str) -> list[str]:
        return [info.name for info in self.list_all_groups() if info.job_id == job_id]

    def list_all_groups(self) -> list[GroupInfo]:
        groups = self.client.retrying("list container groups", self.client.list,
                                      deadline=self.clock() + LOGS_TIMEOUT)
        found = []
        for item in groups:
            tags = dict(item.tags or {})
            if LABEL_JOB in tags and LABEL_EXPIRES in tags:  # made by this tool
                found.append(GroupInfo(item.name, tags[LABEL_JOB], tags))
        return sorted(found, key=lambda g: g.name)

    @property
    def arm_calls(self) -> dict[str, int]:
        return dict(self.client.calls)

    # -- internals ----------------------------------------------------------------------------
    def _pump(self) -> None:
        """Create waiting groups, oldest first, as the creation budget allows."""
        now = self.clock()
        for name, group in list(self._groups.items()):
            if group.created or group.state.phase.finished or group.not_before > now:
                continue
            if self._check_quota:
                self._quota_check()
            if not self.creates.reserve(now):
                self._in_line(now)
                return
            group.attempts += 1
            group.put_sent = True
            try:
                group.operation_url = self.client.create(name, group.model)
            except Throttled as err:
                # No create from this process until Retry-After has passed (another client used
                # the window); this group's own try is jittered on top, so groups spread out.
                if err.retry_after is not None:
                    self.creates.learn(self.clock(), err.retry_after)
                wait = max(backoff(group.attempts, err.retry_after),
                           self.creates.wait_time(self.clock()))
                group.not_before = now + wait
                self._waiting(group, f"Azure is throttling creations; next try in {wait:.0f}s")
                return
            except QuotaReached as err:
                self._quota_reached(group, str(err), now)
                return
            except Refused as err:
                # An image Azure cannot reach stays unreachable until the user acts; other
                # refusals (capacity, a registry's pull limit) may pass.
                group.state = GroupState(name, Phase.FAILED, None, _rejected(err, self.settings),
                                         retryable=err.code != "InaccessibleImage")
                continue
            finally:
                self.creates.settle(self.clock())
            group.created = True
            self._quota_since = None
            self.schedule.add(name)

    def _in_line(self, now: float) -> None:
        """Every group waiting only for the pacer says so (one held back by a 429 or the quota
        already says why)."""
        why = (f"waiting for its turn to be created (at most {self.creates.describe()} on this "
               "subscription and region: [azure] create_rate, creates_per_minute)")
        for group in self._groups.values():
            if not group.created and not group.state.phase.finished and group.not_before <= now:
                self._waiting(group, why)

    def _adopt(self, name: str) -> None:
        self._groups[name] = _Group(name, None, put_sent=True, created=True,
                                    state=GroupState(name, Phase.STARTING))
        self.schedule.add(name)
        self.schedule.urgent(name)

    def _waiting(self, group: _Group, why: str) -> None:
        group.state = GroupState(group.name, Phase.STARTING, None, why)

    def _quota_reached(self, group: _Group, message: str, now: float) -> None:
        running = [g for g in self._groups.values() if g.created and not g.state.phase.finished]
        if self._quota_since is None or running:
            self._quota_since = now  # our own groups will free quota when they finish
        if now - self._quota_since > self.quota_wait:
            raise ScoreError(
                f"the ACI quota in {self.settings.location} is used up and did not free up in "
                f"{self.quota_wait:g}s: {message}",
                hint="Delete unused container groups (serverless-score cleanup), lower "
                     "max_parallel or [resources] cpu, or request a quota increase for Azure "
                     "Container Instances in this region.", retryable=False)
        wait = backoff(group.attempts, None, cap=30.0)
        group.not_before = now + wait
        self._waiting(group, f"the region's ACI quota is used up ({message}); waiting")

    def _quota_check(self) -> None:
        """Once, before the first create: does the job's width fit the regional quota?"""
        self._check_quota = False
        try:
            usages = self.client.usage()
        except (Throttled, Refused) as err:
            log.warning("could not read the ACI quota of %s (%s); going on",
                        self.settings.location, err)
            return
        short = shortfalls(usages, groups=self._expected_groups, cpu=self.settings.cpu)
        if short:
            fits = fitting_parallel(usages, cpu=self.settings.cpu)
            raise ScoreError(
                f"the ACI quota in {self.settings.location} is short for this job "
                f"({plural(self._expected_groups, 'group')} of {plural_cores(self.settings.cpu)} at once): "
                + "; ".join(short),
                hint=(f"Set max_parallel = {fits} (what fits now), " if fits else "")
                + "delete unused container groups, or request a quota increase for Azure "
                  "Container Instances in this region.", retryable=False)

    def _maybe_list(self) -> None:
        if not self.schedule.list_due() or not self.schedule.reads.take():
            return
        self.schedule.listed()
        try:
            listed = {g.name: g for g in self.client.list()}
        except Throttled as err:
            self.schedule.pause(backoff(1, err.retry_after))
            return
        except Refused as err:  # the per-group reads still see everything
            log.warning("listing container groups: %s", err)
            return
        for name, group in self._groups.items():
            if not group.created or group.state.phase.finished:
                continue
            item = listed.get(name)
            if item is None or (item.provisioning_state or "").lower() in ("failed", "unhealthy"):
                self.schedule.urgent(name)

    def _record(self, name: str, found: Any) -> None:
        group = self._groups[name]
        if found is None:
            group.missing += 1
            if group.missing >= _GONE_AFTER or group.model is None:  # adopted: no PUT to lag
                group.state = GroupState(name, Phase.FAILED, None,
                                         "no longer exists (deleted outside this job?)")
                self.schedule.forget(name)
            else:
                self.schedule.checked(name)
            return
        group.missing = 0
        if group.outcome is None and wants_outcome(found):
            group.outcome = self._create_outcome(group)
        state = group_state(name, found, group.outcome)
        if state.phase is Phase.STARTING and state.detail and state.detail != group.said:
            # Not a warning: Azure is retrying and nothing failed (STYLE: retries that heal).
            log.info("container group %s is %s", name, state.detail)
            group.said = state.detail
        group.state = state
        if state.phase.finished:
            self.schedule.forget(name)
        else:
            self.schedule.checked(name)

    def _create_outcome(self, group: _Group) -> CreateOutcome | None:
        """One read of the create's async operation document (its ``error``), for a group whose
        provisioning failed with no event saying why. None for a group created elsewhere."""
        if not group.operation_url:
            return None
        try:
            status, code, message = self.client.operation(group.operation_url)
        except (Throttled, Refused, ScoreError) as err:
            return CreateOutcome(unreadable=str(err) or type(err).__name__)
        if not (code or message):
            return CreateOutcome(unreadable=f"its status is {status or 'missing'!r}, with no error")
        return CreateOutcome(code, message)


def _rejected(err: Refused, settings: AciSettings) -> str:
    if err.code in ("InaccessibleImage", "RegistryErrorResponse"):
        return (f"could not pull its image {settings.image!r} ({err.code}: {err}); check the "
                "image name and tag, and that [azure] identity has the AcrPull role on the "
                "registry (or that a public registry's pull limit was not hit)")
    return f"was refused by Azure ({err.code}: {err})"
