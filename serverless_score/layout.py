"""Where everything of a job lives, relative to its output. One module builds every path, so the
controller, the runner and resume agree on them.

For ``output = out/scores.csv``::

    out/scores.csv                   the merged output (appears only when the whole job succeeded)
    out/scores.csv.errors.csv        rows left out (on_error = "skip"), only when there are any
    out/scores.csv.manifest.json     the summary: job, spec, inputs, output checksum, totals,
                                     timings, cost; names the task lines (count, sha256)
    out/scores.csv.manifest.tasks.jsonl  one line per task: range, rows, checksums, attempts,
                                     seconds (written before the summary; controller/manifest.py)
    out/scores.csv.work/job.json     the job id and plan (what resume compares against)
    out/scores.csv.work/tasks/t00003/attempt-2/claim.json   the group that took attempt 2
    out/scores.csv.work/tasks/t00003/attempt-2/part         attempt 2's scores (atomic)
    out/scores.csv.work/tasks/t00003/attempt-2/log.txt      its whole log (stdout and stderr)
    out/scores.csv.work/tasks/t00003/attempt-2/errors.jsonl the rows it left out, if any
    out/scores.csv.work/tasks/t00003/attempt-2/status.json  how it ended (written last)
    out/scores.csv.work/groups/<group>.log                  what the backend kept of a group's log
    out/scores.csv.work/launches/<group>.json               written before a group is created,
                                                            marked ended once it is deleted
    out/scores.csv.work/queue/<run>/00000001.json           the tickets groups claim, one per
                                                            attempt (one folder per controller run)
    out/scores.csv.work/merge/<nonce>/i000000              a blob merge's intermediate blobs
                                                            (more parts than a blob has blocks),
                                                            deleted once the output is committed

Each attempt writes only in its own folder, so a retry never touches what an earlier attempt
(perhaps still running in a group nobody watches any more) writes.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

# A file of an attempt, in a listing of the work folder: (task id, attempt, file name).
_ATTEMPT_FILE = re.compile(r"/tasks/(t\d+)/attempt-(\d+)/([^/]+)$")
PART, LOG, STATUS, ERRORS, CLAIM = "part", "log.txt", "status.json", "errors.jsonl", "claim.json"


def attempt_file(uri: str) -> tuple[str, int, str] | None:
    """``.../tasks/t00003/attempt-2/status.json`` -> ``("t00003", 2, "status.json")``."""
    match = _ATTEMPT_FILE.search(uri.replace("\\", "/"))
    return (match.group(1), int(match.group(2)), match.group(3)) if match else None


def stored_attempts(uris: Iterable[str]) -> dict[str, dict[int, set[str]]]:
    """From a listing of the work folder: task -> attempt -> the names of its files there."""
    found: dict[str, dict[int, set[str]]] = {}
    for uri in uris:
        parsed = attempt_file(uri)
        if parsed is not None and not parsed[2].startswith("."):  # not a file being written
            task_id, attempt, name = parsed
            found.setdefault(task_id, {}).setdefault(attempt, set()).add(name)
    return found


@dataclass(frozen=True)
class JobLayout:
    output: str

    @property
    def manifest(self) -> str:
        return f"{self.output}.manifest.json"

    @property
    def manifest_tasks(self) -> str:
        """The manifest's task lines (a manifest of before them holds its tasks inline)."""
        return f"{self.output}.manifest.tasks.jsonl"

    @property
    def errors(self) -> str:
        return f"{self.output}.errors.csv"

    @property
    def work(self) -> str:
        return f"{self.output}.work"

    @property
    def job_file(self) -> str:
        return f"{self.work}/job.json"

    def task_dir(self, task_id: str) -> str:
        return f"{self.work}/tasks/{task_id}"

    def attempt_dir(self, task_id: str, attempt: int) -> str:
        return f"{self.task_dir(task_id)}/attempt-{attempt}"

    def part(self, task_id: str, attempt: int) -> str:
        return f"{self.attempt_dir(task_id, attempt)}/{PART}"

    def status(self, task_id: str, attempt: int) -> str:
        return f"{self.attempt_dir(task_id, attempt)}/{STATUS}"

    def claim(self, task_id: str, attempt: int) -> str:
        return f"{self.attempt_dir(task_id, attempt)}/{CLAIM}"

    @property
    def queues_dir(self) -> str:
        return f"{self.work}/queue"

    def queue_dir(self, run: str) -> str:
        return f"{self.queues_dir}/{run}"

    def attempt_errors(self, task_id: str, attempt: int) -> str:
        return f"{self.attempt_dir(task_id, attempt)}/{ERRORS}"

    def task_log(self, task_id: str, attempt: int) -> str:
        return f"{self.attempt_dir(task_id, attempt)}/{LOG}"

    @property
    def tasks_dir(self) -> str:
        return f"{self.work}/tasks"

    def group_log(self, group: str) -> str:
        return f"{self.work}/groups/{group}.log"

    def launch_record(self, group: str) -> str:
        return f"{self.launches_dir}/{group}.json"

    @property
    def launches_dir(self) -> str:
        return f"{self.work}/launches"

    @property
    def groups_dir(self) -> str:
        return f"{self.work}/groups"

    @property
    def merge_dir(self) -> str:
        return f"{self.work}/merge"

    def local_state_dir(self, cache: Path) -> str:
        """Where a backend keeps per-machine state (pid files, raw logs): beside a local output,
        or, for a blob output, in ``cache`` under a name derived from the output URI."""
        if "://" not in self.output or self.output.startswith("file://"):
            return self.groups_dir.removeprefix("file://")
        return str(cache / "jobs" / hashlib.sha256(self.output.encode()).hexdigest()[:16] / "groups")
