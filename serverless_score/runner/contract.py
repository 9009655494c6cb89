"""The contract between the controller, its workers and the backends: everything that crosses
that boundary, as typed data. Only the standard library is imported at module level, so a worker
(or ``status`` from another machine) pays nothing for it.

Environment of a runner::

    SERVERLESS_SCORE_WORK    JSON of a WorkOrder (the job's scoring settings and one or more tasks)
    SERVERLESS_SCORE_GROUP   the group name (written into each attempt's status)
    SERVERLESS_SCORE_SECRETS (secure) the SAS URLs of exactly what the tasks read and write, or the
                             SAS tokens of the job's URLs; never logged (``StoreConfig.worker_secrets``)

For each task it runs, a runner writes into that attempt's own folder (``layout.JobLayout``):
the part, then the task's whole log (its stdout and stderr, a scoring child's included), then,
last, its ``AttemptStatus``. The controller reads the status and nothing else: logs are for
people and are never parsed. Every file is created only if absent, so two workers given the same
attempt (a zombie and its retry) can never overwrite each other's.
Exit code: 0 when every task succeeded, 1 otherwise, 2 for a bad work order.

Labels (ACI tags, Docker labels, the local backend's pid files) every group carries, so any
controller can find it again: ``LABEL_JOB``, ``LABEL_TASKS``, ``LABEL_EXPIRES``.
"""

from __future__ import annotations

import enum
import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..layout import JobLayout
    from ..planning.tasks import Task

ENV_WORK = "SERVERLESS_SCORE_WORK"
ENV_GROUP = "SERVERLESS_SCORE_GROUP"
ENV_SECRETS = "SERVERLESS_SCORE_SECRETS"
# A named pipe the controller reads (controller/wakeup.py): a byte there once a status is stored.
ENV_NOTIFY = "SERVERLESS_SCORE_NOTIFY"
LABEL_JOB, LABEL_TASKS, LABEL_EXPIRES = "job", "tasks", "expires"


@dataclass(frozen=True)
class TaskOrder:
    """One task of a work order, with the files of this attempt (and only this attempt)."""

    task: Task
    attempt: int
    part: str
    log: str
    status: str

    @property
    def errors(self) -> str:
        """The attempt's errors file (JSON lines), beside its part."""
        return self.part.rsplit("/", 1)[0] + "/errors.jsonl"

    @classmethod
    def of(cls, layout: JobLayout, task: Task, attempt: int) -> TaskOrder:
        return cls(task, attempt, layout.part(task.id, attempt), layout.task_log(task.id, attempt),
                   layout.status(task.id, attempt))

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task.to_dict(), "attempt": self.attempt, "part": self.part,
                "log": self.log, "status": self.status}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskOrder:
        from ..planning.tasks import Task  # the planner's package: only when decoding an order

        return cls(Task.from_dict(data["task"]), data["attempt"], data["part"], data["log"],
                   data["status"])


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
    on_error: str = "fail"  # "skip": bad records go to the attempt's errors file
    encoding: str = "utf-8"
    # A group that pulls its work (``orders`` empty): the job's ticket queue (``QueueOrder``).
    queue: dict[str, Any] | None = None

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
class QueueOrder:
    """Where a pulling group finds its work: the queue folder of one controller run, the ticket
    to start at, how often to look for a new one, and how long to wait for one before exiting
    (a group idle that long is not needed: the controller makes a new one if work comes)."""

    folder: str
    start: int = 1
    poll: float = 0.5
    linger: float = 20.0
    # Its own stripe first: tickets start + offset, + stride, + 2 x stride ... (the fleet's
    # groups do not all race for the same ticket); then any ticket left, from the head.
    stride: int = 1
    offset: int = 0

    def ticket(self, seq: int) -> str:
        return f"{self.folder}/{seq:08d}.json"

    @property
    def head(self) -> str:
        """The lowest ticket the controller last saw unclaimed (a late group skips to it)."""
        return f"{self.folder}/head.json"

    @property
    def closed(self) -> str:
        """Present once every task has its result: idle groups exit at once."""
        return f"{self.folder}/closed"


@dataclass(frozen=True)
class Ticket:
    """One attempt of one task, offered to whichever group claims it first. A claim is the
    attempt's ``claim.json``, created only if absent, so exactly one group runs each attempt.
    ``grants`` (workers on SAS URLs only) are the SAS URLs this attempt needs and the one to read
    the next ticket with."""

    seq: int
    order: TaskOrder
    grants: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def claim(self) -> str:
        return self.order.part.rsplit("/", 1)[0] + "/claim.json"

    def to_json(self) -> bytes:
        return json.dumps({"seq": self.seq, "order": self.order.to_dict(),
                           "grants": self.grants}).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Ticket:
        raw = json.loads(data)
        return cls(int(raw["seq"]), TaskOrder.from_dict(raw["order"]), dict(raw.get("grants") or {}))


@dataclass(frozen=True)
class Claim:
    """Who took a ticket, and when (its wall clock: for people; the controller times attempts
    from when it first saw the claim)."""

    group: str
    seq: int
    claimed_at: str

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Claim:
        raw = json.loads(data)
        return cls(str(raw["group"]), int(raw["seq"]), str(raw.get("claimed_at", "")))


@dataclass(frozen=True)
class TaskResult:
    """What a finished task reports: its accounting and the part it wrote (``part``, this
    attempt's own file: a result never names a part it did not write)."""

    task_id: str
    attempt: int
    records_in: int | None
    records_out: int
    begin: int | None
    end: int | None
    pinned_begin: int | None
    header: str
    columns: list[str]
    part: str
    part_sha256: str
    part_bytes: int
    seconds: float
    # Records left out of the part (on_error = "skip"), each a line of the attempt's errors file.
    rows_failed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskResult:
        return cls(**data)


class Outcome(enum.Enum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # running it again may help (a lost connection, a killed worker)
    FAILED_PERMANENTLY = "failed-permanently"  # it cannot, until the user changes something


@dataclass(frozen=True)
class AttemptStatus:
    """How one attempt of one task ended, written by the runner as the attempt's last file (or,
    when the worker died without writing one, made up by the controller from the group's state).

    ``begin`` is where the task found its first record, known before scoring starts, so a failed
    task still says whether its boundary guess can be the cause. ``result`` is set exactly when
    the attempt succeeded."""

    task_id: str
    attempt: int
    group: str
    outcome: Outcome
    reason: str = ""  # why it failed, in words a user can act on ("" when it succeeded)
    begin: int | None = None
    result: TaskResult | None = None
    seconds: float = 0.0

    def __post_init__(self) -> None:
        if (self.outcome is Outcome.SUCCEEDED) != (self.result is not None):
            raise ValueError(f"status of {self.task_id}: outcome {self.outcome.value} "
                             f"{'without' if self.result is None else 'with'} a result")

    @property
    def succeeded(self) -> bool:
        return self.outcome is Outcome.SUCCEEDED

    @property
    def retryable(self) -> bool:
        return self.outcome is not Outcome.FAILED_PERMANENTLY

    def to_json(self) -> str:
        data = asdict(self)
        data["outcome"] = self.outcome.value
        return json.dumps(data, indent=1)

    @classmethod
    def from_json(cls, text: str | bytes) -> AttemptStatus:
        """Raises ValueError (or TypeError, KeyError) for anything that is not a whole status."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("a status is a JSON object")
        data["outcome"] = Outcome(data["outcome"])
        if data.get("result") is not None:
            data["result"] = TaskResult.from_dict(data["result"])
        return cls(**data)
