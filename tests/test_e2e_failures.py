"""End to end: what happens when things go wrong. Retries, tasks that never succeed, timeouts,
a controller killed with SIGKILL then re-run, Ctrl-C / SIGTERM, and every kind of bad input:
each must end with a one-paragraph message, the right exit code, no traceback, no output, and no
worker process left behind.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import sys
import time
from pathlib import Path

import pytest
from manifests import manifest_tasks

pytestmark = pytest.mark.slow

PY = shlex.quote(sys.executable)
ROWS = 30


def write_rows(path: Path, rows: int = ROWS, fmt: str = "csv") -> list[str]:
    """``rows`` records keyed k000, k001, ... as CSV (``k,v`` header) or JSONL; returns the
    records' keys."""
    keys = [f"k{i:03d}" for i in range(rows)]
    if fmt == "csv":
        path.write_text("k,v\n" + "".join(f"{k},{i}\n" for i, k in enumerate(keys)))
    else:
        path.write_text("".join(json.dumps({"k": k, "v": i}) + "\n" for i, k in enumerate(keys)))
    return keys


def scored(keys: list[str]) -> list[str]:
    """What the shell scorers below print for records with these keys."""
    return [f"{k},scored" for k in keys]


SCORERS = {  # one line "<key>,scored" per record
    "csv": "tail -n +2 | sed 's/,.*/,scored/'",
    "jsonl": "cut -d'\"' -f4 | sed 's/$/,scored/'",
}
SCORE = SCORERS["csv"]


def job_id_of(output: Path) -> str:
    return json.loads(Path(f"{output}.work/job.json").read_text())["job_id"]


def error_part(stderr: str) -> str:
    """The controller's own message: from ``error:`` up to the quoted task log, if any."""
    assert "error:" in stderr, stderr
    text = stderr[stderr.index("error:"):]
    return text.split("--- last lines of the log", 1)[0]


def assert_clean_failure(result, code: int, *needles: str, output: Path | None = None) -> str:
    """Exit ``code``, a one-paragraph message mentioning every needle, no traceback, no output."""
    assert result.code == code, result
    message = error_part(result.stderr)
    assert "Traceback" not in message, result
    assert "\n\n" not in message.strip(), result  # one paragraph
    flat = " ".join(message.split())
    for needle in needles:
        assert needle in flat, f"{needle!r} not in {flat!r}"
    if output is not None:
        assert not output.exists(), "a failed job must not leave an output"
        assert not Path(f"{output}.manifest.json").exists()
    return flat


# -- retries -----------------------------------------------------------------------------------
def flaky_command(marker: Path, task_id: str, fmt: str = "csv") -> str:
    """Fails the first attempt of ``task_id`` (leaving ``marker``), then scores normally."""
    return (f'if [ "$TASK_ID" = {task_id} ] && [ ! -e {marker} ]; then '
            f'touch {marker}; echo "flaky failure of $TASK_ID" >&2; exit 1; fi; {SCORERS[fmt]}')


@pytest.mark.parametrize(("fmt", "task_id"), [("csv", "t00000"), ("jsonl", "t00002")])
def test_a_failed_attempt_is_retried(job_dir, make_job, cli, fmt, task_id):
    keys = write_rows(job_dir / f"data.{fmt}", fmt=fmt)
    marker = job_dir / "failed-once"
    job = make_job(job_dir, name="retry", input=f"data.{fmt}", output="out/s.txt",
                   runtime="command", scorer=flaky_command(marker, task_id, fmt), chunks=3,
                   retries=2)
    result = cli("run", job, "--json", "-q")
    assert result.code == 0, result
    assert marker.exists()
    assert result.json["retried_tasks"] == [task_id]
    assert result.json["repaired_boundaries"] == 0
    output = job_dir / "out" / "s.txt"
    assert output.read_text().splitlines() == scored(keys)
    manifest = json.loads(Path(f"{output}.manifest.json").read_text())
    expected = {t: 2 if t == task_id else 1 for t in ("t00000", "t00001", "t00002")}
    assert {t["id"]: t["attempts"] for t in manifest_tasks(output)} == expected
    assert manifest["totals"]["attempts"] == 4
    logs = Path(f"{output}.work/tasks/{task_id}")
    assert f"flaky failure of {task_id}" in (logs / "attempt-1/log.txt").read_text()
    assert "flaky failure" not in (logs / "attempt-2/log.txt").read_text()
    first = json.loads((logs / "attempt-1/status.json").read_text())
    assert first["outcome"] == "failed" and not (logs / "attempt-1/part").exists()


# csv t00001: a middle task that began at the right record is not given a "boundary repair" run
@pytest.mark.parametrize(("fmt", "task_id"),
                         [("csv", "t00000"), ("csv", "t00001"), ("jsonl", "t00001")])
def test_retries_zero_fails_on_the_first_failure(job_dir, make_job, cli, fmt, task_id):
    write_rows(job_dir / f"data.{fmt}", fmt=fmt)
    marker = job_dir / "failed-once"
    job = make_job(job_dir, name="no-retry", input=f"data.{fmt}", output="out/s.txt",
                   runtime="command", scorer=flaky_command(marker, task_id, fmt), chunks=3,
                   retries=0)
    output = job_dir / "out" / "s.txt"
    result = cli("run", job, "--json", "-q")
    assert_clean_failure(result, 1, task_id, "after 1 attempt", output=output)
    assert marker.exists()
    assert sorted(p.name for p in Path(f"{output}.work/tasks/{task_id}").glob("attempt-*")) \
        == ["attempt-1"]
    assert result.json["status"] == "failed" and result.json["error"]["task_id"] == task_id


def test_a_task_that_always_fails_fails_the_job(job_dir, make_job, cli, procs):
    write_rows(job_dir / "data.csv")
    command = (f'if [ "$TASK_ID" = t00001 ]; then echo "cannot score $TASK_ID: boom-42" >&2; '
               f"exit 1; fi; {SCORE}")
    job = make_job(job_dir, name="always-fails", input="data.csv", output="out/s.txt",
                   runtime="command", scorer=command, chunks=3, retries=1)
    output = job_dir / "out" / "s.txt"
    result = cli("run", job, "--json", "-q")
    flat = assert_clean_failure(result, 1, "t00001", "exited with code 1", output=output)
    assert "attempts" in flat
    # The log tail of the failed task is shown after the message.
    assert "last lines of the log of task t00001" in result.flat_stderr
    assert "cannot score t00001: boom-42" in result.stderr
    assert result.json["error"]["task_id"] == "t00001"
    assert "boom-42" in result.json["error"]["log_tail"]
    job_id = job_id_of(output)
    assert procs.wait_for(lambda: not procs.of_job(job_id), timeout=5), procs.of_job(job_id)


def test_a_task_timeout_stops_it_with_a_message(job_dir, make_job, cli, procs):
    write_rows(job_dir / "data.csv")
    command = f'if [ "$TASK_ID" = t00000 ]; then sleep 60; fi; {SCORE}'
    job = make_job(job_dir, name="timeout", input="data.csv", output="out/s.txt",
                   runtime="command", scorer=command, chunks=2, retries=0, timeout="1s")
    output = job_dir / "out" / "s.txt"
    started = time.monotonic()
    result = cli("run", job, "--json", "-q", timeout=60)
    assert time.monotonic() - started < 30
    assert_clean_failure(result, 1, "t00000", "timed out", output=output)
    job_id = job_id_of(output)
    assert procs.wait_for(lambda: not procs.of_job(job_id), timeout=5), procs.of_job(job_id)


# -- crashes and signals -----------------------------------------------------------------------
def test_resume_after_the_controller_is_killed(job_dir, make_job, cli, procs):
    keys = write_rows(job_dir / "data.csv", 60)
    slow = job_dir / "slow"
    slow.touch()
    # While ``slow`` exists, tasks from index 2 on hang: the first run never finishes them.
    command = f'if [ -e {slow} ] && [ "$TASK_INDEX" -ge 2 ]; then sleep 60; fi; {SCORE}'
    job = make_job(job_dir, name="resume", input="data.csv", output="out/s.txt",
                   runtime="command", scorer=command, chunks=6, retries=0)
    output = job_dir / "out" / "s.txt"
    work = Path(f"{output}.work")

    controller = procs.start("run", job, "-q", cwd=job_dir)
    finished = procs.wait_for(lambda: list(work.glob("tasks/*/attempt-*/status.json")), timeout=60)
    assert finished, "no task finished in the first run"
    job_id = job_id_of(output)
    procs.watch(job_id)
    # Kill the controller only once both workers are inside their hanging task.
    assert procs.wait_for(lambda: procs.names_of_job(job_id).count("sleep") == 2, timeout=30), \
        procs.names_of_job(job_id)
    os.kill(controller.pid, signal.SIGKILL)
    controller.wait(timeout=10)
    assert controller.returncode == -signal.SIGKILL
    assert not output.exists()
    orphans = procs.of_job(job_id)
    assert orphans, "the workers of a SIGKILLed controller should still be running"

    slow.unlink()
    result = cli("run", job, "--json", "-q", cwd=job_dir)
    assert result.code == 0, result
    assert result.json["status"] == "succeeded"
    assert result.json["job_id"] == job_id
    assert result.json["reused_tasks"] == 2  # t00000 and t00001 finished in the first run
    assert output.read_text().splitlines() == scored(keys)
    assert result.json["rows_out"] == 60
    assert procs.wait_for(lambda: not procs.of_job(job_id), timeout=5), \
        f"processes of the job left: {procs.of_job(job_id)}"
    assert not list(work.glob("groups/*.pid")), "the orphans' pid files were not removed"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_every_worker(job_dir, make_job, procs, signum):
    write_rows(job_dir / "data.csv")
    job = make_job(job_dir, name="signal", input="data.csv", output="out/s.txt",
                   runtime="command", scorer=f"sleep 60; {SCORE}", chunks=4, retries=0)
    output = job_dir / "out" / "s.txt"
    controller = procs.start("run", job, "-q", cwd=job_dir)
    assert procs.wait_for(lambda: Path(f"{output}.work/job.json").exists(), timeout=30)
    job_id = job_id_of(output)
    procs.watch(job_id)
    # Both workers are up and their scoring commands are sleeping.
    assert procs.wait_for(lambda: procs.names_of_job(job_id).count("sleep") == 2, timeout=30), \
        procs.names_of_job(job_id)
    controller.send_signal(signum)
    _, stderr = controller.communicate(timeout=30)
    if signum == signal.SIGINT:
        assert controller.returncode == 130, stderr
    else:
        assert controller.returncode not in (0, None), stderr
    assert "interrupted" in stderr, stderr
    assert "Traceback" not in stderr, stderr
    assert not output.exists()
    assert not Path(f"{output}.manifest.json").exists()
    assert procs.wait_for(lambda: not procs.of_job(job_id), timeout=5), \
        f"processes of the job left: {procs.of_job(job_id)}"


# -- bad input ---------------------------------------------------------------------------------
def _missing_model(d: Path, model: Path) -> dict:
    write_rows(d / "data.csv")
    return dict(name="bad", model="nope.joblib", input="data.csv", output="out/s.csv")


def _missing_input(d: Path, model: Path) -> dict:
    return dict(name="bad", model=str(model), input="nope.csv", output="out/s.csv")


def _corrupt_model(d: Path, model: Path) -> dict:
    write_rows(d / "data.csv")
    (d / "model.joblib").write_bytes(os.urandom(2048))
    return dict(name="bad", model="model.joblib", input="data.csv", output="out/s.csv",
                retries=2, chunks=1)


def _unknown_key(d: Path, model: Path) -> dict:
    write_rows(d / "data.csv")
    return dict(name="bad", model=str(model), input="data.csv", output="out/s.csv", chunkz=3)


def _empty_input(d: Path, model: Path) -> dict:
    (d / "data.csv").write_bytes(b"")
    return dict(name="bad", model=str(model), input="data.csv", output="out/s.csv")


def _crashing_command(d: Path, model: Path) -> dict:
    write_rows(d / "data.csv")
    return dict(name="bad", input="data.csv", output="out/s.txt", runtime="command",
                scorer="echo 'scorer crashed' >&2; exit 3", chunks=1)


def _short_command(d: Path, model: Path) -> dict:
    write_rows(d / "data.csv")
    return dict(name="bad", input="data.csv", output="out/s.txt", runtime="command",
                scorer="tail -n +3", chunks=1)


def _raising_script(d: Path, model: Path) -> dict:
    write_rows(d / "data.csv")
    (d / "scorer.py").write_text("def score(model, data):\n"
                                 "    raise ValueError('no feature called xyz')\n")
    return dict(name="bad", model=str(model), input="data.csv", output="out/s.csv",
                scorer="scorer.py", chunks=1)


def _blank_header(d: Path, model: Path) -> dict:
    (d / "data.csv").write_text("\n" + "a,b,c\n1,2,3\n")
    return dict(name="bad", model=str(model), input="data.csv", output="out/s.csv", chunks=1)


BAD_INPUTS = {
    # case: (job keys, exit code, what the message must say)
    "missing-model": (_missing_model, 2, ["model", "nope.joblib", "does not exist"]),
    "missing-input": (_missing_input, 2, ["input", "nope.csv", "does not exist"]),
    "corrupt-model": (_corrupt_model, 1, ["t00000", "model", "cannot load", "not retried"]),
    "unknown-key": (_unknown_key, 2, ["unknown key", "chunkz", "did you mean 'chunks'"]),
    "empty-input": (_empty_input, 2, ["input", "empty"]),
    "crashing-command": (_crashing_command, 1, ["t00000", "exited with code 3"]),
    "wrong-line-count": (_short_command, 1, ["t00000", "records in", "scores out"]),
    "raising-script": (_raising_script, 1, ["t00000", "ValueError", "no feature called xyz"]),
    "blank-csv-header": (_blank_header, 1, ["t00000", "CSV header", "is empty", "not retried"]),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_gives_a_clear_error(job_dir, make_job, cli, trained_model, case):
    setup, code, needles = BAD_INPUTS[case]
    job = make_job(job_dir, **setup(job_dir, trained_model.path))
    output = job_dir / "out" / ("s.txt" if case.endswith("command") or case == "wrong-line-count"
                                else "s.csv")
    result = cli("run", job, "--json", "-q")
    flat = assert_clean_failure(result, code, *needles, output=output)
    assert result.json is not None and result.json["status"] == "failed", result
    if code == 1:  # a task failure: the task's log is shown, the full log is named
        assert "Full log:" in result.flat_stderr
        if case == "raising-script":  # the log tail shows where the user's own code failed
            assert 'scorer.py", line 2, in score' in result.stderr, result
        else:
            assert "Traceback" not in result.stderr, result
    else:
        assert "Traceback" not in result.stderr, result
    if case == "wrong-line-count":
        records_in, scores_out = map(int, re.search(r"(\d+) records in\D+(\d+) scores out",
                                                    flat).groups())
        assert (records_in, scores_out) == (ROWS, ROWS - 1)
    if case == "corrupt-model":  # running it again cannot help: not retried
        logs = list((job_dir / "out").glob("s.csv.work/tasks/t00000/attempt-*"))
        assert [p.name for p in logs] == ["attempt-1"]
        status = json.loads((logs[0] / "status.json").read_text())
        assert status["outcome"] == "failed-permanently" and status["reason"]
    if case == "crashing-command":
        assert "scorer crashed" in result.stderr


def test_malformed_toml_names_the_line(job_dir, cli):
    job = job_dir / "job.toml"
    job.write_text('name = "bad"\ninput = "data.csv"\nchunks = = 3\noutput = "out/s.csv"\n')
    result = cli("run", job, "--json")
    flat = assert_clean_failure(result, 2, "not valid TOML")
    assert re.search(r"line 3\b", flat), flat
    assert "Traceback" not in result.stderr
    assert not (job_dir / "out").exists()


def test_missing_job_file(job_dir, cli):
    result = cli("run", job_dir / "nope.toml")
    assert_clean_failure(result, 2, "nope.toml", "does not exist")
    assert "Traceback" not in result.stderr
