"""The contract between the controller and a runner: what a worker/container is told, and what it
reports back. Plain JSON so it travels in a process's or a container's environment.

Environment of a runner::

    SERVERLESS_SCORE_WORK    JSON of a WorkOrder (the job's scoring settings and one or more tasks)
    SERVERLESS_SCORE_GROUP   the group name (for logs and for finding orphans)
    SERVERLESS_SCORE_SECRETS (secure) the SAS URLs of exactly what the tasks read and write, or the
                             SAS tokens of the job's URLs; never logged (``StoreConfig.worker_secrets``)

A runner writes, for each task it finishes, the part and then ``result.json`` (TaskResult).
Its exit code is 0 when every task succeeded, 1 otherwise. On stdout it prints one marker line
per task start/end (``::task t00003 ...``) so a group's log can be split into task logs.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from ..planning.tasks import Task

ENV_WORK = "SERVERLESS_SCORE_WORK"
ENV_GROUP = "SERVERLESS_SCORE_GROUP"
ENV_SECRETS = "SERVERLESS_SCORE_SECRETS"
MARKER = "::task"


@dataclass(frozen=True)
class TaskOrder:
    task: Task
    part: str
    result: str
    attempt: int

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task.to_dict(), "part": self.part, "result": self.result,
                "attempt": self.attempt}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskOrder:
        return cls(Task.from_dict(data["task"]), data["part"], data["result"], data["attempt"])


@dataclass(frozen=True)
class WorkOrder:
    job_id: str
    format: str | None
    record_pattern: str | None
    runtime: str
    scorer: str
    predict_method: str
    id_columns: list[str]
    model: str | None
    output_format: str
    orders: list[TaskOrder] = field(default_factory=list)
    storage: dict[str, Any] = field(default_factory=dict)  # StoreConfig.public(): no secrets
    model_sha256: str | None = None  # the runner refuses a model whose bytes do not match
    # runtime = "r" only: extra predict() arguments and what an unseen factor level does
    predict_args: dict[str, Any] = field(default_factory=dict)
    on_unknown_level: str = "error"

    def to_json(self) -> str:
        data = asdict(self)
        data["orders"] = [o.to_dict() for o in self.orders]
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> WorkOrder:
        data = json.loads(text)
        data["orders"] = [TaskOrder.from_dict(o) for o in data["orders"]]
        return cls(**data)


@dataclass(frozen=True)
class TaskResult:
    """What a finished task reports; written to ``result.json`` only after its part is complete."""

    task_id: str
    attempt: int
    records_in: int | None
    records_out: int
    begin: int | None
    end: int | None
    pinned_begin: int | None
    header: str
    columns: list[str]
    part_sha256: str
    part_bytes: int
    seconds: float

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str | bytes) -> TaskResult:
        return cls(**json.loads(text))
