"""Jobs of 100,000 tasks: the plan, the manifest's task lines beside its summary, and the
controller's per-task bookkeeping that must stay O(tasks). Correctness only: the timings are
bench/bench_scale.py's."""

from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import asdict
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from serverless_score.backends.base import LABEL_TASKS, GroupInfo
from serverless_score.controller.bad_rows import Budget
from serverless_score.controller.changes import describe_changes
from serverless_score.controller.inspect import group_tasks, job_status, locate
from serverless_score.controller.job import JobResult
from serverless_score.controller.manifest import (
    compact_ids,
    read_tasks,
    split_usage,
    task_rows,
    write_manifest,
)
from serverless_score.layout import JobLayout
from serverless_score.planning import make_plan
from serverless_score.planning.inputs import is_output_file, output_files
from serverless_score.planning.tasks import Shard, Task
from serverless_score.runner.contract import TaskResult
from serverless_score.spec import spec_from_dict
from serverless_score.storage.local import LocalStore


def _tasks(count: int) -> list[Task]:
    return [Task(index=i, kind="bytes", path="/in.csv", start=10 * i, end=10 * (i + 1),
                 size=10, file_size=10 * count) for i in range(count)]


def _result(task: Task, *, attempt: int = 1, records: int = 3, failed: int = 0) -> TaskResult:
    part = f"{task.id}\n".encode()
    return TaskResult(task.id, attempt, records, records - failed, task.start, task.end, None,
                      "", [], f"p/{task.id}", hashlib.sha256(part).hexdigest(), len(part), 0.5,
                      rows_failed=failed)


# -- a 100,000-task plan -----------------------------------------------------------------------
def test_a_100000_task_plan_is_contiguous_complete_and_the_same_twice(tmp_path: Path) -> None:
    data = tmp_path / "in.csv"
    data.write_bytes(b"k,v\n" + b"".join(b"%08d,1\n" % i for i in range(200_000)))
    spec = spec_from_dict({"name": "big", "runtime": "command", "scorer": "cat",
                           "input": str(data), "output": str(tmp_path / "out" / "o.txt"),
                           "chunks": 100_000, "max_parallel": 4})
    plan = make_plan(spec)
    tasks = plan.tasks
    assert len(tasks) == 100_000
    assert [t.index for t in tasks] == list(range(100_000))
    assert len({t.id for t in tasks}) == 100_000 and tasks[-1].id == "t99999"
    assert tasks[0].start == 0 and tasks[-1].end == data.stat().st_size
    assert all(a.end == b.start and b.end > b.start for a, b in pairwise(tasks))
    assert sum(t.size for t in tasks) == data.stat().st_size == plan.total_bytes
    # Deterministic: the same job plans the same tasks under the same id (what resume needs).
    again = make_plan(spec)
    assert again.job_id == plan.job_id and again.tasks == tasks


def test_task_to_dict_is_asdict_for_every_kind_of_task() -> None:
    """job.json and ``plan --json`` hold what they held before ``to_dict`` stopped using asdict."""
    tasks = [Task(index=3, kind="bytes", path="/x.csv", start=5, end=9, size=4, file_size=20),
             Task(index=4, kind="bytes", path="/x.csv", start=9, end=20, pinned_begin=12),
             Task(index=1, kind="rowgroups", path="/p.parquet", start=0, end=2, rows_hint=40),
             Task(index=2, kind="shard", shard=Shard(2, 4, 50, 74), size=1)]
    for task in tasks:
        assert task.to_dict() == asdict(task)
        assert list(task.to_dict()) == list(asdict(task))  # same key order: same job.json bytes
        assert Task.from_dict(json.loads(json.dumps(task.to_dict()))) == task


# -- the manifest: a summary and its task lines -------------------------------------------------
def test_the_summary_names_its_task_lines_and_stays_small(tmp_path: Path) -> None:
    store, layout = LocalStore(), JobLayout(str(tmp_path / "o.csv"))
    tasks = _tasks(5000)
    results = {t.id: _result(t, attempt=2 if t.index == 7 else 1) for t in tasks}
    usage = {"groups": 2, "per_group": [
        {"name": "g1", "tasks": [t.id for t in tasks[:2500]],
         "attempts": {t.id: 1 for t in tasks[:2500]}, "seconds": 10.0},
        {"name": "g2", "tasks": [t.id for t in tasks[2500:]],
         "attempts": {t.id: 1 for t in tasks[2500:]}, "seconds": 12.0}]}
    summary = {"job_id": "big-1", "totals": {"tasks": len(tasks)}, "usage": usage}
    shuffled = random.Random(1).sample(tasks, len(tasks))  # the lines follow the task order
    written = write_manifest(store, layout, summary, shuffled, results, {"t00007": 2},
                             {"t00001": 0.1234}, {"t00007": 1})

    on_disk = json.loads(Path(layout.manifest).read_text())
    assert on_disk == written and "tasks" not in on_disk
    assert len(Path(layout.manifest).read_text().splitlines()) < 60  # not one per task
    lines = Path(layout.manifest_tasks).read_bytes()
    assert on_disk["tasks_file"] == {"name": "o.csv.manifest.tasks.jsonl", "tasks": 5000,
                                     "bytes": len(lines), "sha256": hashlib.sha256(lines).hexdigest()}
    assert on_disk["usage"]["per_group"] == [
        {"name": "g1", "tasks": ["t00000..t02499"], "seconds": 10.0},
        {"name": "g2", "tasks": ["t02500..t04999"], "seconds": 12.0}]
    rows = read_tasks(store, layout, on_disk)
    assert rows is not None and [r["id"] for r in rows] == [t.id for t in tasks]
    assert rows[7]["attempts"] == 2 and rows[1]["container_seconds"] == 0.123
    assert rows[7]["evictions"] == 1  # its first attempt's group was evicted
    assert rows[0]["groups"] == [["g1", 1]] and rows[4999]["groups"] == [["g2", 1]]
    assert rows[3] == {"id": "t00003", "input": "/in.csv bytes 30..40", "begin": 30, "end": 40,
                       "records_in": 3, "records_out": 3, "rows_failed": 0, "attempts": 1,
                       "evictions": 0,
                       "seconds": 0.5, "part_sha256": results["t00003"].part_sha256,
                       "part_bytes": 7, "container_seconds": None, "groups": [["g1", 1]]}


def test_the_printed_result_lists_each_groups_tasks_as_runs_and_keeps_them_whole() -> None:
    """``run --json`` grows with the groups, not with the tasks; the manifest still gets every
    task's groups (it is written from the result's own usage, which ``to_dict`` leaves whole)."""
    ids = [t.id for t in _tasks(5000)]
    usage = {"groups": 2, "per_group": [
        {"name": "g1", "tasks": [*ids[:2500], "t04999"], "attempts": {i: 1 for i in ids[:2500]}},
        {"name": "g2", "tasks": ids[2500:], "attempts": {i: 1 for i in ids[2500:]}}]}
    result = JobResult(job_id="big-1", name="big", status="succeeded", tasks=5000, rows_in=None,
                       rows_out=0, output="o.csv", manifest="o.csv.manifest.json",
                       work_dir="o.csv.work", attempts=5001, usage=usage)
    printed = json.loads(json.dumps(result.to_dict()))
    assert printed["usage"]["per_group"] == [
        {"name": "g1", "tasks": ["t00000..t02499", "t04999"]},
        {"name": "g2", "tasks": ["t02500..t04999"]}]
    assert len(json.dumps(printed)) < 1000
    assert result.usage is usage and len(usage["per_group"][0]["tasks"]) == 2501
    assert JobResult(**{**printed, "usage": None}).to_dict()["usage"] is None


def test_task_lines_that_are_not_the_summarys_are_not_read(tmp_path: Path) -> None:
    store, layout = LocalStore(), JobLayout(str(tmp_path / "o.csv"))
    tasks = _tasks(3)
    results = {t.id: _result(t) for t in tasks}
    summary = write_manifest(store, layout, {"job_id": "a-1", "usage": None}, tasks, results, {}, {})
    assert read_tasks(store, layout, summary) is not None
    # A later job cut off between its task lines and its summary: the old summary's count and
    # checksum no longer match, so its tasks are unknown rather than another job's.
    other = write_manifest(store, JobLayout(str(tmp_path / "o.csv")), {"job_id": "b-1", "usage": None},
                           tasks[:2], results, {}, {})
    assert read_tasks(store, layout, summary) is None
    assert read_tasks(store, layout, other) is not None
    os.unlink(layout.manifest_tasks)
    assert read_tasks(store, layout, other) is None


def test_a_manifest_from_before_the_task_lines_is_read_as_it_is(tmp_path: Path) -> None:
    store, layout = LocalStore(), JobLayout(str(tmp_path / "o.csv"))
    old = {"job_id": "a-1", "tasks": [{"id": "t00000", "records_out": 4}, {"id": "t00001"}]}
    assert read_tasks(store, layout, old) == old["tasks"]
    assert read_tasks(store, layout, {"job_id": "a-1"}) is None


@pytest.mark.parametrize(("ids", "compact"), [
    ([], []),
    (["t00000"], ["t00000"]),
    (["t00000", "t00001"], ["t00000", "t00001"]),
    (["t00000", "t00001", "t00002"], ["t00000..t00002"]),
    (["t00004", "t00005", "t00006", "t00009", "t00010", "t00011", "t00012", "t00020"],
     ["t00004..t00006", "t00009..t00012", "t00020"]),
    (["t00003", "t00002", "t00001"], ["t00003", "t00002", "t00001"]),  # only ascending runs
    (["t99998", "t99999", "t100000", "t100001"], ["t99998..t100001"]),  # past 5 digits
])
def test_compact_ids_writes_runs_as_first_to_last(ids: list[str], compact: list[str]) -> None:
    assert compact_ids(ids) == compact


def test_split_usage_keeps_which_group_ran_which_attempt_of_each_task() -> None:
    usage = {"groups": 3, "cost": 0.5, "per_group": [
        {"name": "g1", "tasks": ["t00000", "t00001", "t00002"],
         "attempts": {"t00000": 1, "t00001": 1, "t00002": 1}, "outcome": "failed"},
        {"name": "g2", "tasks": ["t00001"], "attempts": {"t00001": 2}, "outcome": "succeeded"}]}
    summary, ran = split_usage(usage)
    assert summary == {"groups": 3, "cost": 0.5, "per_group": [
        {"name": "g1", "tasks": ["t00000..t00002"], "outcome": "failed"},
        {"name": "g2", "tasks": ["t00001"], "outcome": "succeeded"}]}
    assert ran == {"t00000": [["g1", 1]], "t00001": [["g1", 1], ["g2", 2]], "t00002": [["g1", 1]]}
    assert split_usage(None) == (None, {})
    rows = list(task_rows(_tasks(3), {t.id: _result(t) for t in _tasks(3)}, {}, {}, ran))
    assert [r["groups"] for r in rows] == [[["g1", 1]], [["g1", 1], ["g2", 2]], [["g1", 1]]]


def test_the_task_lines_are_never_taken_for_input(tmp_path: Path) -> None:
    output = str(tmp_path / "out.csv")
    assert is_output_file(f"{output}.manifest.tasks.jsonl", output)
    assert not is_output_file(str(tmp_path / "other.manifest.tasks.jsonl"), output)


def test_output_files_are_found_through_links_and_relative_paths(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What ``is_output_file`` resolved path by path, resolved once per folder."""
    real = tmp_path / "real"
    (real / "out.csv.work" / "tasks").mkdir(parents=True)
    for name in ("out.csv", "out.csv.manifest.json", "out.csv.work/tasks/part", "data.csv"):
        (real / name).write_text("x")
    (tmp_path / "linked").symlink_to(real)  # a folder link: its files are the real ones
    (tmp_path / "alias.csv").symlink_to(real / "out.csv")  # a file link to the output
    monkeypatch.chdir(tmp_path)
    ours = output_files(str(tmp_path / "linked" / "out.csv"))
    found = {name: ours(name) for name in (
        "real/out.csv", "real/out.csv.manifest.json", "real/out.csv.work/tasks/part",
        "real/data.csv", "alias.csv", "linked/out.csv.work/tasks/part", "linked/data.csv",
        f"file://{real / 'out.csv'}", str(real / "out.csv.lease"))}
    assert found == {"real/out.csv": True, "real/out.csv.manifest.json": True,
                     "real/out.csv.work/tasks/part": True, "real/data.csv": False,
                     "alias.csv": True, "linked/out.csv.work/tasks/part": True,
                     "linked/data.csv": False, f"file://{real / 'out.csv'}": True,
                     str(real / "out.csv.lease"): True}
    assert all(is_output_file(name, "linked/out.csv") == hit for name, hit in found.items())
    assert not output_files(None)("real/out.csv")
    blob = output_files("az://c/out.csv")
    assert blob("az://c/out.csv.manifest.tasks.jsonl") and blob("az://c/out.csv.work/x")
    assert not blob("az://c/out.csv2") and not blob("real/out.csv")


# -- status of a succeeded job, from the manifest ---------------------------------------------
def _job_folder(tmp_path: Path, tasks: list[Task]) -> tuple[LocalStore, JobLayout]:
    store, layout = LocalStore(), JobLayout(str(tmp_path / "out" / "o.csv"))
    store.write_bytes(layout.job_file, json.dumps(
        {"job_id": "big-1", "name": "big", "backend": "local",
         "tasks": [t.to_dict() for t in tasks]}).encode())
    return store, layout


def test_status_of_a_succeeded_job_reads_its_task_lines_not_every_status(tmp_path: Path) -> None:
    tasks = _tasks(4)
    store, layout = _job_folder(tmp_path, tasks)
    results = {t.id: _result(t, records=5, failed=1 if t.index == 2 else 0) for t in tasks}
    write_manifest(store, layout, {"job_id": "big-1", "usage": {"groups": 1}}, tasks, results,
                   {"t00003": 3}, {})
    # No attempt's status is stored: every figure below comes from the task lines.
    assert not os.path.exists(layout.tasks_dir)
    status = job_status(locate(layout.output), None)
    assert status.state == "succeeded" and status.manifest == layout.manifest
    assert [(t.id, t.state, t.rows, t.rows_failed, t.attempts) for t in status.tasks] == [
        ("t00000", "done", 5, 0, 1), ("t00001", "done", 5, 0, 1), ("t00002", "done", 4, 1, 1),
        ("t00003", "done", 5, 0, 3)]
    assert status.rows == 19 and status.usage == {"groups": 1}
    assert locate(layout.manifest_tasks).job_id == "big-1"  # the task lines name the job too

    # Task lines that are not the summary's: the stored statuses are read instead (none here).
    Path(layout.manifest_tasks).write_text("{}\n")
    fallback = job_status(locate(layout.output), None)
    assert [t.state for t in fallback.tasks] == ["pending"] * 4


def test_a_live_groups_first_to_last_label_names_its_tasks() -> None:
    ids = [f"t{i:05d}" for i in range(100_000)]
    group = GroupInfo(name="g", job_id="j", labels={LABEL_TASKS: "t25000..t49999"})
    assert group_tasks(group, "j", ids) == ids[25_000:50_000]
    # Ids that are not at their index (another job's listing): found where they are.
    shifted = ["t00007", "t00008", "t00009"]
    assert group_tasks(GroupInfo(name="g", job_id="j", labels={LABEL_TASKS: "t00008..t00009"}),
                       "j", shifted) == ["t00008", "t00009"]


# -- the bad-rows budget keeps running totals ----------------------------------------------------
def test_the_budgets_running_totals_are_the_sums_of_its_tasks_counts_after_repairs() -> None:
    spec = spec_from_dict({"name": "b", "model": "/m.joblib", "input": "/x.csv",
                           "output": "/o.csv", "on_error": "skip", "max_failed_fraction": 0.5})
    tasks = _tasks(50)
    budget = Budget(spec, tasks)
    rng = random.Random(7)
    for _ in range(400):  # tasks finish, and some finish again (a boundary repair re-runs them)
        task = rng.choice(tasks)
        records = rng.randint(0, 9)
        budget.task_done(task, _result(task, records=records, failed=rng.randint(0, records)))
        assert budget.rows_failed == sum(budget.failed.values())
        assert budget.rows_seen == sum(budget.seen.values())
        assert budget.bytes_read == sum(budget.bytes_seen.values())
    assert budget.total_bytes == 500


# -- what changed, against a manifest with or without its tasks inline -----------------------
@pytest.mark.parametrize("inline", [True, False])
def test_a_changed_task_count_is_named_from_the_summary(tmp_path: Path, inline: bool) -> None:
    data = tmp_path / "in.csv"
    data.write_bytes(b"k,v\n" + b"".join(b"%03d,1\n" % i for i in range(30)))
    spec = spec_from_dict({"name": "c", "runtime": "command", "scorer": "cat", "input": str(data),
                           "output": str(tmp_path / "o.txt"), "chunks": 3})
    plan = make_plan(spec)
    old_spec = spec.model_dump(mode="json")
    manifest: dict[str, Any] = {"spec": {**old_spec, "chunks": 2}, "inputs": [
        {"path": f.path, "size": f.size, "version": f.version} for f in plan.files]}
    if inline:
        manifest["tasks"] = [{"input": "x"}, {"input": "y"}]
    else:
        manifest["totals"] = {"tasks": 2}
    assert describe_changes(manifest, plan, None) == [
        "the chunking changed (chunks 2 -> 3: 2 -> 3 tasks)"]
    # Same chunks key, another count (max_parallel rounds the default count): still named.
    manifest["spec"] = old_spec
    assert describe_changes(manifest, plan, None) == ["the chunking changed (2 -> 3 tasks)"]


def test_a_directory_input_lists_what_it_listed_before_the_faster_walk(tmp_path: Path) -> None:
    """Every regular, non-hidden file under the folder, sorted; hidden folders and the job's
    own files left out (the oracle is the listing as it was written with rglob)."""
    from serverless_score.planning.inputs import list_input_paths

    root = tmp_path / "in"
    for name in ("a.csv", "sub/b.csv", "sub/deeper/c.csv", ".hidden.csv", ".git/d.csv",
                 "sub/.e.csv", "out.csv", "out.csv.manifest.tasks.jsonl",
                 "out.csv.work/tasks/t00000/attempt-1/part"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("k,v\n1,2\n")
    output = str(root / "out.csv")
    oracle = sorted(str(p) for p in root.rglob("*")
                    if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
                    and not is_output_file(str(p), output))
    assert list_input_paths(str(root), output=output) == oracle
    assert [Path(p).relative_to(root).as_posix() for p in oracle] == [
        "a.csv", "sub/b.csv", "sub/deeper/c.csv"]
    assert list_input_paths(f"{root}/", output=output) == oracle
