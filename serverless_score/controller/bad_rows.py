"""Rows left out (``on_error = "skip"``): the budget that stops a job with too many of them, and
``<output>.errors.csv``, the attempts' errors files merged in input order.

The budget watches tasks as they finish (it wraps the job's progress reporter, so the scheduler
needs no hook of its own): ``max_failed_rows`` is checked exactly at every task;
``max_failed_fraction`` against the rows seen so far, stopping early only once the failures
exceed the fraction of an upper bound on the job's rows (rows per byte so far, times the input's
bytes, doubled), and exactly when every task has finished.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..errors import BudgetExceeded
from ..layout import JobLayout
from ..planning.tasks import Task
from ..runner.contract import TaskResult
from ..spec import JobSpec
from ..storage import Store

COLUMNS = ("source", "offset", "record", "id", "task", "attempt", "error", "text")
REASONS_SHOWN = 3
_MARGIN = 2.0  # how far the early estimate of the job's rows may be off


@dataclass
class Budget:
    """Counted per task (a task finished again, after a boundary repair, replaces its counts),
    with running totals: a check costs the same at the last of 100,000 tasks as at the first."""

    spec: JobSpec
    tasks: Sequence[Task]
    failed: dict[str, int] = field(default_factory=dict)
    seen: dict[str, int] = field(default_factory=dict)  # records read, per finished task
    bytes_seen: dict[str, int] = field(default_factory=dict)
    rows_failed: int = field(default=0, init=False)
    rows_seen: int = field(default=0, init=False)
    bytes_read: int = field(default=0, init=False)
    total_bytes: int = field(default=0, init=False)  # of the byte tasks: the input's size

    def __post_init__(self) -> None:
        self.total_bytes = sum(t.end - t.start for t in self.tasks if t.kind == "bytes")

    def task_done(self, task: Task, result: TaskResult) -> bool:
        """Count a finished task; True when the budget is now known to be exceeded."""
        self.rows_failed += result.rows_failed - self.failed.get(task.id, 0)
        self.rows_seen += (result.records_in or 0) - self.seen.get(task.id, 0)
        self.failed[task.id] = result.rows_failed
        self.seen[task.id] = result.records_in or 0
        if result.begin is not None and result.end is not None:
            read = max(0, result.end - result.begin)
            self.bytes_read += read - self.bytes_seen.get(task.id, 0)
            self.bytes_seen[task.id] = read
        return self.exceeded(final=False)

    def exceeded(self, *, final: bool) -> bool:
        failed = self.rows_failed
        limit_rows = self.spec.max_failed_rows
        if limit_rows is not None and failed > limit_rows:
            return True
        fraction = self.spec.max_failed_fraction
        if fraction is None or failed == 0:
            return False
        rows = self.rows_seen
        if final:
            return failed > fraction * rows
        return failed > fraction * self._rows_upper_bound(rows)

    def _rows_upper_bound(self, rows: int) -> float:
        total_bytes, read = self.total_bytes, self.bytes_read
        if total_bytes and read and len(self.seen) < len(self.tasks):
            return _MARGIN * rows * total_bytes / read
        if len(self.seen) < len(self.tasks):
            return float("inf")  # no way to bound it yet: wait for the end
        return float(rows)

    def describe(self) -> str:
        limits = []
        if self.spec.max_failed_rows is not None:
            limits.append(f"max_failed_rows = {self.spec.max_failed_rows}")
        if self.spec.max_failed_fraction is not None:
            limits.append(f"max_failed_fraction = {self.spec.max_failed_fraction:g}")
        return " and ".join(limits)


def read_errors(store: Store, layout: JobLayout, tasks: Sequence[Task],
                results: Mapping[str, TaskResult]) -> list[dict[str, object]]:
    """The finished tasks' bad records in input order, each with its record number within its
    source (the records of the source's earlier tasks plus its number within its task). Only
    exact when every earlier task of the source has finished; with a gap the numbers are left
    out (a budget stopped the job)."""
    rows: list[dict[str, object]] = []
    before: dict[str, int | None] = {}
    for task in sorted(tasks, key=lambda t: t.index):
        source = task.path or ""
        counted = before.get(source, 0)
        result = results.get(task.id)
        before[source] = (counted + (result.records_in or 0)
                          if result is not None and counted is not None else None)
        if result is None or not result.rows_failed:
            continue
        uri = layout.attempt_errors(task.id, result.attempt)
        for line in store.read_bytes(uri).decode("utf-8").splitlines():
            item = json.loads(line)
            number = item.pop("task_record", None)
            item["record"] = counted + number if counted is not None and number is not None else ""
            rows.append(item)
    return rows


def write_errors(store: Store, layout: JobLayout, rows: list[dict[str, object]]) -> str | None:
    """``<output>.errors.csv`` (only when there are rows; an older one is removed otherwise)."""
    if not rows:
        if store.exists(layout.errors):
            store.delete(layout.errors)
        return None
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in COLUMNS})
    store.write_bytes(layout.errors, out.getvalue().encode("utf-8"))
    return layout.errors


def budget_error(budget: Budget, rows: list[dict[str, object]], errors: str | None,
                 tasks_done: int, *, final: bool) -> BudgetExceeded:
    failed = budget.rows_failed
    seen = budget.rows_seen
    reasons = "; ".join(
        f"{r.get('source') or 'task ' + str(r.get('task'))}"
        + (f" record {r['record']}" if r.get("record") != "" else "")
        + (f" (byte {r['offset']})" if r.get("offset") not in (None, "") else "")
        + f": {r.get('error')}" for r in rows[:REASONS_SHOWN])
    when = ("when every task had finished" if final
            else f"after {tasks_done} of {len(budget.tasks)} tasks")
    return BudgetExceeded(
        f"{failed:,} rows failed of {seen:,} read {when}, more than {budget.describe()} allows: "
        f"every worker was stopped and no output was written. The failed rows are in "
        f"{errors}. First reasons: {reasons}",
        rows_failed=failed, errors=errors,
        hint="Fix the input, or raise the budget (--set max_failed_rows=N or "
             "max_failed_fraction=F) and run again: finished tasks are kept.")
