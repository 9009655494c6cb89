"""The progress display: a finished task that a boundary repair re-runs is counted once."""

from __future__ import annotations

import io

from rich.console import Console

from serverless_score.cli.progress import RichProgress, estimate_lines
from serverless_score.planning.cost import Assumptions, RegionPrice, estimate
from serverless_score.planning.tasks import Task
from serverless_score.runner.contract import TaskResult


def _result(task: Task, rows: int) -> TaskResult:
    return TaskResult(task.id, 1, rows, rows, 0, 10, None, "id,score", ["id", "score"], "part", "",
                      0, 0.1)


def test_a_repaired_task_is_counted_once_and_called_a_repair() -> None:
    out = io.StringIO()
    tasks = [Task(0, "bytes", "in.csv"), Task(1, "bytes", "in.csv"), Task(2, "bytes", "in.csv")]
    with RichProgress(Console(file=out, width=200), 3, "job") as progress:
        progress.job_started(3)
        progress.task_retry(tasks[0], 1, "exited with code 1")
        progress.task_done(tasks[0], _result(tasks[0], 7))
        progress.task_done(tasks[1], _result(tasks[1], 5))
        progress.task_retry(tasks[1], 1, "its records begin at byte 40; re-running it from byte 40")
        assert progress.rows == 7
        progress.task_done(tasks[1], _result(tasks[1], 3))
    text = out.getvalue()
    assert "repairing t00001" in text and "retrying t00001" not in text
    assert "retrying t00000 (attempt 1 failed: exited with code 1)" in text
    assert "(2/3 tasks, 10 rows)" in text  # 7 + the repaired run's 3, not + the first 5


def test_a_progress_line_without_a_terminal_is_one_line_however_long() -> None:
    """The R package reads these lines with a regex: a 100,000-task job's line is longer than
    the 80 columns a console without a terminal assumes, and must not be wrapped."""
    out = io.StringIO()
    task = Task(99_999, "bytes", "in.csv")
    with RichProgress(Console(file=out, width=80), 100_000, "job") as progress:
        progress.job_started(100_000)
        progress.task_done(task, _result(task, 1_234_567_890))
    line = next(li for li in out.getvalue().splitlines() if li.startswith("task t99999 done:"))
    assert len(line) > 80
    assert line.endswith("(1/100000 tasks, 1,234,567,890 rows)")


def test_the_estimate_says_how_many_evictions_of_a_task_spend_no_retry() -> None:
    regular = RegionPrice("eastus", 1e-5, 1e-6, "USD", "2026-11-22", "test")
    spot = RegionPrice("eastus", 3e-6, 3e-7, "USD", "2026-11-22", "test", priority="Spot")
    note = ("Spot groups can be evicted, and an eviction reruns their tasks, the first "
            "2 evictions of a task without spending a retry ([azure] max_evictions)")
    groups = [[Task(0, "bytes", "in.csv", size=10)]]
    for price, alt in ((regular, spot), (spot, regular)):  # a Regular job, then a Spot job
        est = estimate(groups, backend="aci", max_parallel=1, cpu=1, memory_gb=1,
                       assumptions=Assumptions(5.0, 60.0, 30.0), billed=True, price=price,
                       alt_price=alt)
        text = estimate_lines(est, "eastus", groups, max_evictions=2)
        assert text.count(note) == 1, text
