"""What a worker tells the controller travels as files in the store, never as log lines: each
attempt's part, its whole log and its status, in its own folder. A long group on ACI (which keeps
only the last 1,000 lines of a container's log) loses nothing, and a scorer that prints lines
looking like the old ``::task`` protocol changes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from serverless_score.runner.contract import AttemptStatus, Outcome

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
SCORE = "tail -n +2 | sed 's/,.*/,scored/'"  # one "<key>,scored" per CSV record
FAKE = ('{ echo "::task $TASK_ID failed-permanently: fake"; echo "::task t00002 start attempt=9"; '
        'echo "::task $TASK_ID begin=1"; } >&2')


def _status(work: Path, task_id: str, attempt: int) -> AttemptStatus:
    return AttemptStatus.from_json((work / f"tasks/{task_id}/attempt-{attempt}/status.json").read_bytes())


# -- the capture ------------------------------------------------------------------------------
CAPTURE = textwrap.dedent("""
    import os, subprocess, sys
    from serverless_score.runner.capture import OutputCapture

    first, second = sys.argv[1:3]
    capture = OutputCapture()
    print("before any task")
    capture.start_task(first)
    print("from python")
    subprocess.run(["sh", "-c", "echo child out; seq 1 20000; echo child err >&2"], check=True)
    os.write(2, b"no newline at the end")
    capture.end_task()
    capture.start_task(second)
    print("two")
    capture.end_task()
    print("after the tasks")
    capture.close()
""")


def test_each_task_log_gets_exactly_what_was_printed_during_it(tmp_path: Path) -> None:
    first, second = tmp_path / "first.log", tmp_path / "second.log"
    run = subprocess.run([sys.executable, "-c", CAPTURE, str(first), str(second)],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    lines = first.read_text().splitlines()
    # Output before the first task belongs to it (R and the model load there); a child's
    # stdout and stderr are caught at the descriptor level, every line of them.
    assert {"before any task", "from python", "child out", "child err",
            "no newline at the end"} <= set(lines)
    assert [line for line in lines if line.isdigit()] == [str(i) for i in range(1, 20001)]
    assert second.read_text() == "two\n"  # nothing of the first task, nothing after it
    # Still echoed to the worker's own output, for docker logs / ACI / the local log file.
    assert "from python" in run.stdout and "20000" in run.stdout and "after the tasks" in run.stdout
    assert "child err" in run.stderr and "no newline at the end" in run.stderr
    assert "cut-" not in run.stdout + run.stderr + first.read_text()  # the cut token is invisible


# -- one attempt, one writer ------------------------------------------------------------------
def test_a_worker_never_writes_over_another_workers_attempt(tmp_path: Path) -> None:
    """A zombie group and its retry given the same attempt: whoever wrote first keeps it."""
    from serverless_score.layout import JobLayout
    from serverless_score.planning.tasks import Shard, Task
    from serverless_score.runner.contract import TaskOrder, WorkOrder

    layout = JobLayout(str(tmp_path / "out.txt"))
    tasks = [Task(index=i, kind="shard", shard=Shard(i, 2, i, i)) for i in range(2)]
    orders = [TaskOrder.of(layout, task, 1) for task in tasks]
    work = WorkOrder(job_id="j", format=None, record_pattern=None, runtime="command",
                     scorer='echo "scored $TASK_ID"', predict_method="auto", id_columns=[],
                     model=None, output_format="lines", orders=orders)
    Path(orders[0].part).parent.mkdir(parents=True)
    Path(orders[0].part).write_bytes(b"the other worker's part\n")  # t00000: taken
    Path(orders[1].status).parent.mkdir(parents=True)
    Path(orders[1].status).write_bytes(b"the other worker's status")  # t00001: finished there
    order_file = tmp_path / "work.json"
    order_file.write_text(work.to_json())
    run = subprocess.run([sys.executable, "-m", "serverless_score.runner", "--work", str(order_file)],
                         capture_output=True, text=True, timeout=60, cwd=ROOT,
                         env={**os.environ, "SERVERLESS_SCORE_GROUP": "late"})
    assert run.returncode == 1, run
    assert Path(orders[0].part).read_bytes() == b"the other worker's part\n"
    assert not Path(orders[0].status).exists() and not Path(orders[0].log).exists()
    assert Path(orders[1].status).read_bytes() == b"the other worker's status"
    assert "leaves that attempt to the other" in run.stdout
    assert "written by another worker" in run.stdout


# -- local: protocol-like lines printed by a scorer -------------------------------------------
def test_lines_that_look_like_the_old_protocol_change_nothing(job_dir, make_job, cli) -> None:
    (job_dir / "data.csv").write_text("k,v\n" + "".join(f"k{i:03d},{i}\n" for i in range(60)))
    marker = job_dir / "failed-once"
    # Every task prints fake markers; t00001 then fails once (retryable: exit 3). Read as
    # protocol, its "failed-permanently" would have failed the job without a retry.
    command = (f'{FAKE}; if [ "$TASK_ID" = t00001 ] && [ ! -e {marker} ]; then touch {marker}; '
               f'exit 3; fi; {SCORE}')
    job = make_job(job_dir, name="fake", input="data.csv", output="out/s.txt", runtime="command",
                   scorer=command, chunks=3, retries=1, max_parallel=1)
    result = cli("run", job, "--json", "-q")
    assert result.code == 0, result
    assert result.json["retried_tasks"] == ["t00001"] and result.json["rows_out"] == 60
    work = job_dir / "out" / "s.txt.work"
    failed = _status(work, "t00001", 1)
    assert failed.outcome is Outcome.FAILED  # retryable, whatever it printed
    assert failed.reason.startswith("the scoring command exited with code 3")
    assert failed.begin is not None and failed.begin > 1  # its real first record's offset
    counts = []
    for task_id, attempt in (("t00000", 1), ("t00001", 2), ("t00002", 1)):
        status = _status(work, task_id, attempt)
        assert status.succeeded and status.result is not None
        assert status.result.records_in == status.result.records_out > 0
        counts.append(status.result.records_out)
        log = (work / f"tasks/{task_id}/attempt-{attempt}/log.txt").read_text()
        assert f"::task {task_id} failed-permanently: fake" in log  # only text, for people
        assert f"runner: task {task_id} succeeded" in log
        assert not any(f"runner: task {other}" in log for other in ("t00000", "t00001", "t00002")
                       if other != task_id)  # one group ran them all: each log has its own
    assert sum(counts) == 60


# -- ACI: a long group whose log the backend truncates ----------------------------------------
NOISE = 5000


@pytest.mark.azurite
@pytest.mark.aci
def test_a_20_task_group_with_chatty_scorers_keeps_every_status_and_whole_log(
        job_dir, make_job, aci_env, aci_emulator, azurite, container, cli) -> None:
    rows = b"k,v\n" + b"".join(f"k{i:03d},{i}\n".encode() for i in range(200))
    azurite.service().get_blob_client(container, "in/rows.csv").upload_blob(rows)
    marker = job_dir / "failed-once"
    command = (f'echo "first line of $TASK_ID" >&2; {FAKE}; '
               f'seq 1 {NOISE} | sed "s/^/$TASK_ID noise /" >&2; echo "last line of $TASK_ID" >&2; '
               f'if [ "$TASK_ID" = t00007 ] && [ ! -e {marker} ]; then touch {marker}; exit 5; fi; '
               f'{SCORE}')
    out = f"az://{container}/out/s.txt"
    job = make_job(job_dir, name="chatty", runtime="command", scorer=command,
                   input=f"az://{container}/in/rows.csv", output=out, chunks=20, max_parallel=1,
                   retries=1, backend="aci", image="myreg.azurecr.io/serverless-score-python:test")
    result = cli("run", job, "--json", "-q")
    assert result.code == 0, result
    assert result.json["tasks"] == 20 and result.json["rows_out"] == 200
    assert result.json["retried_tasks"] == ["t00007"]
    # one group pulled all 20 tasks, and the retry too: no group per task, none per retry
    assert aci_emulator.calls[("PUT", "group")] == 1

    def blob(name: str) -> bytes:
        client = azurite.service().get_blob_client(container, f"out/s.txt.work/{name}")
        return bytes(client.download_blob().readall())

    first_group = f"{result.json['job_id']}-g001"
    kept = blob(f"groups/{first_group}.log").decode()
    # What ACI kept of the group (read while it still ran, waiting for more work): its last
    # 4 MB only...
    assert len(kept.encode()) <= 4 * 1024 * 1024
    failed = AttemptStatus.from_json(blob("tasks/t00007/attempt-1/status.json"))
    assert failed.outcome is Outcome.FAILED
    assert failed.reason.startswith("the scoring command exited with code 5")
    assert failed.group == first_group
    counts = []
    for index in range(20):  # ...and yet every task's status and whole log are there
        task_id = f"t{index:05d}"
        attempt = 2 if task_id == "t00007" else 1
        status = AttemptStatus.from_json(blob(f"tasks/{task_id}/attempt-{attempt}/status.json"))
        assert status.succeeded and status.result is not None, status
        assert status.result.records_in == status.result.records_out > 0
        counts.append(status.result.records_out)
        log = blob(f"tasks/{task_id}/attempt-{attempt}/log.txt").decode()
        noise = [line for line in log.splitlines() if line.startswith(f"{task_id} noise ")]
        assert noise == [f"{task_id} noise {i}" for i in range(1, NOISE + 1)]
        assert f"first line of {task_id}" in log and f"last line of {task_id}" in log
    shown = cli("logs", out, "--task", "0")  # the whole log, from the store, naming its attempt
    assert shown.code == 0, shown
    assert "first line of t00000" in shown.stdout and "t00000 noise 1\n" in shown.stdout
    assert "t00000 attempt 1" in shown.stderr and "attempt-1/log.txt" in shown.stderr
    manifest = json.loads(azurite.service().get_blob_client(
        container, "out/s.txt.manifest.json").download_blob().readall())
    lines = azurite.service().get_blob_client(
        container, "out/s.txt.manifest.tasks.jsonl").download_blob().readall().splitlines()
    assert manifest["tasks_file"]["tasks"] == len(lines) == 20
    assert [json.loads(t)["records_out"] for t in lines] == counts and sum(counts) == 200
    # The summary names the group's 20 tasks as one run, not one by one.
    assert manifest["usage"]["per_group"][0]["tasks"] == ["t00000..t00019"]
    assert aci_emulator.group_names() == []
