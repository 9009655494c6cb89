"""Job state lives in the output location, never only in the controller's memory, so running the
same job again after a crash (even ``kill -9``) resumes: verified parts are kept, the rest redone."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from ..layout import JobLayout
from ..planning import Plan
from ..planning.tasks import Task
from ..runner.contract import TaskResult
from ..storage import Store
from ..storage.base import hash_stream

_ATTEMPT_LOG = re.compile(r"attempt-(\d+)\.log$")


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
        # given only the output find the job's backend again.
        store.write_bytes(layout.job_file, json.dumps(
            {"job_id": plan.job_id, "name": plan.spec.name, "backend": plan.spec.backend,
             "spec": plan.spec.model_dump(mode="json"),
             "tasks": [t.to_dict() for t in plan.tasks]}).encode())
    results: dict[str, TaskResult] = {}
    attempts: dict[str, int] = {}
    for task in plan.tasks:
        attempts[task.id] = _attempts_so_far(store, layout, task)
        result = _verified_result(store, layout, task) if not fresh else None
        if result is not None:
            results[task.id] = result
    return ResumeState(results, attempts, fresh, stale)


def _attempts_so_far(store: Store, layout: JobLayout, task: Task) -> int:
    numbers = [int(m.group(1)) for uri in store.list(layout.task_dir(task.id))
               if (m := _ATTEMPT_LOG.search(uri))]
    return max(numbers, default=0)


def _verified_result(store: Store, layout: JobLayout, task: Task) -> TaskResult | None:
    try:
        result = TaskResult.from_json(store.read_bytes(layout.result(task.id)))
    except (FileNotFoundError, ValueError, TypeError):
        return None
    part = layout.part(task.id)
    if not store.exists(part) or store.size(part) != result.part_bytes:
        return None
    if part_checksum(store, part) != result.part_sha256:
        return None
    if result.records_in is not None and result.records_in != result.records_out:
        return None
    return result
