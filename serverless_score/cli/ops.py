"""``status``, ``logs`` and ``cleanup``: look at a job while it runs or after, and delete groups a
dead controller left behind."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..backends import Backend, get_backend
from ..controller.cleanup import cleanup as delete_orphans
from ..controller.inspect import JobLocation, JobStatus, job_status, locate, task_id_of, task_logs
from ..errors import ScoreError, SpecError
from ..planning import output_format
from ..sources import describe_record
from ..spec import JobSpec, parse_override, spec_from_dict
from ..storage.config import cache_root
from ..storage.lease import get_lease
from ..units import plural

TargetArg = Annotated[str, typer.Argument(
    help="The job file (TOML), or the job's output (or its manifest) as a path or blob URI.",
    show_default=False)]
SetOpt = Annotated[list[str] | None, typer.Option(
    "--set", help="Override a job field, as for run (e.g. the \\[azure] settings).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print a machine-readable result on stdout.")]
err_console = Console(stderr=True)


def _backend_of(loc: JobLocation) -> Backend | None:
    """The job's backend, for its live groups; None (stored state only) when it cannot be built
    here, e.g. no Azure credentials on this machine."""
    try:
        return loc.backend()
    except ScoreError as err:
        err_console.print(f"[yellow]note:[/] live groups not shown: {escape(err.message)}",
                          highlight=False)
        return None


def _fail(err: ScoreError, as_json: bool) -> typer.Exit:
    from . import _fail as fail

    return fail(err, as_json=as_json, debug=False)


def status(target: TargetArg, set_: SetOpt = None, as_json: JsonOpt = False) -> None:
    """Show a job's tasks (state, attempts, rows) and progress, while it runs or after."""
    try:
        loc = locate(target, set_)
        result = job_status(loc, _backend_of(loc))
    except ScoreError as err:
        raise _fail(err, as_json) from None
    if as_json:
        # What a reader of the output needs besides where it is (R's read_scores()).
        extra = {} if loc.spec is None else {"id_columns": list(loc.spec.id_columns),
                                             "output_format": output_format(loc.spec)}
        print(json.dumps({**result.to_dict(), **extra}))
        return
    _print_status(result)


def _print_status(result: JobStatus) -> None:
    console = Console()
    table = Table(title=f"job {result.job_id} ({result.backend}): {result.state}",
                  title_justify="left")
    failed = result.rows_failed > 0  # a column only for a job that left rows out
    evicted = any(t.evictions for t in result.tasks)  # ... or whose Spot groups were evicted
    columns = ("task", "state", "attempts", *(("evicted",) if evicted else ()), "rows",
               *(("failed",) if failed else ()), "seconds", "input / group")
    for column in columns:
        table.add_column(column, justify="left" if column in ("task", "state", "input / group")
                         else "right")
    shown = result.tasks if len(result.tasks) <= 60 else [
        t for t in result.tasks if t.state != "done"][:60]
    for task in shown:
        table.add_row(task.id, task.state, str(task.attempts),
                      *((str(task.evictions),) if evicted else ()),
                      f"{task.rows:,}" if task.rows is not None else "",
                      *((f"{task.rows_failed:,}" if task.rows_failed is not None else "",)
                        if failed else ()),
                      f"{task.seconds:.1f}" if task.seconds is not None else "",
                      escape(task.group or task.input))
    console.print(table)
    if len(shown) < len(result.tasks):
        console.print(f"({plural(len(result.tasks) - len(shown), 'finished task')} not shown; "
                      "--json lists all)")
    total = len(result.tasks)
    line = (f"{result.done}/{total} {'task' if total == 1 else 'tasks'} done "
            f"({100 * result.done // max(1, total)}%), {plural(result.rows, 'row')}"
            + (f" ({result.rows_failed:,} failed)" if failed else "")
            + f"; {plural(len(result.live_groups), 'live group')}")
    console.print(line, highlight=False)
    if result.controller:
        who = result.controller
        console.print(f"controller: host {escape(str(who['host']))}, pid {who['pid']}, "
                      f"since {who['since']}", highlight=False)
    if result.manifest:
        console.print(f"output:   {escape(result.output)}\nmanifest: {escape(result.manifest)}",
                      highlight=False)
    if (model := describe_record(result.model)) is not None:
        console.print(f"model:    {escape(model)}", highlight=False)
    if result.usage:
        usage = result.usage
        cost = usage.get("cost")
        console.print(f"used:     {usage.get('container_seconds', 0):,.1f} container-seconds, "
                      f"{usage.get('vcpu_seconds', 0):,.1f} vCPU-s; cost "
                      f"{'unknown' if cost is None else f'{cost:.4f}'} {usage.get('currency', '')}",
                      highlight=False)
        est = usage.get("estimate")
        if isinstance(est, dict):
            ratio = (est.get("actual_over_estimate") or {}).get("container_seconds")
            est_cost = est.get("cost")
            console.print(f"estimated: {est.get('container_seconds', 0):,.1f} container-seconds; "
                          f"cost {'unknown' if est_cost is None else f'{est_cost:.4f}'} "
                          f"{usage.get('currency', '')}"
                          + (f" (actual / estimate: {ratio:.2f})" if ratio else ""),
                          highlight=False)
        if usage.get("evictions"):
            console.print(f"evicted:  {plural(usage['evictions'], 'Spot group')}", highlight=False)


def logs(
    target: TargetArg,
    task: Annotated[str | None, typer.Option("--task", help="Task number or id (3, t00003). Default: every task.")] = None,
    attempt: Annotated[int | None, typer.Option("--attempt", min=1, help="Which attempt. Default: the latest (live if it is running).")] = None,
    set_: SetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Print a job's task logs: stored ones, or a running group's live log."""
    found: list[dict[str, Any]] = []
    loc: JobLocation | None = None
    try:
        loc = locate(target, set_)
        backend = _backend_of(loc)
        ids = [task_id_of(task)] if task is not None else [t.id for t in loc.tasks()]
        if task is None and attempt is not None:
            raise SpecError("--attempt: give --task too (attempt numbers are per task)")
        shown = 0
        for task_id in ids:
            try:
                log = task_logs(loc, backend, task_id, attempt)
            except ScoreError:
                if task is not None:
                    raise
                continue  # with every task, the ones that have not run are skipped
            shown += 1
            if as_json:
                found.append({"task_id": log.task_id, "attempt": log.attempt,
                              "source": log.source, "text": log.text})
                continue
            err_console.print(f"[dim]=== {log.task_id} attempt {log.attempt} ({escape(log.source)}) ===[/]",
                              highlight=False)
            print(log.text, end="" if log.text.endswith("\n") or not log.text else "\n", flush=True)
        if not shown:
            err_console.print(f"no task of job {loc.job_id} has a log yet", highlight=False)
    except ScoreError as err:
        raise _fail(err, as_json) from None
    if as_json:
        print(json.dumps({"job_id": loc.job_id if loc is not None else None, "logs": found}))


def _settings_spec(backend: str, overrides: list[str]) -> JobSpec:
    """A spec that only carries a backend's settings (``[azure]`` and the environment), for
    cleanup without a job file: every backend is built from a spec."""
    raw: dict[str, Any] = {"name": "cleanup", "runtime": "command", "scorer": "true",
                           "shards": 1, "output": str(cache_root() / "cleanup" / "none"),
                           "backend": backend}
    for item in overrides:
        path, value = parse_override(item)
        target = raw
        for part in path[:-1]:
            target = target.setdefault(part, {})
        target[path[-1]] = value
    return spec_from_dict(raw, source="cleanup")


def _live_controller(loc: JobLocation) -> dict[str, str]:
    """{job id: its live lease holder, in words} when a controller holds the job's lease."""
    config = getattr(loc.store, "config", None)
    holder = get_lease(loc.layout.output, loc.job_id, config).holder()
    if holder is None:
        return {}
    return {loc.job_id: f"host {holder.host}, pid {holder.pid}, holding the job's lease since "
                        f"{holder.public()['since']}"}


def cleanup(
    target: Annotated[str | None, typer.Argument(help="Optional: a job file or output; its backend settings are used, and without --job/--expired its groups are deleted.", show_default=False)] = None,
    job: Annotated[str | None, typer.Option("--job", help="Delete the groups of this job id.")] = None,
    expired: Annotated[bool, typer.Option("--expired", help="Delete groups whose expiry label is in the past (their controller is gone).")] = False,
    backend_name: Annotated[str | None, typer.Option("--backend", help="local, docker or aci (default: the job's, else local).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only print what would be deleted.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Also delete the groups of a job whose controller still holds its lease.")] = False,
    set_: SetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete groups no controller watches any more, found by their labels."""
    try:
        job_id = job
        live: dict[str, str] = {}
        if target is not None:
            loc = locate(target, set_)
            live = _live_controller(loc)
            backend: Backend = loc.backend() if backend_name is None else get_backend(
                backend_name, spec=_settings_spec(backend_name, set_ or []),
                state_dir=loc.layout.local_state_dir(cache_root()))
            if job_id is None and not expired:
                job_id = loc.job_id
        else:
            if job_id is None and not expired:
                raise SpecError("cleanup: say what to delete: --job ID, --expired, or a job file",
                                hint="`serverless-score cleanup --expired --dry-run` lists the expired groups.")
            name = backend_name or "local"
            backend = get_backend(name, spec=_settings_spec(name, set_ or []),
                                  state_dir=str(cache_root() / "cleanup" / name))
        deleted = delete_orphans(backend, job_id=job_id, expired=expired, dry_run=dry_run,
                                 live=live, force=force)
    except ScoreError as err:
        raise _fail(err, as_json) from None
    failed = [d for d in deleted if d.error]
    if as_json:
        print(json.dumps({"backend": backend.name, "dry_run": dry_run,
                          "groups": [d.to_dict() for d in deleted]}))
    out = err_console if as_json else Console()  # stdout holds only the JSON with --json
    for item in deleted:
        if item.skipped:
            out.print(f"skipped {escape(item.name)} (job {escape(item.job_id)}): "
                      f"{escape(item.skipped)}; --force deletes it anyway", highlight=False)
            continue
        verb = "would delete" if dry_run else ("could not delete" if item.error else "deleted")
        why = f"; expired {item.expires}" if expired and item.expires else ""
        out.print(f"{verb} {escape(item.name)} (job {escape(item.job_id)}{why})"
                  f"{': ' + escape(item.error) if item.error else ''}", highlight=False)
    if not [d for d in deleted if not d.skipped]:
        out.print(f"nothing to delete on the {backend.name} backend", highlight=False)
    if failed:
        raise typer.Exit(code=1)
