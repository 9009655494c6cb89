"""A scoring job from plan to report: ``with Job(spec) as job: result = job.run()``.

plan -> resume -> fan out (watch.Scheduler) -> verify boundaries (repair wrong guesses) ->
merge -> manifest. Leaving the ``with`` block, however it is left, deletes every group the job
created; SIGTERM is turned into the same path as Ctrl-C, and signals that arrive while groups
are being deleted wait until the deletes are done (controller/signals.py). An interrupt says
truthfully which stage it cut short and what was kept.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from ..backends import Backend, get_backend
from ..errors import InputError, JobInterrupted, ScoreError
from ..layout import PART, JobLayout, attempt_file
from ..planning import Plan, create_output_folder, make_plan
from ..planning.partition import chain_repairs
from ..planning.tasks import Task
from ..runner.contract import TaskResult, WorkOrder
from ..sources import ModelSource, is_source_uri, resolve_spec
from ..spec import JobSpec
from ..storage import ComposeResult, StoreConfig, get_store, is_local
from ..storage.config import cache_root
from ..storage.lease import Lease, get_lease
from ..units import plural
from .access import WorkerAccess
from .bad_rows import Budget, budget_error, read_errors, write_errors
from .calibration import Measured, measure, remember
from .changes import model_stamp, refusal
from .empty_output import empty_output
from .estimate import (
    Pricing,
    calibration_for,
    check_max_cost,
    estimate_job,
    run_key,
)
from .launches import LaunchBook, attempts_launched, unended
from .manifest import split_usage, write_manifest
from .merge import merge, merge_plan
from .model_info import ModelInfo, model_info
from .signals import held, interrupts
from .state import load_state
from .watch import Progress, Scheduler, chain_of

log = logging.getLogger(__name__)


class _Counted:
    """The job's progress reporter, and the budget of rows left out (``on_error = "skip"``),
    which stops the job as soon as a finished task exceeds it (controller/bad_rows.py)."""

    def __init__(self, inner: Progress, job: Job, budget: Budget, tasks: list[Task]) -> None:
        self.inner = inner
        self.job = job
        self.budget = budget
        self.tasks = tasks
        self.results: dict[str, TaskResult] = {}

    def job_started(self, total_tasks: int) -> None:
        self.inner.job_started(total_tasks)

    def task_done(self, task: Task, result: TaskResult) -> None:
        self.inner.task_done(task, result)
        self.results[task.id] = result
        if self.budget.task_done(task, result):
            raise self.over_budget(final=False)

    def task_retry(self, task: Task, attempt: int, reason: str) -> None:
        self.inner.task_retry(task, attempt, reason)

    def over_budget(self, *, final: bool) -> Exception:
        rows = read_errors(self.job.store, self.job.layout, self.tasks, self.results)
        errors = write_errors(self.job.store, self.job.layout, rows)
        return budget_error(self.budget, rows, errors, len(self.results), final=final)


class _Quiet:
    def job_started(self, total_tasks: int) -> None:
        pass

    def task_done(self, task: Task, result: TaskResult) -> None:
        pass

    def task_retry(self, task: Task, attempt: int, reason: str) -> None:
        pass


@dataclass
class JobResult:
    """What ``run`` returns and ``--json`` prints."""

    job_id: str
    name: str
    status: str  # succeeded | failed | interrupted | up-to-date
    tasks: int
    rows_in: int | None
    rows_out: int
    output: str
    manifest: str
    work_dir: str
    attempts: int
    retried_tasks: list[str] = field(default_factory=list)
    reused_tasks: int = 0
    repaired_boundaries: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    error: dict[str, str] | None = None
    # Container seconds and cost of this run's groups (see controller/usage.py).
    usage: dict[str, Any] | None = None
    # on_error = "skip": rows left out of the output, and the file that lists them (else None).
    rows_failed: int = 0
    errors: str | None = None
    # What was scored with: the URI as written, the version it resolved to (registry or pins
    # models), the file and its sha256 (None for a job without a model).
    model: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        # Each group's tasks as ``first..last`` runs, as the manifest's summary has them: the
        # printed result grows with the groups, not with the tasks (100,000 ids would be a MB).
        data["usage"] = split_usage(self.usage)[0]
        return data


# What an interrupt in each stage of ``Job.run`` cut short and what it kept: the user is told
# the truth, and told that running the same command again resumes.
_INTERRUPTED = {
    "planning": "interrupted while planning: nothing was created or written",
    "resuming": "interrupted while resuming: no new worker was started, finished tasks are kept "
                "and no output was written",
    "running": "interrupted: every worker was stopped, finished tasks are kept and no output "
               "was written",
    "merging": "interrupted while merging: every task had finished and is kept; the output was "
               "not replaced",
    "finishing": "interrupted after the output was written, before its manifest: the output "
                 "is complete",
}


class Job:
    def __init__(self, spec: JobSpec, *, progress: Progress | None = None,
                 backend: Backend | None = None, poll_interval: float = 0.2,
                 source: ModelSource | None = None) -> None:
        self.store_config = StoreConfig.from_spec(spec)
        if source is None and is_source_uri(spec.model):
            # Resolved once, before the backend exists: it (Docker's binds) and every later
            # step see the concrete file, never the registry again.
            resolved = resolve_spec(spec, self.store_config)
            spec, source = resolved.spec, resolved.source
        self.spec = spec
        self.source = source
        self.layout = JobLayout(spec.output)
        self.store = get_store(spec.output, self.store_config)
        self.backend = backend or get_backend(
            spec.backend, spec=self._spec_for_backend(),
            state_dir=self.layout.local_state_dir(cache_root()))
        self.progress: Progress = progress or _Quiet()
        self.poll_interval = poll_interval
        self._scheduler: Scheduler | None = None
        self.plan: Plan | None = None
        self._replace_output = spec.overwrite  # may the merge replace an existing output?
        self._task_seconds: dict[str, float] = {}  # this run's container seconds per task
        self._measured: Measured | None = None  # what this run measured (calibration.py)
        self.stage = "planning"  # what an interrupt would cut short (see _INTERRUPTED)
        self._lease: Lease | None = None  # held from planning until the job ends

    def __enter__(self) -> Job:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            if self._scheduler is not None:
                self._scheduler.stop_all()
        finally:
            self._release_lease()

    # -- one controller per job: the lease ------------------------------------------------------
    def _take_lease(self, plan: Plan) -> None:
        """Before anything is created or deleted: a second controller of this job stops here
        (LeaseHeld, exit code 3), and a dead one's lease is taken over."""
        lease = get_lease(self.spec.output, plan.job_id, self.store_config)
        lease.acquire()
        self._lease = lease

    def _release_lease(self) -> None:
        lease, self._lease = self._lease, None
        if lease is not None:
            lease.release()

    def _check_lease(self) -> None:
        """Our lease lapsed (the process stalled past it) and another controller took the job
        over: it owns the groups and the output now, so this one stops before merging."""
        if self._lease is not None and self._lease.lost:
            raise ScoreError(
                "this controller lost the job's lease to another controller (it stalled longer "
                "than the lease lasts); it stopped before merging",
                hint="The other controller finishes the job: see `serverless-score status`.",
                retryable=False)

    # -- the flow -----------------------------------------------------------------------------
    def run(self) -> JobResult:
        """Run the job holding its lease; on Ctrl-C or SIGTERM stop every group and raise
        JobInterrupted saying what the interrupt cut short. The lease is released however this
        ends."""
        try:
            with interrupts():
                try:
                    return self._run()
                except KeyboardInterrupt:
                    if self._scheduler is not None:
                        self._scheduler.stop_all()  # signals held until every delete was tried
                    raise
        except KeyboardInterrupt:
            raise JobInterrupted(
                _INTERRUPTED[self.stage],
                hint="Run the same command again to resume; finished tasks are kept.",
            ) from None
        finally:
            self._release_lease()

    def _run(self) -> JobResult:
        started = time.monotonic()
        timings: dict[str, float] = {}
        plan = self.plan = make_plan(self.spec, self.store_config, source=self.source)
        pricing = Pricing.for_spec(self.spec)
        # Hashed once: the calibration's lookup and the manifest take the same checksum.
        model = model_info(self.spec.model, self.store_config)
        calibration = calibration_for(self.spec, pricing, model.sha256 if model else None)
        estimate = estimate_job(plan, self.backend, pricing, calibration)
        check_max_cost(self.spec, estimate, pricing)  # before anything is created
        access = WorkerAccess.decide(self.spec, self.store_config)
        timings["plan_s"] = round(time.monotonic() - started, 3)
        create_output_folder(self.spec.output)  # the one thing made before the lease
        self._take_lease(plan)  # before anything is created or deleted
        done = self._already_done(plan)
        if done is not None:
            return done
        self.stage = "resuming"
        launches = LaunchBook(self.store, self.layout)
        self._delete_orphans(plan, launches)
        state = load_state(self.store, self.layout, plan)
        if model is not None and self.source is not None:  # into the work folder load_state kept
            model = self._model_for_workers(model)
            access = replace(access, model=model.uri)
        # Attempt numbers go past every attempt ever launched (even one whose create answer was
        # lost): one (job, task, attempt) never names two groups.
        previous_attempts = dict(state.attempts)
        ours = [r for r in launches.all() if r.job_id == plan.job_id]
        for task_id, attempt in attempts_launched(ours).items():
            previous_attempts[task_id] = max(previous_attempts.get(task_id, 0), attempt)
        results: dict[str, TaskResult] = dict(state.results)
        tasks = {t.id: self._as_pinned(t, results.get(t.id)) for t in plan.tasks}
        progress = _Counted(self.progress, self, Budget(self.spec, plan.tasks), list(plan.tasks))
        progress.job_started(len(tasks))
        for task_id, result in results.items():
            progress.task_done(tasks[task_id], result)
        work = self._work_order(plan, model)
        if work.scorer != self.spec.scorer:  # shipped beside the output: the workers read it
            access = replace(access, extra_reads=(work.scorer,))
        scheduler = self._scheduler = Scheduler(
            job_id=plan.job_id, backend=self.backend, store=self.store, layout=self.layout,
            work=work, progress=progress,
            max_parallel=self.spec.max_parallel, retries=self.spec.retries,
            timeout=self.spec.timeout, cpu=self.spec.resources.cpu,
            memory_gb=self.spec.resources.memory_gb, poll_interval=self.poll_interval,
            straggler_factor=self.spec.straggler_factor, access=access,
            max_evictions=self.spec.azure.max_evictions,
            region=None if pricing.region_assumed else pricing.region,
        )
        run_started = time.monotonic()
        repaired = 0
        self.stage = "running"
        pending = [t for t in tasks.values() if t.id not in results]
        results.update(scheduler.run(pending, previous_attempts, known=results,
                                     chain=list(tasks.values())))
        tasks = {i: self._as_pinned(t, results.get(i)) for i, t in tasks.items()}
        while breaks := self._boundary_breaks(tasks, results):
            repaired += len(breaks)
            fixes = [tasks[task_id].pinned(begin) for task_id, begin in breaks]
            for fix in fixes:
                tasks[fix.id] = fix
                results.pop(fix.id, None)
            attempts = {t: r.attempts for t, r in scheduler.records.items()}
            results.update(scheduler.run(fixes, attempts, known=results,
                                         chain=list(tasks.values())))
        timings["run_s"] = round(time.monotonic() - run_started, 3)
        self._check_accounting(plan, tasks, results)
        progress.results = dict(results)
        if progress.budget.exceeded(final=True):
            raise progress.over_budget(final=True)
        self.stage = "merging"
        errors = write_errors(self.store, self.layout, read_errors(
            self.store, self.layout, list(tasks.values()), results))
        merge_started = time.monotonic()
        merged = merge_plan(list(tasks.values()), results, self.layout, plan.output_format)
        if merged.rows == 0 and not merged.header and plan.output_format in ("csv", "parquet"):
            # A header-only input: no task reported columns; the output still gets them.
            empty = empty_output(plan, self.store_config, model.sha256 if model else None)
            merged = replace(merged, header=empty.header if plan.output_format == "csv" else b"",
                             schema=empty.schema)
        composed = self._merge(merged, plan)
        self.stage = "finishing"
        timings["merge_s"] = round(time.monotonic() - merge_started, 3)
        timings["total_s"] = round(time.monotonic() - started, 3)
        attempts_by_task = {t: r.attempts for t, r in scheduler.records.items()}
        job_result = JobResult(
            job_id=plan.job_id, name=self.spec.name, status="succeeded", tasks=len(tasks),
            rows_in=self._rows_in(results), rows_out=merged.rows, output=self.spec.output,
            manifest=self.layout.manifest, work_dir=self.layout.work,
            attempts=sum(attempts_by_task.values()),
            # Every task that ran more than once, whatever the reason (a retry, a repair from an
            # exact boundary, a group lost with its controller).
            retried_tasks=sorted(t for t, r in scheduler.records.items() if r.attempts > 1),
            reused_tasks=len(state.results),
            repaired_boundaries=repaired + len(scheduler.repaired), timings=timings,
            usage=scheduler.usage.summary(billed=pricing.billed, price=pricing.price,
                                          estimate=estimate),
            rows_failed=sum(r.rows_failed for r in results.values()), errors=errors,
            model=self._model_record(model),
        )
        self._task_seconds = scheduler.usage.task_seconds()
        ran = [t for t in tasks.values() if t.id not in state.results]  # not reused
        self._measured = measure(
            key=run_key(self.spec, model.sha256 if model else None), job_id=plan.job_id,
            name=self.spec.name, task_sizes=[(t.size, t.kind == "shard") for t in ran],
            rows=_rows_of(results, ran), task_seconds=[results[t.id].seconds for t in ran],
            usage=job_result.usage or {},
            attempts=sum(attempts_by_task.get(t.id, 1) for t in ran))
        self._write_manifest(plan, tasks, results, attempts_by_task, job_result, composed,
                             model, access,
                             {t: r.evictions for t, r in scheduler.records.items()})
        if self._measured is not None:
            remember(self._measured)  # after the manifest: only a job that succeeded teaches
        self._delete_parts()
        return job_result

    # -- helpers ------------------------------------------------------------------------------
    def _delete_orphans(self, plan: Plan, launches: LaunchBook) -> None:
        """Delete what earlier controllers of this output left running after a crash: groups
        tagged with this job, groups of an earlier version of the job whose work folder this
        was, and groups whose launch was recorded but never ended (a create whose answer was
        lost may not be listed yet). Each is deleted before anything new is created, and its
        launch record marked ended only once the delete succeeded. They are orphans because
        this controller holds the job's lease: a live controller would have kept it, and this
        one would have stopped in ``_take_lease``."""
        previous_job = self._read_json(self.layout.job_file).get("job_id")
        names = set(self.backend.list_groups(plan.job_id))
        if isinstance(previous_job, str) and previous_job != plan.job_id:
            names |= set(self.backend.list_groups(previous_job))
        records = launches.all()
        names |= set(unended(records))
        if not names:
            return
        log.info("deleting %d group(s) an earlier controller left: %s", len(names), sorted(names))
        with held():
            for name in sorted(names):
                self.backend.delete_group(name)
                launches.ended(name, "orphan-deleted")

    def _delete_parts(self) -> None:
        """The parts now live in the output: every attempt's goes (a superseded attempt's too),
        and the tickets of every run; the logs, claims and statuses stay, for ``logs`` and the
        record."""
        self.store.delete_prefix(self.layout.queues_dir)
        parts = (attempt_file(uri) for uri in self.store.list(self.layout.tasks_dir))
        self.store.delete_many([self.layout.part(p[0], p[1]) for p in parts
                                if p is not None and p[2] == PART])

    def _already_done(self, plan: Plan) -> JobResult | None:
        """An output of this very job is already there: nothing to do (idempotent reruns).
        Another job's output is never overwritten unless the job says ``overwrite = true``;
        then only the output is replaced at the merge, and the work folder is the job's own
        to resume (an earlier version's parts are dropped by ``load_state``)."""
        if not self.store.exists(self.spec.output):
            return None
        manifest = self._read_json(self.layout.manifest)
        if manifest.get("job_id") == plan.job_id:
            totals = manifest.get("totals", {})
            return JobResult(
                job_id=plan.job_id, name=self.spec.name, status="up-to-date",
                tasks=len(plan.tasks), rows_in=totals.get("records_in"),
                rows_out=totals.get("records_out", 0), output=self.spec.output,
                manifest=self.layout.manifest, work_dir=self.layout.work, attempts=0,
                rows_failed=totals.get("rows_failed", 0),
                errors=manifest.get("output", {}).get("errors"), model=manifest.get("model"),
            )
        job = self._read_json(self.layout.job_file)
        if job.get("job_id") == plan.job_id and not manifest:
            self._replace_output = True
            return None  # our own merge was cut off before the manifest: finish it
        if self.spec.overwrite:
            self._replace_output = True
            return None
        # Not ours: say which job wrote it and exactly what changed since (exit code 2).
        raise refusal(self.spec.output, manifest, plan,
                      model_stamp(self.spec.model, self.store_config))

    def _read_json(self, uri: str) -> dict[str, Any]:
        try:
            data = json.loads(self.store.read_bytes(uri))
        except (FileNotFoundError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    @staticmethod
    def _as_pinned(task: Task, result: TaskResult | None) -> Task:
        if result is not None and result.pinned_begin is not None:
            return task.pinned(result.pinned_begin)
        return task

    def _merge(self, merged: Any, plan: Plan) -> ComposeResult:
        self._check_lease()
        try:
            return merge(self.store, merged, self.spec.output, plan.output_format,
                         overwrite=self._replace_output)
        except FileExistsError:
            raise ScoreError(
                f"output: {self.spec.output!r} appeared while the job ran (another job?) and was "
                "not overwritten; the finished parts are kept",
                hint="Set overwrite = true (or --set overwrite=true) and run again to replace it.",
            ) from None

    def _work_order(self, plan: Plan, model: ModelInfo | None) -> WorkOrder:
        spec = self.spec
        return WorkOrder(
            job_id=plan.job_id, format=spec.format, record_pattern=spec.record_pattern,
            runtime=spec.runtime, scorer=self._scorer_for_workers(), predict_method=spec.predict_method,
            id_columns=list(spec.id_columns), model=spec.model, output_format=plan.output_format,
            storage=self.store_config.public(),
            model_sha256=model.sha256 if model is not None else None,
            predict_args=dict(spec.predict_args), on_unknown_level=spec.on_unknown_level,
            on_error=spec.on_error, encoding=spec.encoding,
        )

    def _spec_for_backend(self) -> JobSpec:
        """The job as a backend whose containers cannot see this machine (aci) is built from: a
        resolved model in this machine's cache is named by the blob it is copied to before any
        group is created (``_model_for_workers``: the same content-addressed name)."""
        spec = self.spec
        if self.source is None or spec.backend != "aci" or not spec.model or not is_local(spec.model):
            return spec
        from ..model_push import model_uri
        from ..runner.models import file_sha256

        path = Path(spec.model)
        return spec.model_copy(update={"model": model_uri(f"{self.layout.work}/model", path,
                                                          file_sha256(str(path)))})

    def _model_for_workers(self, model: ModelInfo) -> ModelInfo:
        """A resolved model in this machine's cache, for workers that cannot see this machine
        (containers on Azure): copied once into the job's work folder under its content hash
        (``models push``: written only if absent, an existing copy's sha256 checked), so the
        workers read it with the same per-task access as the job's other blobs."""
        if (getattr(self.backend, "sees_local_files", True) or not is_local(model.uri)
                or is_local(self.layout.work)):
            return model
        from ..model_push import push_model

        pushed = push_model(Path(model.uri), f"{self.layout.work}/model", self.store_config)
        if pushed.sha256 != model.sha256:
            raise ScoreError(f"model: the copy of {model.uri} changed while it was uploaded",
                             hint="Run the job again.")
        self.spec = self.spec.model_copy(update={"model": pushed.uri})
        return replace(model, uri=pushed.uri, version=pushed.version)

    def _model_record(self, model: ModelInfo | None) -> dict[str, Any] | None:
        """The manifest's and ``--json``'s ``model``: the file scored and its sha256, and for a
        registry or pins URI what it was as written and what it resolved to."""
        if model is None:
            return None
        record = model.to_dict()
        if self.source is not None:
            record["source"] = self.source.to_dict()
        return record

    def _scorer_for_workers(self) -> str:
        """The scorer script as the workers can reach it. A backend whose workers cannot see
        this machine's files (containers on Azure) gets a copy stored beside the output, under
        its content hash (a changed script is a new name; a rerun reuses the same copy)."""
        scorer = self.spec.scorer
        if (self.spec.runtime == "command" or scorer == "predict" or "://" in scorer
                or getattr(self.backend, "sees_local_files", True)):
            return scorer
        try:
            data = Path(scorer).read_bytes()
        except OSError as err:
            raise InputError(f"scorer: cannot read {scorer!r}: {err.strerror or err}",
                             retryable=False) from None
        uri = f"{self.layout.work}/scorer/{hashlib.sha256(data).hexdigest()[:16]}/{Path(scorer).name}"
        if not self.store.exists(uri):
            self.store.write_bytes(uri, data)
        return uri

    @staticmethod
    def _boundary_breaks(tasks: dict[str, Task], results: dict[str, TaskResult]) -> list[tuple[str, int]]:
        """Finished tasks that began at a wrong guess, with their exact begin (normally none: the
        scheduler repairs them as it goes; this is the final check of the whole chain)."""
        by_index = {t.index: t.id for t in tasks.values()}
        return [(by_index[i], begin) for i, begin in chain_repairs(chain_of(list(tasks.values()), results))]

    @staticmethod
    def _check_accounting(plan: Plan, tasks: dict[str, Task], results: dict[str, TaskResult]) -> None:
        """Every byte of every file is covered: the last task of each file ends at its end."""
        last: dict[int, Task] = {}
        for task in tasks.values():
            if task.kind == "bytes" and (task.file_index not in last or task.index > last[task.file_index].index):
                last[task.file_index] = task
        for task in last.values():
            end = results[task.id].end
            if end != task.file_size:
                raise ScoreError(f"task {task.id}: records end at byte {end}, not at the end of "
                                 f"{task.path} ({plural(task.file_size, 'byte')}): records would be lost")
        for task_id, result in results.items():
            if (result.records_in is not None
                    and result.records_in != result.records_out + result.rows_failed):
                raise ScoreError(f"task {task_id}: {plural(result.records_in, 'record')} in, "
                                 f"{plural(result.records_out, 'score')} out, "
                                 f"{result.rows_failed} left out")

    @staticmethod
    def _rows_in(results: dict[str, TaskResult]) -> int | None:
        counts = [r.records_in for r in results.values()]
        return None if any(c is None for c in counts) else sum(c or 0 for c in counts)

    def _write_manifest(self, plan: Plan, tasks: dict[str, Task], results: dict[str, TaskResult],
                        attempts: dict[str, int], result: JobResult, composed: ComposeResult,
                        model: ModelInfo | None, access: WorkerAccess,
                        evictions: dict[str, int]) -> None:
        manifest = {
            "job_id": plan.job_id,
            "name": self.spec.name,
            "status": "succeeded",
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "host": platform.node(),
            "backend": self.spec.backend,
            "spec": plan.spec_as_written(),
            "inputs": [{"path": f.path, "size": f.size, "version": f.version} for f in plan.files],
            "model": self._model_record(model),
            # sha256 is null when the parts were composed server-side (never read here): the
            # output is then header + parts in task order, each part checked by its part_sha256.
            "output": {"path": self.spec.output, "format": plan.output_format,
                       "sha256": composed.sha256, "bytes": composed.size,
                       "version": composed.version, "merge": composed.method,
                       "blocks": composed.blocks, "rows": result.rows_out,
                       "errors": result.errors},
            "storage": {"worker_access": access.mode},
            "totals": {"tasks": len(tasks), "records_in": result.rows_in,
                       "records_out": result.rows_out, "rows_failed": result.rows_failed,
                       "attempts": result.attempts,
                       "repaired_boundaries": result.repaired_boundaries},
            "timings": result.timings,
            "usage": result.usage,
            # What this run measured, for later estimates (controller/calibration.py).
            "calibration": self._measured.to_dict() if self._measured is not None else None,
        }
        # Per-task details go to the task lines beside it (controller/manifest.py).
        write_manifest(self.store, self.layout, manifest, list(tasks.values()), results, attempts,
                       self._task_seconds, evictions)


def _rows_of(results: dict[str, TaskResult], ran: list[Task]) -> int | None:
    counts = [results[t.id].records_in for t in ran]
    return None if any(c is None for c in counts) else sum(c or 0 for c in counts)


def run_job(spec: JobSpec, *, progress: Progress | None = None,
            source: ModelSource | None = None) -> JobResult:
    """Run a job to completion (the Python API of ``serverless-score run``). ``source``: the
    job's model URI as a plan resolved it (``spec`` then names the resolved file), so that the
    job scores with exactly the version the plan showed."""
    with Job(spec, progress=progress, source=source) as job:
        return job.run()


def plan_job(spec: JobSpec) -> Plan:
    """Plan without running anything (``serverless-score plan``)."""
    return make_plan(spec)
