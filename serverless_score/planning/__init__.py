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
from typing import TYPE_CHECKING, Any, Literal

from ..errors import InputError
from ..storage import StoreConfig, get_store, is_local
from ..units import plural
from .columns import check_columns
from .inputs import describe_inputs, fingerprint
from .partition import plan_byte_tasks, plan_rowgroup_tasks, plan_shards
from .tasks import InputFile, Shard, Task

if TYPE_CHECKING:
    from ..sources import ModelSource

    # Annotations only: every worker imports planning.tasks (the contract's Task), and the spec
    # would bring pydantic and the model classes' build (~0.1 s of each worker's start).
    from ..spec import JobSpec

OutputFormat = Literal["csv", "jsonl", "parquet", "lines"]

__all__ = ["InputFile", "OutputFormat", "Plan", "Shard", "Task", "check_output_location",
           "chunks_note", "create_output_folder", "make_plan", "output_format"]


@dataclass(frozen=True)
class Plan:
    job_id: str
    spec: JobSpec
    tasks: tuple[Task, ...]
    files: tuple[InputFile, ...]
    output_format: OutputFormat
    # The registry or pins URI the job named, when it named one: ``spec.model`` is then the
    # concrete file it resolved to (see serverless_score/sources).
    source: ModelSource | None = None

    def spec_as_written(self, **dump: Any) -> dict[str, Any]:
        """The spec as the manifest and job.json record it: the model as the job named it
        (a registry or pins URI, not the cache path it resolved to)."""
        data = self.spec.model_dump(mode="json", **dump)
        if self.source is not None:
            data["model"] = self.source.uri
        return data

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


def _file_stamp(path: str | None, config: StoreConfig | None = None) -> list[object]:
    if not path or (is_local(path) and not os.path.exists(path)):
        return [path]
    info = get_store(path, config).info(path)
    return [path, info.size, info.version]


def _check_model(spec: JobSpec, config: StoreConfig) -> None:
    if spec.model is None:
        return
    if is_local(spec.model):
        if not os.path.isfile(spec.model):
            raise InputError(f"model: {spec.model!r} does not exist",
                             hint="Train and save the model first, or fix the path in the job file.")
        return
    try:
        get_store(spec.model, config).info(spec.model)
    except FileNotFoundError as err:
        raise InputError(f"model: {err}", hint=getattr(err, "hint", "")) from None


def _job_id(spec: JobSpec, files: list[InputFile], tasks: list[Task],
            config: StoreConfig | None = None, source: ModelSource | None = None) -> str:
    how_it_runs = ("max_parallel", "retries", "timeout", "straggler_factor", "overwrite",
                   "backend", "resources",
                   # budgets: raising one resumes the job that stopped on it
                   "max_failed_rows", "max_failed_fraction",
                   # where a registry is: what it resolved to is in the model's stamp
                   "mlflow")
    decisive = spec.model_dump(exclude={
        **dict.fromkeys(how_it_runs, True),
        # a budget too (and left out, the ids of jobs from before it was added stay the same)
        "azure": {"max_evictions"}})
    if source is not None:
        # The URI as written and the version it resolved to, not the cache path of its file:
        # a newer version behind the same URI is another job, another machine the same one.
        decisive["model"] = source.uri
    payload = {
        "spec": decisive,
        "input": fingerprint(files),
        "model": source.stamp() if source is not None else _file_stamp(spec.model, config),
        "scorer": _file_stamp(spec.scorer) if spec.scorer not in ("predict",) and spec.runtime != "command" else spec.scorer,
        "tasks": [(t.path, t.start, t.end) for t in tasks] if files else len(tasks),
    }
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
    return f"{spec.name}-{digest[:10]}"


def chunks_note(plan: Plan) -> str | None:
    """Why the plan has another number of tasks than ``chunks`` asked for, or None."""
    asked, made = plan.spec.chunks, len(plan.tasks)
    if asked is None or asked == made or not plan.files:
        return None
    got = f"chunks = {asked} asked for, {plural(made, 'task')} planned"
    if plan.spec.format == "parquet":
        groups = sum(len(f.row_group_bytes or ()) for f in plan.files)
        return (f"{got}: the Parquet input has {plural(groups, 'row group')} in "
                f"{plural(len(plan.files), 'file')}, and a task is whole row groups of one file "
                "(write the file with smaller row groups, e.g. pyarrow's row_group_size, for more)")
    if len(plan.files) > 1:
        return (f"{got}: the input is {plural(len(plan.files), 'file')} and a task never spans "
                "two files, so each file gets tasks in proportion to its size (at least one)")
    return f"{got}: the input has only {plural(plan.total_bytes, 'byte')} (a task is at least one)"


def check_output_location(output: str) -> None:
    """A local output must be creatable: its folder (or the nearest existing ancestor, where the
    missing folders would be made) is a folder this process may write in. Checked before
    anything is written (read-only: ``run`` then creates the folder, see ``create_output_folder``),
    so a file in the way or a read-only folder is one clear error, not a traceback mid-job."""
    if not is_local(output):
        return
    path = Path(output.removeprefix("file://"))
    if path.is_dir():
        raise InputError(f"output: {str(path)!r} is a directory; give a file name inside it",
                         hint=f"e.g. output = \"{path / 'scores.csv'}\"")
    for folder in path.parents:
        if not os.path.lexists(folder):
            continue
        if not folder.is_dir():
            raise InputError(
                f"output: cannot create {str(path)!r}: {str(folder)!r} is a file, not a folder",
                hint="Move that file away or choose another output.")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise InputError(
                f"output: cannot create {str(path)!r}: no permission to write in {str(folder)!r}",
                hint="Choose an output in a folder you may write to, or change its permissions.")
        return


def create_output_folder(output: str) -> None:
    """Make a local output's folder (what the lease, the work folder and the output go in);
    an OS refusal (read-only file system, permissions the access check cannot see) is an
    InputError naming the path and the reason."""
    if not is_local(output):
        return
    folder = Path(output.removeprefix("file://")).parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        where = err.filename or folder
        raise InputError(f"output: cannot create the folder {str(where)!r} for {output!r}: "
                         f"{err.strerror or err}",
                         hint="Choose an output in a folder you may write to.") from None


def make_plan(spec: JobSpec, config: StoreConfig | None = None,
              source: ModelSource | None = None) -> Plan:
    """List the input and split it into tasks (see ``partition`` for the rules). A registry or
    pins model URI is resolved first, unless the caller resolved it already (``source``, with
    ``spec`` naming the file it resolved to): once per job."""
    config = config if config is not None else StoreConfig.from_spec(spec)
    from ..sources import is_source_uri

    if source is None and is_source_uri(spec.model):
        from ..sources import resolve_spec

        resolved = resolve_spec(spec, config)
        spec, source = resolved.spec, resolved.source
    _check_model(spec, config)
    check_output_location(spec.output)
    if spec.scorer != "predict" and spec.runtime != "command" and not os.path.isfile(spec.scorer):
        raise InputError(f"scorer: the script {spec.scorer!r} does not exist")
    files: list[InputFile] = []
    if spec.shards is not None:
        tasks = plan_shards(spec.shards, spec.bin_count)
    else:
        assert spec.input is not None
        files = describe_inputs(spec.input, spec.effective_format, config, spec.output)
        planner = plan_rowgroup_tasks if spec.format == "parquet" else plan_byte_tasks
        tasks = planner(files, chunk_size=spec.chunk_size, chunks=spec.chunks,
                        max_parallel=spec.max_parallel)
        if not tasks:
            raise InputError(f"input: {spec.input!r} holds no data to score")
        if source is not None:  # a vetiver model's prototype names its columns: checked first
            from ..sources.needs import check_prototype

            check_prototype(spec, source, files, config)
        check_columns(spec, files, config)
    return Plan(
        job_id=_job_id(spec, files, tasks, config, source),
        spec=spec,
        tasks=tuple(tasks),
        files=tuple(files),
        output_format=output_format(spec),
        source=source,
    )
