"""The progress display: a finished task that a boundary repair re-runs is counted once."""

from __future__ import annotations

import io

from rich.console import Console

from serverless_score.cli.progress import RichProgress
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
