"""Where everything of a job lives, relative to its output. One module builds every path, so the
controller, the runner and resume agree on them.

For ``output = out/scores.csv``::

    out/scores.csv                   the merged output (appears only when the whole job succeeded)
    out/scores.csv.manifest.json     tasks, row counts, checksums, attempts, timings
    out/scores.csv.work/job.json     the job id and plan (what resume compares against)
    out/scores.csv.work/tasks/t00003/part          the task's scores (atomic)
    out/scores.csv.work/tasks/t00003/result.json   its accounting (written after the part)
    out/scores.csv.work/tasks/t00003/attempt-1.log its log, per attempt
    out/scores.csv.work/groups/<group>.log         a whole worker/container log
    out/scores.csv.work/launches/<group>.json      written before a group is created, marked
                                                   ended once it is deleted (crash-proof create)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class JobLayout:
    output: str

    @property
    def manifest(self) -> str:
        return f"{self.output}.manifest.json"

    @property
    def work(self) -> str:
        return f"{self.output}.work"

    @property
    def job_file(self) -> str:
        return f"{self.work}/job.json"

    def task_dir(self, task_id: str) -> str:
        return f"{self.work}/tasks/{task_id}"

    def part(self, task_id: str) -> str:
        return f"{self.task_dir(task_id)}/part"

    def result(self, task_id: str) -> str:
        return f"{self.task_dir(task_id)}/result.json"

    def task_log(self, task_id: str, attempt: int) -> str:
        return f"{self.task_dir(task_id)}/attempt-{attempt}.log"

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

    def local_state_dir(self, cache: Path) -> str:
        """Where a backend keeps per-machine state (pid files, raw logs): beside a local output,
        or, for a blob output, in ``cache`` under a name derived from the output URI."""
        if "://" not in self.output or self.output.startswith("file://"):
            return self.groups_dir.removeprefix("file://")
        return str(cache / "jobs" / hashlib.sha256(self.output.encode()).hexdigest()[:16] / "groups")
