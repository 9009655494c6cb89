"""The local backend against the Backend protocol, with real processes: create, state, logs,
delete (whole process tree), list a job's groups (orphans found through pid files)."""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from pathlib import Path

import pytest

from serverless_score.backends import GroupSpec, Phase, get_backend
from serverless_score.backends.local import LocalBackend, _is_our_runner
from serverless_score.controller.wakeup import StatusWakeup
from serverless_score.runner.contract import ENV_GROUP, ENV_NOTIFY, ENV_WORK, AttemptStatus

# Unique per session: groups are also found through /proc, machine-wide, and other test sessions
# may run this file at the same time.
JOB = f"job-{uuid.uuid4().hex[:8]}"
OTHER_JOB = f"job-{uuid.uuid4().hex[:8]}"


def _wait_finished(backend: LocalBackend, name: str, seconds: float = 30) -> Phase:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        phase = backend.get_states([name])[name].phase
        if phase.finished:
            return phase
        time.sleep(0.05)
    raise AssertionError(f"{name} did not finish in {seconds}s")


def _group(name: str, work: dict, job: str = JOB) -> GroupSpec:
    return GroupSpec(name=name, job_id=job, task_ids=("t00000",),
                     env={ENV_WORK: json.dumps(work), ENV_GROUP: name})


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purposes
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.split(")")[-1].split()[0] != "Z"


def _shard_work(tmp_path: Path, command: str) -> dict:
    return {
        "job_id": JOB, "format": None, "record_pattern": None, "runtime": "command",
        "scorer": command, "predict_method": "auto", "id_columns": [], "model": None,
        "output_format": "lines",
        "orders": [{"task": {"index": 0, "kind": "shard",
                             "shard": {"index": 0, "count": 1, "bin_start": 0, "bin_end": 9}},
                    "part": str(tmp_path / "part"), "log": str(tmp_path / "log.txt"),
                    "status": str(tmp_path / "status.json"), "attempt": 1}],
    }


def test_registry_finds_local_and_names_the_choices_for_others(tmp_path: Path) -> None:
    assert isinstance(get_backend("local", state_dir=str(tmp_path)), LocalBackend)
    with pytest.raises(Exception, match="choose one of local"):
        get_backend("nomad", state_dir=str(tmp_path))


def test_a_group_runs_the_runner_which_stores_part_log_and_status(tmp_path: Path) -> None:
    backend = LocalBackend(str(tmp_path / "groups"))
    backend.begin_create_group(_group("g-ok", _shard_work(
        tmp_path, 'echo "bins $BIN_START-$BIN_END"; echo "said to stderr" >&2')))
    assert _wait_finished(backend, "g-ok") is Phase.SUCCEEDED
    log = backend.get_logs("g-ok")  # still echoed to the worker's own output
    assert "runner: task t00000 attempt 1" in log and "said to stderr" in log
    assert (tmp_path / "part").read_text() == "bins 0-9\n"
    task_log = (tmp_path / "log.txt").read_text()  # the command's stderr is in the task's log
    assert "runner: task t00000 attempt 1" in task_log and "said to stderr" in task_log
    status = AttemptStatus.from_json((tmp_path / "status.json").read_bytes())
    assert status.succeeded and status.group == "g-ok" and status.result is not None
    assert status.result.records_out == 1 and status.result.part == str(tmp_path / "part")
    backend.delete_group("g-ok")
    assert backend.list_groups(JOB) == []


def test_a_failing_group_reports_failed_with_its_exit_code(tmp_path: Path) -> None:
    backend = LocalBackend(str(tmp_path / "groups"))
    backend.begin_create_group(_group("g-bad", _shard_work(tmp_path, "exit 7")))
    assert _wait_finished(backend, "g-bad") is Phase.FAILED
    state = backend.get_states(["g-bad"])["g-bad"]
    assert state.exit_code == 1 and "exited with code 1" in state.detail
    assert "exited with code 7" in backend.get_logs("g-bad")
    backend.delete_group("g-bad")


def test_a_malformed_work_order_exits_2(tmp_path: Path) -> None:
    backend = LocalBackend(str(tmp_path / "groups"))
    backend.begin_create_group(_group("g-malformed", {"job_id": "x"}))
    assert _wait_finished(backend, "g-malformed") is Phase.FAILED
    assert backend.get_states(["g-malformed"])["g-malformed"].exit_code == 2
    assert "malformed work order" in backend.get_logs("g-malformed")


def test_delete_kills_the_whole_process_tree(tmp_path: Path) -> None:
    backend = LocalBackend(str(tmp_path / "groups"))
    pid_file = tmp_path / "child.pid"
    backend.begin_create_group(_group("g-tree", _shard_work(
        tmp_path, f"sleep 60 & echo $! > {pid_file}; wait")))
    deadline = time.monotonic() + 20
    while not pid_file.exists() or not pid_file.read_text().strip():
        assert time.monotonic() < deadline, "the scorer never started"
        time.sleep(0.05)
    child = int(pid_file.read_text())
    assert backend.get_states(["g-tree"])["g-tree"].phase is Phase.RUNNING
    assert backend.list_groups(JOB) == ["g-tree"]
    backend.delete_group("g-tree")
    time.sleep(0.2)
    assert not _alive(child), "the scorer's child survived the delete"
    assert backend.list_groups(JOB) == []
    backend.delete_group("g-tree")  # idempotent: already gone is fine


def test_a_new_backend_instance_finds_and_stops_orphans(tmp_path: Path) -> None:
    """What resume relies on after a kill -9 of the controller."""
    first = LocalBackend(str(tmp_path / "groups"))
    first.begin_create_group(_group("g-orphan", _shard_work(tmp_path, "sleep 60"), job=OTHER_JOB))
    pid = first._procs["g-orphan"].pid
    # Between fork and exec the child still has our environment, not the runner's: a new
    # controller comes long after that; this test must wait for it on a loaded machine.
    deadline = time.monotonic() + 10
    while not _is_our_runner(pid, "g-orphan") and time.monotonic() < deadline:
        time.sleep(0.02)
    second = LocalBackend(str(tmp_path / "groups"))  # knows nothing but the pid files
    assert second.list_groups(OTHER_JOB) == ["g-orphan"]
    assert second.list_groups("another-job") == []
    second.delete_group("g-orphan")
    first._procs["g-orphan"].wait(timeout=10)
    assert not _alive(pid)
    assert second.list_groups(OTHER_JOB) == []


def test_a_stale_pid_file_never_kills_an_unrelated_process(tmp_path: Path) -> None:
    """Pids are reused: a pid file pointing at a process that is not our runner is ignored."""
    groups = tmp_path / "groups"
    groups.mkdir()
    (groups / "g-stale.pid").write_text(f"{os.getpid()} {JOB}\n")
    backend = LocalBackend(str(groups))
    assert backend.list_groups(JOB) == []
    backend.delete_group("g-stale")
    assert _alive(os.getpid())
    assert sys.executable  # still here to assert anything at all


def test_wait_any_returns_when_a_worker_exits_not_at_the_timeout(tmp_path: Path) -> None:
    backend = LocalBackend(str(tmp_path / "state"))
    backend.begin_create_group(_group("g-slow", _shard_work(tmp_path / "slow", "sleep 30")))
    backend.begin_create_group(_group("g-quick", _shard_work(tmp_path, "sleep 0.3")))
    try:
        deadline = time.monotonic() + 30
        while not backend.get_states(["g-quick"])["g-quick"].phase.finished:
            assert time.monotonic() < deadline
            started = time.monotonic()
            backend.wait_any(["g-slow", "g-quick"], timeout=20)
            # woken by g-quick's status, then its exit (0.3 s of sleep plus a Python start),
            # never by the 20 s timeout
            assert time.monotonic() - started < 10
        assert not backend.get_states(["g-slow"])["g-slow"].phase.finished
        started = time.monotonic()
        backend.wait_any(["g-slow"], timeout=0.3)  # nothing exits: the timeout ends the wait
        assert 0.25 <= time.monotonic() - started < 5
    finally:
        backend.delete_group("g-slow")
        backend.delete_group("g-quick")


def test_wait_any_returns_when_a_worker_stores_a_status_while_it_runs_on(tmp_path: Path) -> None:
    """A worker that has stored a task's status and goes on with its next task (or waits for
    work, as a pulling group does) wakes the controller at once through the named pipe it was
    given: the job's last status is not found a poll interval late."""
    wakeup = StatusWakeup.create(str(tmp_path / "queue" / "run.wakeup"))
    assert wakeup is not None
    work = _shard_work(tmp_path, 'if [ "$BIN_START" = 0 ]; then echo first; else sleep 30; fi')
    second = json.loads(json.dumps(work["orders"][0]))
    second["task"] = {"index": 1, "kind": "shard",
                      "shard": {"index": 1, "count": 2, "bin_start": 5, "bin_end": 9}}
    for key in ("part", "log", "status"):
        second[key] = str(tmp_path / f"second-{key}")
    work["orders"].append(second)
    group = _group("g-two", work)
    group.env[ENV_NOTIFY] = wakeup.path
    backend = LocalBackend(str(tmp_path / "state"))
    backend.begin_create_group(group)
    try:
        started = time.monotonic()
        # woken by the first status, never by the 20 s timeout, while the worker runs on
        assert backend.wait_any(["g-two"], timeout=20, wake=wakeup.fd) is True
        assert time.monotonic() - started < 10
        assert AttemptStatus.from_json((tmp_path / "status.json").read_bytes()).succeeded
        assert not backend.get_states(["g-two"])["g-two"].phase.finished  # still on its second
        wakeup.drain()
        started = time.monotonic()
        # nothing new: the timeout ends the wait, and says it was not a status
        assert backend.wait_any(["g-two"], timeout=0.3, wake=wakeup.fd) is False
        assert 0.25 <= time.monotonic() - started < 5
    finally:
        backend.delete_group("g-two")
        wakeup.close()
    assert not (tmp_path / "second-status").exists()
    assert not os.path.exists(wakeup.path)  # close removes the pipe


def test_a_worker_without_a_reader_or_given_a_plain_file_carries_on(tmp_path: Path) -> None:
    """The signal is best effort: a pipe nobody reads (the controller is gone) or a path that is
    a plain file (never appended to) costs the worker nothing; its task succeeds."""
    for kind in ("fifo", "file"):
        path = tmp_path / f"signal-{kind}"
        if kind == "fifo":
            os.mkfifo(path)
        else:
            path.write_bytes(b"")
        folder = tmp_path / kind
        folder.mkdir()
        group = _group(f"g-{kind}", _shard_work(folder, "echo scored"))
        group.env[ENV_NOTIFY] = str(path)
        backend = LocalBackend(str(tmp_path / "state"))
        backend.begin_create_group(group)
        assert _wait_finished(backend, f"g-{kind}") is Phase.SUCCEEDED
        assert AttemptStatus.from_json((folder / "status.json").read_bytes()).succeeded
        if kind == "file":
            assert path.read_bytes() == b""
        backend.delete_group(f"g-{kind}")


def test_wait_any_closes_every_pidfd_it_opened(tmp_path: Path) -> None:
    """A wait over a running worker and one already gone returns at once and leaves no file
    descriptor open (the controller waits several times a second for hours)."""
    backend = LocalBackend(str(tmp_path / "state"))
    backend.begin_create_group(_group("g-runs", _shard_work(tmp_path / "runs", "sleep 30")))
    try:
        before = len(os.listdir("/proc/self/fd"))
        for _ in range(50):
            started = time.monotonic()
            assert backend.wait_any(["g-runs", "g-never-made"], timeout=5) is False
            assert time.monotonic() - started < 2
        assert len(os.listdir("/proc/self/fd")) == before
    finally:
        backend.delete_group("g-runs")
