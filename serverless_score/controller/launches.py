"""Launch records: a group's name and attempts, written to the job's work folder *before* the
group is created, and marked ended once it is deleted.

Why: a create whose answer is lost (a timeout, the controller killed between the PUT and its
bookkeeping) may still have made a group that bills. The next controller reads the records that
never ended, deletes those groups by name (listing by tag can lag behind a create), and numbers
its attempts past every attempt ever launched, so one (job, task, attempt) never names two
groups.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime

from ..layout import JobLayout
from ..storage import Store

log = logging.getLogger(__name__)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class LaunchRecord:
    group: str
    job_id: str
    attempts: dict[str, int] = field(default_factory=dict)  # task id -> attempt number
    launched_at: str = ""
    ended_at: str | None = None
    outcome: str | None = None  # succeeded | failed | timed-out | stopped | orphan-deleted

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_json(cls, data: bytes) -> LaunchRecord:
        raw = json.loads(data)
        return cls(group=raw["group"], job_id=raw["job_id"],
                   attempts={str(k): int(v) for k, v in raw.get("attempts", {}).items()},
                   launched_at=raw.get("launched_at", ""), ended_at=raw.get("ended_at"),
                   outcome=raw.get("outcome"))


class LaunchBook:
    """The launch records of one job's work folder."""

    def __init__(self, store: Store, layout: JobLayout) -> None:
        self.store = store
        self.layout = layout

    def launching(self, group: str, job_id: str, attempts: Mapping[str, int]) -> LaunchRecord:
        record = LaunchRecord(group, job_id, dict(attempts), now_iso())
        self.store.write_bytes(self.layout.launch_record(group), record.to_json())
        return record

    def ended(self, group: str, outcome: str) -> None:
        """The group is gone. Best effort: a record left unended only costs one idempotent
        delete by the next controller."""
        uri = self.layout.launch_record(group)
        try:
            record = LaunchRecord.from_json(self.store.read_bytes(uri))
            self.store.write_bytes(uri, replace(record, ended_at=now_iso(), outcome=outcome).to_json())
        except (OSError, ValueError, KeyError) as err:
            log.debug("launch record of %s not marked ended: %s", group, err)

    def all(self) -> list[LaunchRecord]:
        records = []
        for uri in self.store.list(self.layout.launches_dir):
            if not uri.endswith(".json"):
                continue
            try:
                records.append(LaunchRecord.from_json(self.store.read_bytes(uri)))
            except (OSError, ValueError, KeyError):
                continue  # a record cut off mid-write: its group is found by its tag, if any
        return records


def unended(records: Iterable[LaunchRecord]) -> list[str]:
    return sorted(r.group for r in records if r.ended_at is None)


def attempts_launched(records: Iterable[LaunchRecord]) -> dict[str, int]:
    """The highest attempt ever launched, per task: the next attempt numbers past it."""
    highest: dict[str, int] = {}
    for record in records:
        for task_id, attempt in record.attempts.items():
            highest[task_id] = max(highest.get(task_id, 0), attempt)
    return highest
