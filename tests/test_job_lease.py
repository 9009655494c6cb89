"""One controller per job, end to end with real worker processes: a second ``run`` of a running job
stops at once with exit code 3 and the holder in ``--json``, and deletes none of the first one's
groups; ``status`` names that controller and ``cleanup JOB`` skips its groups while it lives;
after the first controller is SIGKILLed a rerun takes the job over and finishes it; every exit path releases the lease."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from shelljobs import SCORE, write_rows

pytestmark = pytest.mark.slow


def _job_id(output: Path) -> str | None:
    try:
        return str(json.loads(Path(f"{output}.work/job.json").read_text())["job_id"])
    except (FileNotFoundError, ValueError):
        return None


def test_a_second_controller_stops_at_once_and_a_rerun_takes_over_a_killed_one(
        job_dir, make_job, cli, procs, tmp_path) -> None:
    keys = write_rows(job_dir / "data.csv", 20)
    gate = job_dir / "gate"
    gate.touch()
    # Task t00001 hangs while `gate` exists: the first controller stays busy with a live group.
    command = (f'if [ "$TASK_INDEX" -eq 1 ] && [ -e {gate} ]; then sleep 60; fi; {SCORE}')
    job = make_job(job_dir, name="lease", input="data.csv", output="out/s.txt",
                   runtime="command", scorer=command, chunks=2, max_parallel=1)
    output = job_dir / "out" / "s.txt"
    first = procs.start("run", job, "-q", cwd=job_dir)
    assert procs.wait_for(lambda: _job_id(output), timeout=60)
    job_id = _job_id(output)
    assert job_id is not None
    procs.watch(job_id)
    assert procs.wait_for(lambda: "sleep" in procs.names_of_job(job_id), timeout=60)
    # One group: it finished t00000 and now hangs in t00001.
    def busy() -> bool:
        status = cli("status", job, "--json").json or {}
        states = {t["id"]: (t["state"], t["group"]) for t in status.get("tasks", [])}
        group = f"{job_id}-g001"
        return (status.get("live_groups") == [group] and states.get("t00000", ("",))[0] == "done"
                and states.get("t00001") == ("running", group))

    assert procs.wait_for(busy, timeout=30)
    workers = sorted(procs.of_job(job_id))

    started = time.monotonic()
    second = cli("run", job, "--json", "-q", cwd=job_dir)
    assert second.code == 3, second
    assert time.monotonic() - started < 20  # at once: it never waited for the first
    error = second.json["error"]
    assert second.json["status"] == "locked" and second.json["job_id"] == job_id
    assert error["kind"] == "job-locked" and error["holder"]["pid"] == first.pid
    assert error["since"] == error["holder"]["since"] and error["holder"]["host"]
    assert f"(pid {first.pid})" in second.flat_stderr and "already running" in second.flat_stderr
    assert sorted(procs.of_job(job_id)) == workers  # nothing of the first one was touched
    assert first.poll() is None

    status = cli("status", job, "--json").json
    assert status["state"] == "running" and status["controller"]["pid"] == first.pid

    skipped = cli("cleanup", job, "--json", cwd=tmp_path)
    assert skipped.code == 0, skipped
    assert [g["skipped"] is not None for g in skipped.json["groups"]] == [True]
    assert f"pid {first.pid}" in skipped.json["groups"][0]["skipped"]
    assert "skipped" in skipped.stderr and "--force" in skipped.stderr
    assert sorted(procs.of_job(job_id)) == workers

    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=10)
    assert Path(f"{output}.lease").exists()  # a crash leaves it; the rerun sees its holder is gone
    assert cli("status", job, "--json").json["controller"] is None
    gate.unlink()
    rerun = cli("run", job, "--json", "-q", cwd=job_dir)
    assert rerun.code == 0, rerun
    assert rerun.json["status"] == "succeeded" and rerun.json["reused_tasks"] == 1
    assert output.read_text().splitlines() == [f"{k},scored" for k in keys]
    assert not procs.of_job(job_id)  # the orphan was deleted by the rerun that took over
    assert not Path(f"{output}.lease").exists()  # released on success


def test_the_lease_is_released_on_failure_sigterm_and_ctrl_c(job_dir, make_job, cli, procs) -> None:
    write_rows(job_dir / "data.csv", 10)
    failing = make_job(job_dir, name="lease-fail", input="data.csv", output="out/f.txt",
                       runtime="command", scorer="exit 3", chunks=1, retries=0)
    assert cli("run", failing, "-q", cwd=job_dir).code == 1
    assert not (job_dir / "out" / "f.txt.lease").exists()

    hanging = make_job(job_dir, filename="hang.toml", name="lease-term", input="data.csv",
                       output="out/t.txt", runtime="command", scorer="sleep 60", chunks=1)
    output = job_dir / "out" / "t.txt"
    for stop in (signal.SIGTERM, signal.SIGINT):  # SIGINT: what Ctrl-C sends
        controller = procs.start("run", hanging, "-q", cwd=job_dir)
        assert procs.wait_for(lambda: _job_id(output), timeout=60)
        job_id = _job_id(output)
        assert job_id is not None
        procs.watch(job_id)
        assert procs.wait_for(lambda job=job_id: "sleep" in procs.names_of_job(job), timeout=60)
        assert Path(f"{output}.lease").exists()
        controller.send_signal(stop)
        assert controller.wait(timeout=30) == 130
        assert not Path(f"{output}.lease").exists(), stop
