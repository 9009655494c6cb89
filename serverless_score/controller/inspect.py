"""``status`` and ``logs``: what a job did and is doing, read from where its state lives (the
output location: job.json, each attempt's status and log, the manifest) and from the backend's
live groups. Works while the job runs, after it ended, and after its controller died,
from any machine that can read the output (and, for live groups, reach the backend).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from ..backends import Backend, get_backend
from ..backends.base import LABEL_TASKS, GroupInfo
from ..errors import InputError, ScoreError
from ..layout import CLAIM, LOG, STATUS, JobLayout, stored_attempts
from ..planning.tasks import Task
from ..runner.contract import AttemptStatus, Claim
from ..spec import JobSpec, load_spec, spec_from_dict
from ..storage import Store, StoreConfig, get_store, is_local
from ..storage.config import cache_root
from ..storage.lease import get_lease
from ..units import plural
from .launches import LaunchBook
from .manifest import read_tasks


@dataclass
class JobLocation:
    """Where a job keeps its state, and what job.json says about it."""

    layout: JobLayout
    store: Store
    job: dict[str, Any]
    spec: JobSpec | None

    @property
    def job_id(self) -> str:
        return str(self.job.get("job_id", ""))

    def tasks(self) -> list[Task]:
        return [Task.from_dict(t) for t in self.job.get("tasks", [])]

    def backend(self) -> Backend:
        state_dir = self.layout.local_state_dir(cache_root())
        if self.spec is None:  # a job.json from before the spec was kept there: local
            return get_backend(str(self.job.get("backend", "local")), state_dir=state_dir)
        return get_backend(self.spec.backend, spec=self.spec, state_dir=state_dir)


def output_of(target: str) -> str:
    """The output URI of ``target``: the output itself, its manifest, its work folder or
    job.json (what ``run --json`` prints as ``output``, ``manifest`` and ``work_dir``)."""
    for suffix in (".work/job.json", ".work/", ".work", ".manifest.json",
                   ".manifest.tasks.jsonl"):
        if target.endswith(suffix):
            target = target[: -len(suffix)]
            break
    if is_local(target) and not target.startswith("file://"):
        target = os.path.abspath(os.path.expanduser(target))
    return target


def locate(target: str, overrides: list[str] | None = None) -> JobLocation:
    """A job from its job file (TOML) or its output URI (or manifest, work folder)."""
    spec: JobSpec | None = None
    if target.lower().endswith(".toml"):
        spec = load_spec(target, overrides)
        output, config = spec.output, StoreConfig.from_spec(spec)
    else:
        output, config = output_of(target), StoreConfig.from_env()
    layout = JobLayout(output)
    store = get_store(output, config)
    try:
        job = json.loads(store.read_bytes(layout.job_file))
    except FileNotFoundError:
        raise InputError(
            f"no job has run with output {output!r}: {layout.job_file} does not exist",
            hint="Give the job file, or the output (or manifest) path a run printed.") from None
    except ValueError:
        raise InputError(f"{layout.job_file} is not valid JSON") from None
    if spec is None and isinstance(job.get("spec"), dict):
        try:
            spec = spec_from_dict(job["spec"], source=layout.job_file)
        except ScoreError:
            spec = None  # written by another version: status still works, without the backend's settings
    return JobLocation(layout, store, job if isinstance(job, dict) else {}, spec)


# -- status -------------------------------------------------------------------------------------
@dataclass
class TaskStatus:
    id: str
    input: str
    state: str  # done | running | queued | failed | pending
    attempts: int
    rows: int | None = None
    rows_failed: int | None = None  # rows it left out (on_error = "skip")
    seconds: float | None = None
    group: str | None = None
    reason: str | None = None  # why its latest attempt failed
    evictions: int = 0  # attempts lost to evicted (Spot) groups

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class JobStatus:
    job_id: str
    name: str
    state: str  # succeeded | running | failed | stopped | pending
    output: str
    backend: str
    tasks: list[TaskStatus]
    live_groups: list[str] = field(default_factory=list)
    manifest: str | None = None
    usage: dict[str, Any] | None = None
    # The live controller holding the job's lease (host, pid, since), or None: none is running.
    controller: dict[str, Any] | None = None
    # What the job scores with: the manifest's model record once it succeeded (file, sha256,
    # and for a registry or pins URI its source), else the resolved source job.json keeps.
    model: dict[str, Any] | None = None

    @property
    def done(self) -> int:
        return sum(t.state == "done" for t in self.tasks)

    @property
    def rows(self) -> int:
        return sum(t.rows or 0 for t in self.tasks)

    @property
    def rows_failed(self) -> int:
        return sum(t.rows_failed or 0 for t in self.tasks)

    def to_dict(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "name": self.name, "state": self.state,
                "output": self.output, "backend": self.backend, "manifest": self.manifest,
                "tasks_total": len(self.tasks), "tasks_done": self.done, "rows": self.rows,
                "rows_failed": self.rows_failed,
                "live_groups": self.live_groups, "usage": self.usage,
                "controller": self.controller, "model": self.model,
                "tasks": [t.to_dict() for t in self.tasks]}


def _stored(loc: JobLocation) -> dict[str, dict[int, set[str]]]:
    """Task -> attempt -> its files in the store, from one listing."""
    return stored_attempts(loc.store.list(loc.layout.tasks_dir))


def _status(loc: JobLocation, task_id: str, attempt: int) -> AttemptStatus | None:
    try:
        return AttemptStatus.from_json(loc.store.read_bytes(loc.layout.status(task_id, attempt)))
    except (FileNotFoundError, ValueError, TypeError, KeyError):
        return None


def _statuses(loc: JobLocation, task_id: str, attempts: dict[int, set[str]]) -> list[AttemptStatus]:
    """The stored statuses of the task's attempts, the latest first."""
    return [s for n in sorted(attempts, reverse=True) if STATUS in attempts[n]
            and (s := _status(loc, task_id, n)) is not None]


def _latest(statuses: list[AttemptStatus]) -> AttemptStatus | None:
    """The task's success if it has one (the latest), else its latest attempt."""
    return next((s for s in statuses if s.succeeded), statuses[0] if statuses else None)


def _latest_status(loc: JobLocation, task_id: str,
                   attempts: dict[int, set[str]]) -> AttemptStatus | None:
    return _latest(_statuses(loc, task_id, attempts))


def _claim(loc: JobLocation, task_id: str, attempt: int) -> Claim | None:
    try:
        return Claim.from_json(loc.store.read_bytes(loc.layout.claim(task_id, attempt)))
    except (FileNotFoundError, ValueError, TypeError, KeyError):
        return None


def group_tasks(group: GroupInfo, job_id: str, all_ids: list[str]) -> list[str]:
    """The tasks of a live group, from its ``tasks`` label (``a,b,c`` or ``first..last``), or
    from its name (``<job>-<first task>-<attempt>``) when it has no such label."""
    label = group.labels.get(LABEL_TASKS, "")
    if ".." in label:
        first, last = label.split("..", 1)
        start, end = _position(first, all_ids), _position(last, all_ids)
        if start is not None and end is not None:
            return all_ids[start: end + 1]
    if label:
        return [t for t in label.split(",") if t]
    rest = group.name.removeprefix(f"{job_id}-")
    return [rest.rsplit("-", 1)[0]] if rest != group.name else []


def _position(task_id: str, ids: list[str]) -> int | None:
    """Where ``task_id`` is in ``ids``: at its index, as a plan lists its tasks (no scan of
    100,000 ids per live group), else wherever it is."""
    digits = task_id.removeprefix("t")
    if digits.isdigit() and int(digits) < len(ids) and ids[int(digits)] == task_id:
        return int(digits)
    return ids.index(task_id) if task_id in ids else None


def _manifest(loc: JobLocation) -> dict[str, Any]:
    try:
        data = json.loads(loc.store.read_bytes(loc.layout.manifest))
    except (FileNotFoundError, ValueError):
        return {}
    return data if isinstance(data, dict) and data.get("job_id") == loc.job_id else {}


def _statuses_of(rows: list[dict[str, Any]]) -> list[TaskStatus]:
    """The tasks of a succeeded job, from its manifest's task rows."""
    return [TaskStatus(str(r.get("id")), str(r.get("input")), "done", int(r.get("attempts") or 0),
                       rows=r.get("records_out"), rows_failed=r.get("rows_failed"),
                       seconds=r.get("seconds"), evictions=int(r.get("evictions") or 0))
            for r in rows]


def _stored_statuses(loc: JobLocation, live: list[GroupInfo]) -> list[TaskStatus]:
    """Each task's state from the store (its attempts' statuses) and the live groups."""
    tasks = loc.tasks()
    ids = [t.id for t in tasks]
    stored = _stored(loc)
    found = {t: _statuses(loc, t, stored[t]) for t in ids if t in stored}
    latest = {t: _latest(s) for t, s in found.items()}
    # An attempt whose group ended evicted (its launch record says so) was lost to an eviction.
    evicted = {r.group for r in LaunchBook(loc.store, loc.layout).all() if r.outcome == "evicted"}
    live_names = {g.name for g in live}
    controller = _controller(loc)
    statuses = []
    for task in tasks:
        attempts = stored.get(task.id, {})
        status = TaskStatus(task.id, task.describe(), "pending", max(attempts, default=0))
        last = latest.get(task.id)
        result = last.result if last is not None else None
        status.evictions = sum(1 for s in found.get(task.id, [])
                               if s.group in evicted and not s.succeeded)
        # A group runs an attempt it claimed (``claim.json``) until it stores its status.
        newest = attempts.get(status.attempts, set())
        claim = (_claim(loc, task.id, status.attempts)
                 if CLAIM in newest and STATUS not in newest else None)
        if result is not None:
            status.state, status.rows, status.seconds = "done", result.records_out, result.seconds
            status.rows_failed = result.rows_failed
            status.attempts = max(status.attempts, result.attempt)
        elif claim is not None and claim.group in live_names:
            status.state, status.group = "running", claim.group
        elif live or controller is not None:
            status.state = "queued"  # waits in the job's queue for a free group
            status.reason = last.reason if last is not None else None
        elif claim is not None:  # its group went without a word (stopped, killed): not failed
            status.reason = (f"attempt {status.attempts} was cut short: its group {claim.group} "
                             "is gone; a rerun runs it again")
        elif status.attempts:
            status.state = "failed"
            status.reason = last.reason if last is not None else None
        statuses.append(status)
    return statuses


def job_status(loc: JobLocation, backend: Backend | None) -> JobStatus:
    live = [g for g in (backend.list_all_groups() if backend is not None else [])
            if g.job_id == loc.job_id]
    manifest = _manifest(loc)
    # A succeeded job's tasks are all in its manifest's task lines: one read, not a status read
    # per task (100,000 of them in a big job); the stored statuses are read only without them.
    finished = read_tasks(loc.store, loc.layout, manifest) if manifest else None
    statuses = (_statuses_of(finished) if finished is not None
                else _stored_statuses(loc, live))
    controller = _controller(loc)
    if manifest and controller is None:
        state = "succeeded"
    elif live or controller is not None:
        state = "running"
    elif any(s.state == "failed" for s in statuses):
        state = "failed"
    elif any(s.state == "done" for s in statuses):
        state = "stopped"
    else:
        state = "pending"
    return JobStatus(
        job_id=loc.job_id, name=str(loc.job.get("name") or loc.job_id.rsplit("-", 1)[0]),
        state=state, output=loc.layout.output,
        backend=loc.spec.backend if loc.spec else str(loc.job.get("backend", "local")),
        tasks=statuses, live_groups=[g.name for g in live],
        manifest=loc.layout.manifest if manifest else None, usage=manifest.get("usage"),
        controller=controller, model=_model_of(manifest, loc.job),
    )


def _model_of(manifest: dict[str, Any], job: dict[str, Any]) -> dict[str, Any] | None:
    model = manifest.get("model")
    if isinstance(model, dict):
        return model
    source = job.get("model_source")
    return {"source": source} if isinstance(source, dict) else None


def _controller(loc: JobLocation) -> dict[str, Any] | None:
    """Who holds the job's lease, if a live controller does (None also when it cannot be read:
    status still shows the stored state)."""
    try:
        holder = get_lease(loc.layout.output, loc.job_id,
                           getattr(loc.store, "config", None)).holder()
    except (ScoreError, OSError):
        return None
    return holder.public() if holder is not None else None


# -- logs ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TaskLog:
    task_id: str
    attempt: int
    text: str
    source: str  # the stored log's URI, or "live: <group>"


def task_id_of(task: str) -> str:
    """``3``, ``t3`` or ``t00003`` -> ``t00003``."""
    digits = task.lower().removeprefix("t")
    if not digits.isdigit():
        raise InputError(f"--task: expected a task number or id such as 3 or t00003; got {task!r}")
    return f"t{int(digits):05d}"


def task_logs(loc: JobLocation, backend: Backend | None, task_id: str,
              attempt: int | None = None) -> TaskLog:
    """A task's whole log: attempt ``attempt`` (default: the latest), as its runner stored it
    (everything the task printed, however little of it the backend kept), or, while that
    attempt still runs, its live group's log."""
    if task_id not in {t.id for t in loc.tasks()}:
        raise InputError(f"--task: job {loc.job_id} has no task {task_id} "
                         f"({plural(len(loc.job.get('tasks', [])), 'task')}: t00000..)")
    attempts = _stored(loc).get(task_id, {})
    latest = max(attempts, default=0)
    newest = attempts.get(latest, set())
    # The attempt a live group may be running: one claimed without a status yet (or, from
    # groups of older versions that claimed nothing, the next one).
    running = latest if CLAIM in newest and STATUS not in newest else latest + 1
    if attempt is None or attempt >= running:
        live = _live_log(loc, backend, task_id, _latest_status(loc, task_id, attempts))
        if live is not None and (attempt is None or attempt == running):
            return TaskLog(task_id, running, _from_task_start(live[1], task_id, running),
                           f"live: {live[0]}, the group's log")
        if attempt is None:
            attempt = latest
    if attempt < 1:
        raise InputError(f"task {task_id} of job {loc.job_id} has no log yet (it has not run)")
    uri = loc.layout.task_log(task_id, attempt)
    if LOG in attempts.get(attempt, set()):
        text = loc.store.read_bytes(uri).decode("utf-8", errors="replace")
        return TaskLog(task_id, attempt, text, uri)
    return _group_log_instead(loc, task_id, attempt, latest)


def _from_task_start(text: str, task_id: str, attempt: int) -> str:
    """A group's log from where the runner says it started this attempt (a group runs one
    task after another; what it logged for earlier tasks is in their own logs). For people:
    when the line is not there (a cut log), the whole log."""
    start = text.rfind(f"runner: task {task_id} attempt {attempt}:")
    return text[start:] if start >= 0 else text


def _group_log_instead(loc: JobLocation, task_id: str, attempt: int, latest: int) -> TaskLog:
    """An attempt whose worker stored no log (it died or was stopped mid-task): what the
    backend kept of its group's log, which the controller saved."""
    status = _status(loc, task_id, attempt)
    group_log = loc.layout.group_log(status.group) if status is not None and status.group else None
    if group_log is not None and loc.store.exists(group_log):
        text = loc.store.read_bytes(group_log).decode("utf-8", errors="replace")
        return TaskLog(task_id, attempt, text,
                       f"{group_log}: attempt {attempt} stored no log of its own; this is what "
                       "the backend kept of its group's log")
    raise InputError(f"task {task_id} has no log of attempt {attempt} (attempts so far: {latest})",
                     hint=f"Logs that the backend kept of whole groups are in {loc.layout.groups_dir}.")


def _live_log(loc: JobLocation, backend: Backend | None, task_id: str,
              last: AttemptStatus | None) -> tuple[str, str] | None:
    """(group, its log) when a live group holds the task and has not finished it yet: the group
    that claimed its latest attempt (or, for groups of older versions, whose label lists it)."""
    if backend is None:
        return None
    attempts = _stored(loc).get(task_id, {})
    newest = max(attempts, default=0)
    claim = _claim(loc, task_id, newest) if CLAIM in attempts.get(newest, set()) else None
    ids = [t.id for t in loc.tasks()]
    for group in backend.list_all_groups():
        if group.job_id != loc.job_id:
            continue
        holds = (claim.group == group.name if claim is not None
                 else task_id in group_tasks(group, loc.job_id, ids))
        if holds:
            if last is not None and last.group == group.name and last.attempt == newest:
                return None  # this group is done with the task: its stored log is the one
            return group.name, backend.get_logs(group.name)
    return None
