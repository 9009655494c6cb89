"""Controller pieces that need no worker: attempt statuses, failure reasons, merge plans, and the
resume state (which parts count as verified)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from serverless_score.backends import GroupState, Phase
from serverless_score.controller.merge import merge, merge_plan
from serverless_score.controller.state import load_state
from serverless_score.controller.watch import lost_attempt, reported_begin, tail
from serverless_score.errors import ScoreError
from serverless_score.layout import JobLayout, stored_attempts
from serverless_score.planning import make_plan
from serverless_score.planning.tasks import Task
from serverless_score.runner.contract import AttemptStatus, Outcome, TaskResult
from serverless_score.spec import spec_from_dict
from serverless_score.storage.local import LocalStore


def _result(task_id: str, rows: int, header: str = "id,score\n", data: bytes = b"",
            attempt: int = 1, layout: JobLayout | None = None) -> TaskResult:
    import hashlib

    part = layout.part(task_id, attempt) if layout is not None else f"{task_id}/part"
    return TaskResult(task_id=task_id, attempt=attempt, records_in=rows, records_out=rows,
                      begin=0, end=0, pinned_begin=None, header=header, columns=["id", "score"],
                      part=part, part_sha256=hashlib.sha256(data).hexdigest(),
                      part_bytes=len(data), seconds=0.1)


def _succeeded(result: TaskResult, group: str = "g") -> AttemptStatus:
    return AttemptStatus(result.task_id, result.attempt, group, Outcome.SUCCEEDED, begin=0,
                         result=result)


def test_a_status_round_trips_and_a_torn_or_inconsistent_one_is_refused() -> None:
    status = _succeeded(_result("t00003", 5, attempt=2))
    again = AttemptStatus.from_json(status.to_json())
    assert again == status and again.succeeded and again.retryable
    assert json.loads(status.to_json())["outcome"] == "succeeded"  # plain JSON for people too
    failed = AttemptStatus("t00003", 2, "g", Outcome.FAILED_PERMANENTLY, reason="model: bad file",
                           begin=120)
    assert AttemptStatus.from_json(failed.to_json()) == failed
    assert not failed.retryable and reported_begin(failed) == 120
    with pytest.raises(ValueError):
        AttemptStatus.from_json(status.to_json()[:-20])  # cut off mid-write
    with pytest.raises(ValueError, match="without a result"):
        AttemptStatus("t0", 1, "g", Outcome.SUCCEEDED)
    with pytest.raises(ValueError):
        AttemptStatus.from_json(json.dumps({**json.loads(failed.to_json()), "outcome": "ok"}))


def test_a_lost_attempt_takes_its_reason_from_the_group_state() -> None:
    killed = GroupState("g", Phase.FAILED, -9, "was killed by signal 9")
    status = lost_attempt("t00000", 1, "g", killed)
    assert "killed by signal 9" in status.reason and status.retryable and status.begin is None
    unpullable = GroupState("g", Phase.FAILED, None, "image cannot be pulled", retryable=False)
    assert lost_attempt("t00000", 1, "g", unpullable).outcome is Outcome.FAILED_PERMANENTLY
    assert "no status" in lost_attempt("t00000", 1, "g", None).reason


def test_attempt_files_are_found_in_a_listing_of_the_work_folder(tmp_path: Path) -> None:
    layout = JobLayout(str(tmp_path / "out.csv"))
    uris = [layout.part("t00001", 1), layout.status("t00001", 1), layout.task_log("t00001", 2),
            f"{layout.attempt_dir('t00001', 3)}/.part.x1.tmp",  # being written: not yet there
            layout.job_file, layout.group_log("g")]
    assert stored_attempts(uris) == {"t00001": {1: {"part", "status.json"}, 2: {"log.txt"}}}


def test_tail_keeps_the_last_lines() -> None:
    assert tail("\n".join(str(i) for i in range(100)), 3) == "97\n98\n99"


def test_merge_plan_orders_parts_and_writes_the_header_once(tmp_path: Path) -> None:
    layout = JobLayout(str(tmp_path / "out.csv"))
    store = LocalStore()
    tasks = [Task(index=i, kind="bytes") for i in (2, 0, 1)]
    results = {}
    for task in tasks:
        data = f"{task.index},0.{task.index}\n".encode() if task.index != 1 else b""
        attempt = 1 + task.index  # the accepted attempt's part, whichever attempt that was
        store.write_bytes(layout.part(task.id, attempt), data)
        results[task.id] = _result(task.id, 1 if data else 0, data=data, attempt=attempt,
                                   layout=layout)
    plan = merge_plan(tasks, results, layout, "csv")
    assert plan.parts == (layout.part("t00000", 1), layout.part("t00002", 3))  # empty one skipped
    assert plan.sizes == (6, 6)  # from the checked results: a blob merge asks nothing per part
    assert plan.scratch == f"{layout.work}/merge"  # its intermediates, in the job's work folder
    assert plan.rows == 2
    merge(store, plan, layout.output, "csv")
    assert Path(layout.output).read_text() == "id,score\n0,0.0\n2,0.2\n"


def test_merge_plan_refuses_parts_with_different_columns(tmp_path: Path) -> None:
    layout = JobLayout(str(tmp_path / "out.csv"))
    tasks = [Task(index=0, kind="bytes"), Task(index=1, kind="bytes")]
    results = {"t00000": _result("t00000", 1, "a,b\n"), "t00001": _result("t00001", 1, "a,c\n")}
    with pytest.raises(ScoreError, match="different columns"):
        merge_plan(tasks, results, layout, "csv")


def test_merge_plan_refuses_a_missing_task(tmp_path: Path) -> None:
    layout = JobLayout(str(tmp_path / "out.csv"))
    with pytest.raises(ScoreError, match="no result"):
        merge_plan([Task(index=0, kind="bytes")], {}, layout, "csv")


def _plan(tmp_path: Path):
    data = tmp_path / "in.txt"
    data.write_text("".join(f"{i}\n" for i in range(100)))
    spec = spec_from_dict({"name": "resume", "input": str(data), "format": "records",
                           "record_pattern": "[0-9]+\\n", "runtime": "command", "scorer": "cat",
                           "output": str(tmp_path / "out.txt"), "chunks": 3})
    return make_plan(spec)


def test_resume_keeps_verified_parts_and_redoes_tampered_ones(tmp_path: Path) -> None:
    store = LocalStore()
    plan = _plan(tmp_path)
    layout = JobLayout(plan.spec.output)
    first = load_state(store, layout, plan)
    assert first.fresh and not first.results
    for task in plan.tasks:
        data = f"part {task.id}\n".encode()
        store.write_bytes(layout.part(task.id, 1), data)
        status = _succeeded(_result(task.id, 1, data=data, layout=layout))
        store.write_bytes(layout.status(task.id, 1), status.to_json().encode())
        store.write_bytes(layout.task_log(task.id, 1), b"log")
    # t00000: attempt 1 succeeded, attempt 2 failed after it (a repair): attempt 1 still counts
    lost = AttemptStatus("t00000", 2, "g2", Outcome.FAILED, reason="killed")
    store.write_bytes(layout.status("t00000", 2), lost.to_json().encode())
    # t00001: same size, different bytes -> the checksum catches it
    store.write_bytes(layout.part("t00001", 1), b"part XXXXXX\n")
    # t00002: its status is torn; its attempt 3 has only a log (the worker died mid-task)
    store.write_bytes(layout.status("t00002", 1), b"{not json")
    store.write_bytes(layout.task_log("t00002", 3), b"log")
    again = load_state(store, layout, plan)
    assert not again.fresh
    assert set(again.results) == {"t00000"} and again.results["t00000"].attempt == 1
    assert again.attempts == {"t00000": 2, "t00001": 1, "t00002": 3}


def test_resume_clears_the_state_of_another_version_of_the_job(tmp_path: Path) -> None:
    store = LocalStore()
    plan = _plan(tmp_path)
    layout = JobLayout(plan.spec.output)
    store.write_bytes(layout.job_file, json.dumps({"job_id": "resume-0000000000"}).encode())
    store.write_bytes(layout.part("t00000", 1), b"old")
    state = load_state(store, layout, plan)
    assert state.discarded_stale and state.fresh
    assert not store.exists(layout.part("t00000", 1))
    assert json.loads(store.read_bytes(layout.job_file))["job_id"] == plan.job_id


def test_the_job_id_changes_with_the_input_and_not_with_max_parallel(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    same = make_plan(plan.spec.model_copy(update={"max_parallel": 7, "retries": 0}))
    assert same.job_id == plan.job_id
    Path(plan.spec.input or "").write_text("changed\n" * 50)
    assert make_plan(plan.spec).job_id != plan.job_id


def test_group_labels_name_the_job_tasks_and_expiry() -> None:
    from datetime import UTC, datetime

    from serverless_score.controller.watch import group_labels
    from serverless_score.planning.tasks import Shard, Task

    tasks = [Task(index=i, kind="shard", shard=Shard(i, 400, i, i))
             for i in range(400)]
    labels = group_labels("churn-abc", tasks[:2], lifetime=60)
    assert labels["job"] == "churn-abc" and labels["tasks"] == "t00000,t00001"
    expires = datetime.fromisoformat(labels["expires"].replace("Z", "+00:00"))
    assert 60 + 590 < (expires - datetime.now(UTC)).total_seconds() <= 60 + 600
    long = group_labels("churn-abc", tasks, lifetime=60)["tasks"]
    assert long == "t00000..t00399" and len(long) <= 256


