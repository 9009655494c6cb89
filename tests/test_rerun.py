"""Running a job again: ``overwrite = true`` resumes its own job, a lost group's launch record
is cleaned up and numbered past, every task that ran twice is counted, and an interrupt says
truthfully which stage it cut short. Local backend, shell scorers: fast."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from manifests import manifest_tasks
from shelljobs import SCORE, write_rows

from serverless_score.controller import job as job_module
from serverless_score.controller.job import Job
from serverless_score.controller.launches import LaunchRecord
from serverless_score.errors import JobInterrupted
from serverless_score.runner.contract import Claim
from serverless_score.spec import load_spec

ROWS = 24


def run_json(cli, job: Path, *args: str):
    result = cli("run", job, "--json", "-q", *args)
    assert result.json is not None, result
    return result


def test_overwrite_rerun_of_a_finished_job_is_up_to_date(job_dir, make_job, cli) -> None:
    write_rows(job_dir / "data.csv", ROWS)
    job = make_job(job_dir, name="ow", input="data.csv", output="out/s.txt", runtime="command",
                   scorer=SCORE, chunks=3, overwrite=True)
    first = run_json(cli, job)
    assert first.json["status"] == "succeeded", first
    output = job_dir / "out" / "s.txt"
    stamp = output.stat().st_mtime_ns
    again = run_json(cli, job)
    assert again.json["status"] == "up-to-date" and again.json["attempts"] == 0, again
    assert output.stat().st_mtime_ns == stamp


def test_a_failed_overwrite_job_keeps_its_parts_and_the_old_output(job_dir, make_job, cli) -> None:
    keys = write_rows(job_dir / "data.csv", ROWS)
    (job_dir / "out").mkdir()
    output = job_dir / "out" / "s.txt"
    output.write_text("yesterday's scores\n")
    flag = job_dir / "broken-today"
    flag.touch()
    scorer = f'if [ "$TASK_ID" = t00002 ] && [ -e {flag} ]; then exit 3; fi; {SCORE}'
    job = make_job(job_dir, name="nightly", input="data.csv", output="out/s.txt",
                   runtime="command", scorer=scorer, chunks=3, overwrite=True)
    failed = run_json(cli, job)
    assert failed.code == 1 and failed.json["error"]["task_id"] == "t00002", failed
    assert output.read_text() == "yesterday's scores\n"  # replaced only by a finished job
    flag.unlink()
    fixed = run_json(cli, job)
    assert fixed.json["status"] == "succeeded", fixed
    assert fixed.json["reused_tasks"] == 2  # the finished parts survived the failed run
    assert output.read_text().splitlines() == [f"{k},scored" for k in keys]


def test_a_launch_whose_group_was_lost_is_deleted_and_numbered_past(job_dir, make_job,
                                                                      cli) -> None:
    """A controller killed between recording a launch and hearing the create's answer (its
    group went on to claim an attempt): the next run deletes the group by name, numbers the
    task's attempt past the claim and its groups past the lost one, and counts the task as
    retried."""
    keys = write_rows(job_dir / "data.csv", ROWS)
    flag = job_dir / "broken"
    flag.touch()
    scorer = f'if [ "$TASK_ID" = t00000 ] && [ -e {flag} ]; then exit 3; fi; {SCORE}'
    job = make_job(job_dir, name="lost", input="data.csv", output="out/s.txt",
                   runtime="command", scorer=scorer, chunks=2, max_parallel=1)
    failed = run_json(cli, job)  # t00000 attempt 1 fails
    assert failed.code == 1, failed
    job_id = failed.json["job_id"]
    flag.unlink()
    work = job_dir / "out" / "s.txt.work"
    # The one group pulls t00001 as soon as t00000 failed; whether it claimed it, and finished
    # it, before the controller stopped the failed job is a race. A finished part is reused; a
    # claimed attempt cut short is never reused: t00001 is then retried too (attempt 2), and
    # that is what must be reported.
    first = work / "tasks" / "t00001" / "attempt-1"
    finished = (first / "status.json").exists() and json.loads(
        (first / "status.json").read_text())["outcome"] == "succeeded"
    cut_short = (first / "claim.json").exists() and not finished
    launches = work / "launches"
    lost = f"{job_id}-g009"  # recorded, then the controller died: no answer, no end
    (launches / f"{lost}.json").write_bytes(
        LaunchRecord(lost, job_id, {}, "2026-01-01T00:00:00+00:00").to_json())
    claim = work / "tasks" / "t00000" / "attempt-2" / "claim.json"  # what the lost group took
    claim.parent.mkdir(parents=True)
    claim.write_bytes(Claim(lost, 1, "2026-01-01T00:00:01Z").to_json())
    result = run_json(cli, job)
    assert result.json["status"] == "succeeded", result
    assert result.json["retried_tasks"] == (["t00000", "t00001"] if cut_short else ["t00000"])
    record = json.loads((launches / f"{lost}.json").read_text())
    assert record["outcome"] == "orphan-deleted" and record["ended_at"]
    status = json.loads((work / "tasks" / "t00000" / "attempt-3" / "status.json").read_text())
    assert status["outcome"] == "succeeded" and status["group"] == f"{job_id}-g010"
    assert json.loads((launches / f"{job_id}-g010.json").read_text())["outcome"] == "done"
    attempts = {t["id"]: t["attempts"] for t in manifest_tasks(job_dir / "out" / "s.txt")}
    assert attempts == {"t00000": 3, "t00001": 2 if cut_short else 1}
    assert (job_dir / "out" / "s.txt").read_text().splitlines() == [f"{k},scored" for k in keys]


@pytest.mark.parametrize(("stage", "target", "says"), [
    ("merging", "merge", "interrupted while merging"),
    ("resuming", "load_state", "interrupted while resuming"),
])
def test_an_interrupt_says_which_stage_it_cut_short(job_dir, make_job, monkeypatch, stage,
                                                    target, says) -> None:
    write_rows(job_dir / "data.csv", ROWS)
    job = make_job(job_dir, name="stages", input="data.csv", output="out/s.txt",
                   runtime="command", scorer=SCORE, chunks=2)
    real = getattr(job_module, target)

    def interrupted(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # a real signal, through the job's handlers
        return real(*args, **kwargs)

    monkeypatch.setattr(job_module, target, interrupted)
    with pytest.raises(JobInterrupted) as err, Job(load_spec(job)) as running:
        running.run()
    assert says in err.value.message, err.value.message
    assert "nothing was written" not in err.value.message
    assert not (job_dir / "out" / "s.txt").exists()


@pytest.mark.parametrize("delay", [0.0, 0.03, 0.08, 0.15, 0.3])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_in_the_first_moments_ends_in_one_line_not_a_traceback(job_dir, make_job, procs,
                                                                        delay, sig) -> None:
    """Ctrl-C or SIGTERM while the command is still importing its modules, or just after."""
    import time

    write_rows(job_dir / "data.csv", ROWS)
    job = make_job(job_dir, name="early", input="data.csv", output="out/s.txt",
                   runtime="command", scorer=SCORE, chunks=2)
    process = procs.start("run", job, "-q")
    time.sleep(delay)  # when the signal lands (the test is that any moment is handled)
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=60)
    if process.returncode == 0:  # the job beat the signal: nothing to check
        return
    assert not (job_dir / "out" / "s.txt").exists()
    if process.returncode == -sig or "init_import_site" in stderr:
        return  # the interpreter's own start-up, before any of this package's code ran
    assert "Traceback" not in stderr, stderr
    assert process.returncode == 130, stderr
    assert "error: interrupted" in stderr, stderr
