"""What a person sees while a job runs: a progress bar over tasks and rows, retries as they happen,
and a summary at the end. Everything goes to stderr so ``--json`` output on stdout stays clean."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape

from ..controller import JobResult
from ..planning import Plan, chunks_note
from ..planning.cost import Estimate
from ..planning.tasks import Task
from ..runner.contract import TaskResult
from ..sources import describe_record
from ..units import format_size, plural

if TYPE_CHECKING:
    from rich.table import Table


class RichProgress:
    """Implements the controller's Progress protocol with a rich bar."""

    def __init__(self, console: Console, total_tasks: int, label: str) -> None:
        # Imported here: a --quiet run (the R package's, scripts') never draws a bar.
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.console = console
        self.rows = 0
        self._done: dict[str, int] = {}  # finished tasks' rows, until a repair re-runs one
        self._bar = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[unit]}  {task.fields[rows]:,} rows"), TimeElapsedColumn(),
            console=console, transient=False,
        )
        self._id = self._bar.add_task(label, total=total_tasks, rows=0,
                                      unit=_tasks_word(total_tasks))

    def __enter__(self) -> RichProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._bar.stop()

    def job_started(self, total_tasks: int) -> None:
        # Started only once there is work: an up-to-date job shows no empty bar.
        self._bar.update(self._id, total=total_tasks, unit=_tasks_word(total_tasks))
        self._bar.start()

    def task_done(self, task: Task, result: TaskResult) -> None:
        self.rows += result.records_out
        self._done[task.id] = result.records_out
        self._bar.update(self._id, advance=1, rows=self.rows)
        if not self.console.is_terminal:
            # No live bar without a terminal (CI logs, the R package reading stderr): one line
            # per finished task instead, so progress still shows while the job runs.
            done = int(self._bar.tasks[0].completed)
            total = int(self._bar.tasks[0].total or 0)
            self.console.print(f"task {task.id} done: {plural(result.records_out, 'row')} in "
                               f"{result.seconds:.1f}s ({done}/{total} {_tasks_word(total)}, "
                               f"{plural(self.rows, 'row')})",
                               # One line however long (the R package parses it), and no
                               # markup or wrapping to lay out: ~3x cheaper per task.
                               highlight=False, markup=False, soft_wrap=True)

    def task_retry(self, task: Task, attempt: int, reason: str) -> None:
        rows = self._done.pop(task.id, None)
        if rows is not None:
            # A finished task re-run from its exact first record (its guess was inside a long
            # quoted field): it did not fail, and it is counted again only when it ends.
            self.rows -= rows
            self._bar.update(self._id, advance=-1, rows=self.rows)
            self.console.print(f"[cyan]repairing[/] {task.id} ({escape(reason)})")
            return
        self.console.print(f"[yellow]retrying[/] {task.id} (attempt {attempt} failed: {escape(reason)})")


def _tasks_word(total: int) -> str:
    """The bar's unit after "done/total": "1/1 task", "3/8 tasks"."""
    return "task" if total == 1 else "tasks"


def plan_table(plan: Plan) -> Table:
    from rich.table import Table

    table = Table(title=f"job {plan.job_id}: {plural(len(plan.tasks), 'task')}", title_justify="left")
    table.add_column("task")
    table.add_column("input")
    table.add_column("size", justify="right")
    shown = plan.tasks if len(plan.tasks) <= 40 else plan.tasks[:20] + plan.tasks[-20:]
    for i, task in enumerate(shown):
        if len(plan.tasks) > 40 and i == 20:
            table.add_row("...", f"{len(plan.tasks) - 40} more", "")
        size = plural(task.rows_hint, "row") if task.rows_hint else (
            format_size(task.size) if task.kind != "shard" else "")
        table.add_row(task.id, task.describe(), size)
    return table


def plan_summary(plan: Plan) -> str:
    spec = plan.spec
    total = (f"{format_size(plan.total_bytes)} in {plural(len(plan.files), 'file')}" if plan.files
             else plural(spec.shards or 0, "shard"))
    line = (f"{total} -> {plural(len(plan.tasks), 'task')}, up to {spec.max_parallel} in parallel "
            f"on the {spec.backend} backend; output {spec.output} ({plan.output_format})")
    if plan.source is not None:
        line += f"\nmodel:    {plan.source.describe()}"
    note = chunks_note(plan)
    return f"{line}\nnote:     {note}" if note else line


def summary(result: JobResult) -> str:
    if result.status == "up-to-date":
        return (f"[green]up to date[/]: {result.output} was already written by this job "
                f"({plural(result.rows_out, 'row')}); nothing to do")
    lines = [
        f"[green]succeeded[/]: {plural(result.rows_out, 'row')} from {plural(result.tasks, 'task')} "
        f"in {result.timings.get('total_s', 0):.1f}s",
        f"  scores:   {result.output}",
        f"  manifest: {result.manifest}",
    ]
    if (model := describe_record(result.model)) is not None:
        lines.append(f"  model:    {escape(model)}")
    if result.rows_failed:
        lines.insert(1, f"  [yellow]{result.rows_failed:,} rows failed[/] and were left out: "
                        f"{result.errors}")
    extras = []
    if result.reused_tasks:
        extras.append(f"{plural(result.reused_tasks, 'task')} reused from an earlier run")
    if result.retried_tasks:
        extras.append(f"retried {', '.join(result.retried_tasks)}")
    if result.repaired_boundaries:
        extras.append(f"{plural(result.repaired_boundaries, 'record boundary', 'record boundaries')} repaired")
    if extras:
        lines.append("  " + "; ".join(extras))
    return "\n".join(lines)


def estimate_lines(est: Estimate, pricing_text: str, groups: list[list[Task]],
                   max_cost: float | None = None, max_evictions: int | None = None) -> str:
    """The plan's groups, cores, core-seconds and cost, with every assumption behind them."""
    a = est.assumptions
    spot = "Spot groups can be evicted, and an eviction reruns their tasks" + (
        f", the first {plural(max_evictions, 'eviction')} of a task without spending a retry "
        f"([azure] max_evictions)" if max_evictions is not None else "")
    if not est.billed:
        cost = f"cost 0 ({pricing_text})"
    elif est.cost is None:
        cost = f"cost unknown: {pricing_text}"
    else:
        currency = est.price.currency if est.price else "USD"
        cost = f"estimated cost {est.cost:.4f} {currency} ({pricing_text})"
    if max_cost is not None and est.cost is not None:
        verdict = "within" if est.cost <= max_cost else "ABOVE (run refuses to start)"
        cost += f"; {verdict} max_cost = {max_cost:g}"
    if est.billed and est.price is not None and est.price.priority == "Spot":
        cost += f"\n          {spot}"
    if est.billed and est.alt_price is not None and est.alt_cost is not None:
        ap = est.alt_price
        cost += (f"\n          at {ap.priority} priority: {est.alt_cost:.4f} {ap.currency} "
                 f"({ap.vcpu_second:g}/vCPU-s + {ap.gb_second:g}/GB-s)"
                 + (f"; {spot}" if ap.priority == "Spot" else ""))
    elif est.billed and est.price is not None:
        other = "Regular" if est.price.priority == "Spot" else "Spot"
        cost += f"\n          at {other} priority: no price for {est.price.region}"
    calibrated = f"\n          ({est.calibration})" if est.calibration else ""
    lines = [
        f"groups:   {est.groups:,} ({est.packing}); {est.cpu:g} vCPU and {est.memory_gb:g} GB each, "
        f"up to {est.max_parallel} at once",
        f"expected: {est.vcpu_seconds:,.0f} core-seconds, {est.gb_seconds:,.0f} GB-seconds, "
        f"~{format_seconds(est.wall_seconds)} wall time",
        f"          {cost}",
        f"assuming: {a.throughput_mb_per_s:.3g} MB/s per group, {a.startup_seconds:.3g}s start-up per "
        f"group on {est.backend}, {a.shard_seconds:g}s per shard; retries not counted"
        + calibrated,
    ]
    if len(groups) <= 12:
        for i, group in enumerate(groups):
            ids = group[0].id if len(group) == 1 else f"{group[0].id}..{group[-1].id}"
            lines.append(f"  group {i}: {plural(len(group), 'task')} {ids}")
    return "\n".join(lines)


def format_seconds(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
