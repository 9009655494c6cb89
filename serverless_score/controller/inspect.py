"""``status`` and ``logs``: what a job did and is doing, read from where its state lives (the
output location: job.json, each task's result.json and attempt logs, the manifest) and from the
backend's live groups. Works while the job runs, after it ended, and after its controller died,
from any machine that can read the output (and, for live groups, reach the backend).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from ..backends import Backend, get_backend
from ..backends.base import LABEL_TASKS, GroupInfo
from ..errors import InputError, ScoreError
from ..layout import JobLayout
from ..planning.tasks import Task
from ..runner.contract import MARKER, TaskResult
from ..spec import JobSpec, load_spec, spec_from_dict
from ..storage import Store, StoreConfig, get_store, is_local
from ..storage.config import cache_root
from ..storage.lease import get_lease
from .watch import split_log

_TASK_FILE = re.compile(r"/tasks/(t\d+)/(?:result\.json|attempt-(\d+)\.log)$")


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
    for suffix in (".work/job.json", ".work/", ".work", ".manifest.json"):
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
    seconds: float | None = None
    group: str | None = None

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

    @property
    def done(self) -> int:
        return sum(t.state == "done" for t in self.tasks)

    @property
    def rows(self) -> int:
        return sum(t.rows or 0 for t in self.tasks)

    def to_dict(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "name": self.name, "state": self.state,
                "output": self.output, "backend": self.backend, "manifest": self.manifest,
                "tasks_total": len(self.tasks), "tasks_done": self.done, "rows": self.rows,
                "live_groups": self.live_groups, "usage": self.usage,
                "controller": self.controller, "tasks": [t.to_dict() for t in self.tasks]}


def _stored(loc: JobLocation) -> tuple[dict[str, int], set[str]]:
    """(finished attempts per task, tasks with a result.json), from one listing."""
    attempts: dict[str, int] = {}
    results: set[str] = set()
    for uri in loc.store.list(f"{loc.layout.work}/tasks"):
        match = _TASK_FILE.search(uri.replace("\\", "/"))
        if match is None:
            continue
        task_id, attempt = match.group(1), match.group(2)
        if attempt is None:
            results.add(task_id)
        else:
            attempts[task_id] = max(attempts.get(task_id, 0), int(attempt))
    return attempts, results


def group_tasks(group: GroupInfo, job_id: str, all_ids: list[str]) -> list[str]:
    """The tasks of a live group, from its ``tasks`` label (``a,b,c`` or ``first..last``), or
    from its name (``<job>-<first task>-<attempt>``) when it has no such label."""
    label = group.labels.get(LABEL_TASKS, "")
    if ".." in label:
        first, last = label.split("..", 1)
        if first in all_ids and last in all_ids:
            return all_ids[all_ids.index(first): all_ids.index(last) + 1]
    if label:
        return [t for t in label.split(",") if t]
    rest = group.name.removeprefix(f"{job_id}-")
    return [rest.rsplit("-", 1)[0]] if rest != group.name else []


def _started_in_log(log_text: str) -> set[str]:
    return {line.split()[1] for line in log_text.splitlines()
            if line.startswith(f"{MARKER} ") and " start" in line and len(line.split()) > 1}


def _read_result(loc: JobLocation, task_id: str) -> TaskResult | None:
    try:
        return TaskResult.from_json(loc.store.read_bytes(loc.layout.result(task_id)))
    except (FileNotFoundError, ValueError, TypeError):
        return None


def _manifest(loc: JobLocation) -> dict[str, Any]:
    try:
        data = json.loads(loc.store.read_bytes(loc.layout.manifest))
    except (FileNotFoundError, ValueError):
        return {}
    return data if isinstance(data, dict) and data.get("job_id") == loc.job_id else {}


def job_status(loc: JobLocation, backend: Backend | None) -> JobStatus:
    tasks = loc.tasks()
    ids = [t.id for t in tasks]
    attempts, with_result = _stored(loc)
    live = [g for g in (backend.list_all_groups() if backend is not None else [])
            if g.job_id == loc.job_id]
    in_group: dict[str, GroupInfo] = {}
    started: set[str] = set()
    for group in live:
        members = group_tasks(group, loc.job_id, ids)
        in_group.update({t: group for t in members})
        if len(members) > 1 and backend is not None:  # which of them has begun, from its log
            started |= _started_in_log(backend.get_logs(group.name))
        elif members:
            started.add(members[0])
    statuses = []
    for task in tasks:
        status = TaskStatus(task.id, task.describe(), "pending", attempts.get(task.id, 0))
        holder = in_group.get(task.id)
        result = _read_result(loc, task.id) if task.id in with_result else None
        if result is not None:
            status.state, status.rows, status.seconds = "done", result.records_out, result.seconds
            status.attempts = max(status.attempts, result.attempt)
        elif holder is not None:
            status.state = "running" if task.id in started else "queued"
            status.group = holder.name
            status.attempts += 1 if task.id in started else 0
        elif status.attempts:
            status.state = "failed"
        statuses.append(status)
    manifest = _manifest(loc)
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
        controller=controller,
    )


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
    """A task's log: attempt ``attempt`` (default: the latest), from storage, or from its live
    group when that attempt is still running."""
    if task_id not in {t.id for t in loc.tasks()}:
        raise InputError(f"--task: job {loc.job_id} has no task {task_id} "
                         f"({len(loc.job.get('tasks', []))} tasks: t00000..)")
    stored, _ = _stored(loc)
    latest = stored.get(task_id, 0)
    if attempt is None or attempt > latest:
        live = _live_log(loc, backend, task_id)
        if live is not None and (attempt is None or attempt == latest + 1):
            return TaskLog(task_id, latest + 1, live[1], f"live: {live[0]}")
        if attempt is None:
            attempt = latest
    if attempt < 1:
        raise InputError(f"task {task_id} of job {loc.job_id} has no log yet (it has not run)")
    uri = loc.layout.task_log(task_id, attempt)
    try:
        text = loc.store.read_bytes(uri).decode("utf-8", errors="replace")
    except FileNotFoundError:
        raise InputError(f"task {task_id} has no log of attempt {attempt} "
                         f"(attempts so far: {latest})") from None
    return TaskLog(task_id, attempt, text, uri)


def _live_log(loc: JobLocation, backend: Backend | None, task_id: str) -> tuple[str, str] | None:
    if backend is None:
        return None
    ids = [t.id for t in loc.tasks()]
    for group in backend.list_all_groups():
        if group.job_id == loc.job_id and task_id in group_tasks(group, loc.job_id, ids):
            text = backend.get_logs(group.name)
            piece = split_log(text).get(task_id)
            if piece is None:
                piece = text if len(group_tasks(group, loc.job_id, ids)) == 1 else (
                    f"(task {task_id} waits in group {group.name}; it has not started yet)\n")
            return group.name, piece
    return None
