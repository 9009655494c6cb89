"""The ``serverless-score`` command line. One place turns errors into a message and an exit code;
tracebacks only with ``--debug`` (rich tracebacks would print locals, secrets included)."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from ..controller import JobResult, plan_job, run_job
from ..controller.estimate import plan_estimate
from ..errors import BudgetExceeded, JobInterrupted, LeaseHeld, ScoreError, TaskFailed
from ..layout import JobLayout
from ..planning import chunks_note
from ..spec import JobSpec, load_spec
from .progress import RichProgress, estimate_lines, plan_summary, plan_table, summary

app = typer.Typer(
    help="Batch scoring of R and Python models on serverless containers.",
    pretty_exceptions_show_locals=False,
    no_args_is_help=True,
    add_completion=False,
)
err_console = Console(stderr=True)

JobArg = Annotated[Path, typer.Argument(help="The job file (TOML).", show_default=False)]
SetOpt = Annotated[list[str] | None, typer.Option(
    "--set", help="Override a job field: --set chunks=8 --set resources.cpu=2 (repeatable).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print a machine-readable result on stdout.")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logs.")]


def _failure(err: ScoreError, job_id: str | None, spec: JobSpec | None,
             tasks: int | None) -> dict[str, Any]:
    """``--json`` on failure: every key of a success (JobResult), with what is known when the
    job stopped (None when not: a job file that does not load has no name or output)."""
    status = "interrupted" if isinstance(err, JobInterrupted) else "failed"
    output = spec.output if spec is not None else None
    layout = JobLayout(output) if output else None
    return {
        "job_id": job_id, "name": spec.name if spec is not None else None, "status": status,
        "tasks": tasks, "rows_in": None, "rows_out": None, "output": output,
        "manifest": layout.manifest if layout else None, "work_dir": layout.work if layout else None,
        "attempts": None, "retried_tasks": [], "reused_tasks": 0, "repaired_boundaries": 0,
        "timings": {}, "error": {"type": type(err).__name__, "message": err.message, "hint": err.hint},
        "usage": None, "rows_failed": None, "errors": None,
    }


def _fail(err: ScoreError, *, as_json: bool, debug: bool, job_id: str | None = None,
          spec: JobSpec | None = None, tasks: int | None = None) -> typer.Exit:
    if debug:
        err_console.print_exception(show_locals=False)
    # Messages quote user text (TOML, paths, log lines): escape it so rich does not eat [brackets].
    err_console.print(f"[red]error:[/] {escape(err.message)}", highlight=False)
    if isinstance(err, TaskFailed) and err.log_tail:
        err_console.print(f"[dim]--- last lines of the log of task {err.task_id} ---[/]")
        err_console.print(err.log_tail, markup=False, highlight=False)
    if err.hint:
        err_console.print(f"[cyan]hint:[/] {escape(err.hint)}", highlight=False)
    if as_json:
        payload = _failure(err, job_id, spec, tasks)
        if isinstance(err, TaskFailed):
            payload["error"]["task_id"] = err.task_id
            payload["error"]["log_tail"] = err.log_tail
        if isinstance(err, BudgetExceeded):  # rows left out before the budget stopped it
            payload.update(rows_failed=err.rows_failed, errors=err.errors)
        if isinstance(err, LeaseHeld):  # another controller runs this job: who, since when
            payload["status"] = "locked"
            payload["error"].update(kind=err.kind, holder=err.holder,
                                    since=err.holder.get("since"))
        print(json.dumps(payload))
    return typer.Exit(code=err.exit_code)


# azure-identity logs a WARNING of a dozen lines each time DefaultAzureCredential finds no
# credential (every credential it tried, and why each did not apply). The error the command then
# prints names the blob or resource and what to do, so that logger shows errors only, unless
# --debug. Its level is set, not logging disabled: everything else logs as before.
IDENTITY_LOGGER = "azure.identity"


def _debug_logging(debug: bool) -> None:
    """With --debug: log everything from DEBUG up, azure-identity's records included."""
    if debug:
        logging.basicConfig(level=logging.DEBUG)
        logging.getLogger(IDENTITY_LOGGER).setLevel(logging.NOTSET)


def _load(job: Path, overrides: list[str] | None) -> JobSpec:
    return load_spec(job, overrides or [])


@app.command()
def run(job: JobArg, set_: SetOpt = None, as_json: JsonOpt = False, debug: DebugOpt = False,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False) -> None:
    """Plan the job, score every chunk in parallel, merge the parts into the output."""
    _debug_logging(debug)
    logging.basicConfig(level=logging.WARNING)  # a no-op after --debug's
    job_id = None
    spec: JobSpec | None = None
    tasks: int | None = None
    try:
        spec = _load(job, set_)
        plan = plan_job(spec)
        job_id, tasks = plan.job_id, len(plan.tasks)
        if not quiet:
            err_console.print(plan_summary(plan), highlight=False)
            planned = plan_estimate(plan)
            err_console.print(estimate_lines(planned.estimate, planned.pricing.describe(), [],
                                             max_evictions=spec.azure.max_evictions),
                              highlight=False, markup=False)
        # The plan's spec and model source: a registry URI is resolved once, by the plan shown.
        if quiet:
            result = run_job(plan.spec, source=plan.source)
        else:
            with RichProgress(err_console, len(plan.tasks), spec.name) as progress:
                result = run_job(plan.spec, progress=progress, source=plan.source)
    except ScoreError as err:
        raise _fail(err, as_json=as_json, debug=debug, job_id=job_id, spec=spec,
                    tasks=tasks) from None
    except KeyboardInterrupt:
        raise _fail(JobInterrupted("interrupted before the job started; nothing was written"),
                    as_json=as_json, debug=debug, job_id=job_id, spec=spec, tasks=tasks) from None
    _report(result, as_json)


def _report(result: JobResult, as_json: bool) -> None:
    if as_json:
        err_console.print(summary(result), highlight=False)
        print(json.dumps(result.to_dict()))
    else:
        Console().print(summary(result), highlight=False)


@app.command()
def plan(job: JobArg, set_: SetOpt = None, as_json: JsonOpt = False, debug: DebugOpt = False,
         sample: Annotated[int | None, typer.Option(
             "--sample", min=1, help="First score this many records on this machine and "
                                     "estimate from their throughput.")] = None) -> None:
    """Show the tasks a job would run, without running anything."""
    _debug_logging(debug)
    try:
        planned = plan_job(_load(job, set_))
        cost = plan_estimate(planned, sample)
    except ScoreError as err:
        raise _fail(err, as_json=as_json, debug=debug) from None
    if as_json:
        print(json.dumps({
            "job_id": planned.job_id, "name": planned.spec.name, "status": "planned",
            "tasks": [dict(t.to_dict(), id=t.id) for t in planned.tasks],
            "output": planned.spec.output, "output_format": planned.output_format,
            "backend": planned.spec.backend, "max_parallel": planned.spec.max_parallel,
            "input_bytes": planned.total_bytes, "chunks_note": chunks_note(planned),
            "groups": [[t.id for t in group] for group in cost.groups],
            "estimate": cost.estimate.to_dict(), "max_cost": planned.spec.max_cost,
            "pricing": cost.pricing.describe(),
            "price_tables": list(cost.pricing.table.sources),
            "model": planned.spec.model,
            "model_source": planned.source.to_dict() if planned.source is not None else None,
            "calibration": cost.estimate.calibration,
            "calibrated_from": (cost.calibration.run.to_dict() if cost.calibration is not None
                                and cost.calibration.run is not None else None),
        }))
        return
    console = Console()
    console.print(plan_table(planned))
    console.print(plan_summary(planned), highlight=False)
    console.print(estimate_lines(cost.estimate, cost.pricing.describe(), cost.groups,
                                 planned.spec.max_cost, planned.spec.azure.max_evictions),
                  highlight=False, markup=False)


@app.command()
def version() -> None:
    """Print the version."""
    from .. import __version__

    print(__version__)


def _print_version(value: bool) -> None:
    if value:
        from .. import __version__

        print(__version__)
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[bool, typer.Option(
        "--version", help="Print the version and exit.", callback=_print_version,
        is_eager=True)] = False) -> None:
    """Batch scoring of R and Python models on serverless containers."""


def _add_subcommands() -> None:
    from . import ops, scores
    from .image import app as image_app
    from .init import init as init_command
    from .models import app as models_app
    from .templates import app as templates_app

    app.add_typer(models_app, name="models")
    app.add_typer(templates_app, name="templates")
    app.add_typer(image_app, name="image")
    app.command()(ops.status)
    app.command()(ops.logs)
    app.command()(scores.scores)
    app.command()(ops.cleanup)
    app.command(name="init")(init_command)


_add_subcommands()


def main() -> None:
    """The console script. Once the command is done and its output flushed, the process ends
    without the interpreter's teardown (freeing pydantic's, rich's and pyarrow's state took tens
    of milliseconds of every command); workers and files are already cleaned up by then."""
    logging.getLogger(IDENTITY_LOGGER).setLevel(logging.ERROR)  # see IDENTITY_LOGGER
    try:
        app(prog_name="serverless-score")
        code = 0
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        if isinstance(done.code, str):
            print(done.code, file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)


if __name__ == "__main__":
    main()
