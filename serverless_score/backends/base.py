"""The compute backend protocol: create a group, read its state, read its logs, delete it, list a
job's groups. ``local`` runs a group as a process tree on this machine; ``docker`` and ``aci`` run
it as containers. The controller's loop (``controller/watch.py``) is the same for all of them.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

# Labels / tags every group carries, so any controller (or `cleanup`) can find it again: owned by
# the contract, re-exported here for the backends.
from ..runner.contract import LABEL_EXPIRES as LABEL_EXPIRES
from ..runner.contract import LABEL_JOB as LABEL_JOB
from ..runner.contract import LABEL_TASKS as LABEL_TASKS


class Phase(enum.Enum):
    STARTING = "starting"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        return self in (Phase.SUCCEEDED, Phase.FAILED)


@dataclass(frozen=True)
class GroupState:
    name: str
    phase: Phase
    exit_code: int | None = None
    detail: str = ""  # why it failed, in words a user can act on
    # When the group's containers really started and stopped (epoch seconds), for backends that
    # know (ACI's instance view): the manifest's container seconds then use these instead of the
    # controller's own measurement (create request -> seen finished).
    started_at: float | None = None
    finished_at: float | None = None
    # False when running the task again cannot help until the user changes something (an image
    # that cannot be pulled): the task fails at once instead of spending its retries.
    retryable: bool = True
    # A Spot group Azure evicted (its capacity reclaimed): its tasks run again in a new group
    # without spending their retries; the manifest counts evictions.
    evicted: bool = False
    pull_seconds: float | None = None  # the image pull, where the backend reports it (ACI)


@dataclass(frozen=True)
class GroupInfo:
    """A group found by its labels: what ``cleanup`` and ``status`` need to know about it."""

    name: str
    job_id: str
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def expires(self) -> str | None:
        """ISO 8601 UTC time after which no controller should still be watching it."""
        return self.labels.get(LABEL_EXPIRES)


@dataclass(frozen=True)
class GroupSpec:
    """One container group (locally: one worker process) running ``task_ids`` one after another."""

    name: str
    job_id: str
    task_ids: tuple[str, ...]
    env: Mapping[str, str]
    cpu: float = 1.0
    memory_gb: float = 1.5
    labels: Mapping[str, str] = field(default_factory=dict)
    # Secrets (SAS URLs) for the worker's environment: ACI secure values, never logged or shown.
    secure_env: Mapping[str, str] = field(default_factory=dict, repr=False)

    def thread_caps(self) -> dict[str, str]:
        """Thread pools sized to the group's cpu, not the host's: in a 1-vCPU container OpenBLAS,
        OpenMP (R's data.table, ranger) and Arrow otherwise start a thread per host core and
        the threads fight over the one they have."""
        threads = str(max(1, math.floor(self.cpu)))
        return {"OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads,
                "MKL_NUM_THREADS": threads}


class Backend(Protocol):
    """A backend may also set ``sees_local_files = False`` (containers elsewhere): the job then
    stores a local scorer script beside the output for its workers (default: True)."""

    name: str

    def tasks_per_group(self, pending: int, max_parallel: int) -> int:
        """How many tasks to pack into one group (amortises start-up)."""
        ...

    def begin_create_group(self, group: GroupSpec) -> None:
        """Start creating the group; returns without waiting for it to run."""
        ...

    def get_states(self, names: Sequence[str]) -> dict[str, GroupState]:
        """States of many groups, in as few calls as the backend allows. A group that no longer
        exists is reported FAILED with a detail saying so."""
        ...

    def get_logs(self, name: str) -> str:
        """The group's whole log ("" if it has none)."""
        ...

    def delete_group(self, name: str) -> None:
        """Stop and delete; returns once it is gone; succeeds if it already is."""
        ...

    def list_groups(self, job_id: str) -> list[str]:
        """Groups of this job that still exist (orphans of an earlier controller included)."""
        ...

    def list_all_groups(self) -> list[GroupInfo]:
        """Every group this tool created that still exists, of any job (``cleanup``)."""
        ...


@runtime_checkable
class WaitsForGroups(Protocol):
    """Optional: a backend that can sleep until one of its groups may have finished, so the
    controller hears of a finished group at once instead of at its next poll (the local backend:
    its worker processes' exits). It also wakes for ``wake``, a file descriptor the controller
    reads its workers' "status stored" signals from (controller/wakeup.py)."""

    def wait_any(self, names: Sequence[str], timeout: float, wake: int | None = None) -> bool:
        """Return when one of ``names`` may have finished, ``wake`` is readable, or after
        ``timeout`` seconds; True when ``wake`` is readable."""
        ...


@runtime_checkable
class PacesCreates(Protocol):
    """Optional: a backend whose creates are rationed (ACI: so many per subscription and region
    in a sliding window). Such a backend still takes every group given to ``begin_create_group``
    without blocking and sends it when its turn comes (reporting it STARTING until then); a
    scheduler that asks first can instead keep the tasks unassigned, or wait, while it is > 0."""

    def create_delay(self) -> float:
        """Seconds until a group given to ``begin_create_group`` now would be sent (0: at once),
        counting the groups already waiting for their turn."""
        ...
