"""Job state lives in the output location, never only in the controller's memory, so running the
same job again after a crash (even ``kill -9``) resumes: verified parts are kept, the rest redone."""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..layout import STATUS, JobLayout, stored_attempts
from ..planning import Plan
from ..planning.tasks import Task
from ..runner.contract import AttemptStatus, TaskResult
from ..storage import Store
from ..storage.base import hash_stream


@dataclass(frozen=True)
class ResumeState:
    results: dict[str, TaskResult]  # verified results of finished tasks
    attempts: dict[str, int]  # attempts made so far, per task
    fresh: bool  # no earlier run of this job was found
    discarded_stale: bool  # an earlier run of a *different* job version was cleared


def part_checksum(store: Store, uri: str) -> str:
    with store.open_read(uri) as f:
        return hash_stream(f)[1]


def load_state(store: Store, layout: JobLayout, plan: Plan) -> ResumeState:
    """Read what an earlier run of this exact job left, verifying each part against its checksum."""
    stale = False
    if store.exists(layout.job_file):
        try:
            previous = json.loads(store.read_bytes(layout.job_file))
        except ValueError:
            previous = {}
        if previous.get("job_id") != plan.job_id:
            store.delete_prefix(layout.work)
            stale = True
    else:
        store.delete_prefix(layout.work)
    fresh = not store.exists(layout.job_file)
    if fresh:
        # The spec (no secrets: SAS tokens never enter it) lets `status`, `logs` and `cleanup`
        # given only the output find the job's backend again. Without its defaults: they come
        # back when it is read, and some (predict_args = {} outside R) are refused if given.
        store.write_bytes(layout.job_file, json.dumps(
            {"job_id": plan.job_id, "name": plan.spec.name, "backend": plan.spec.backend,
             "spec": plan.spec_as_written(exclude_defaults=True),
             # A registry or pins URI and the version it resolved to (`status` shows it).
             "model_source": plan.source.to_dict() if plan.source is not None else None,
             "tasks": [t.to_dict() for t in plan.tasks]}).encode())
    results: dict[str, TaskResult] = {}
    attempts: dict[str, int] = {}
    # One listing finds every attempt: any file in an attempt's folder means it was made (so a
    # new attempt never reuses its number); its status says whether it finished.
    stored = stored_attempts(store.list(layout.tasks_dir)) if not fresh else {}
    for task in plan.tasks:
        found = stored.get(task.id, {})
        attempts[task.id] = max(found, default=0)
        finished = sorted((n for n, names in found.items() if STATUS in names), reverse=True)
        for attempt in finished:  # the latest verified success is the task's result
            result = _verified_result(store, layout, task, attempt)
            if result is not None:
                results[task.id] = result
                break
    return ResumeState(results, attempts, fresh, stale)


def _verified_result(store: Store, layout: JobLayout, task: Task, attempt: int) -> TaskResult | None:
    try:
        status = AttemptStatus.from_json(store.read_bytes(layout.status(task.id, attempt)))
    except (FileNotFoundError, ValueError, TypeError, KeyError):
        return None
    result = status.result
    part = layout.part(task.id, attempt)
    if result is None or (status.task_id, status.attempt, result.part) != (task.id, attempt, part):
        return None
    try:  # (size raises for a missing part: one call, not exists and size; per task, on blob)
        if store.size(part) != result.part_bytes or part_checksum(store, part) != result.part_sha256:
            return None
    except FileNotFoundError:
        return None
    if (result.records_in is not None
            and result.records_in != result.records_out + result.rows_failed):
        return None
    return result
