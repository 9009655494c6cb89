"""Planning: a job spec and its input become a deterministic list of tasks.

``make_plan`` does the listing (the only I/O) and hands the pure functions of ``partition`` the
sizes. The job id hashes everything that decides the output, so the same job on the same input
gets the same id and the same task ids: that is what resume relies on.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import InputError
from ..spec import JobSpec
from .inputs import describe_inputs, fingerprint
from .partition import plan_byte_tasks, plan_rowgroup_tasks, plan_shards
from .tasks import InputFile, Shard, Task

OutputFormat = Literal["csv", "jsonl", "parquet", "lines"]

__all__ = ["InputFile", "OutputFormat", "Plan", "Shard", "Task", "make_plan", "output_format"]


@dataclass(frozen=True)
class Plan:
    job_id: str
    spec: JobSpec
    tasks: tuple[Task, ...]
    files: tuple[InputFile, ...]
    output_format: OutputFormat

    @property
    def total_bytes(self) -> int:
        return sum(t.size for t in self.tasks) if self.files else 0


def output_format(spec: JobSpec) -> OutputFormat:
    """What the parts and the merged output are: scores as csv/jsonl/parquet (by the output's
    extension, csv by default), or plain lines for commands and ``records`` input."""
    if spec.runtime == "command" or spec.format == "records":
        return "lines"
    suffix = Path(spec.output).suffix.lower()
    return {".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}.get(suffix, "csv")  # type: ignore[return-value]


def _file_stamp(path: str | None) -> list[object]:
    if not path or "://" in path or not os.path.exists(path):
        return [path]
    st = os.stat(path)
    return [path, st.st_size, st.st_mtime_ns]


def _job_id(spec: JobSpec, files: list[InputFile], tasks: list[Task]) -> str:
    decisive = spec.model_dump(
        exclude={"max_parallel", "retries", "timeout", "overwrite", "backend", "resources"}
    )
    payload = {
        "spec": decisive,
        "input": fingerprint(files),
        "model": _file_stamp(spec.model),
        "scorer": _file_stamp(spec.scorer) if spec.scorer != "predict" else "predict",
        "tasks": [(t.path, t.start, t.end) for t in tasks] if files else len(tasks),
    }
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
    return f"{spec.name}-{digest[:10]}"


def make_plan(spec: JobSpec) -> Plan:
    """List the input and split it into tasks (see ``partition`` for the rules)."""
    if spec.model is not None and "://" not in spec.model and not os.path.isfile(spec.model):
        raise InputError(f"model: {spec.model!r} does not exist",
                         hint="Train and save the model first, or fix the path in the job file.")
    if spec.scorer != "predict" and spec.runtime != "command" and not os.path.isfile(spec.scorer):
        raise InputError(f"scorer: the script {spec.scorer!r} does not exist")
    files: list[InputFile] = []
    if spec.shards is not None:
        tasks = plan_shards(spec.shards, spec.bin_count)
    else:
        assert spec.input is not None
        files = describe_inputs(spec.input, spec.effective_format)
        planner = plan_rowgroup_tasks if spec.format == "parquet" else plan_byte_tasks
        tasks = planner(files, chunk_size=spec.chunk_size, chunks=spec.chunks,
                        max_parallel=spec.max_parallel)
        if not tasks:
            raise InputError(f"input: {spec.input!r} holds no data to score")
    return Plan(
        job_id=_job_id(spec, files, tasks),
        spec=spec,
        tasks=tuple(tasks),
        files=tuple(files),
        output_format=output_format(spec),
    )
