"""Groups that pull their tasks, through the ACI emulator (ARM as the real SDK speaks it, with
ACI's create and delete windows and a regional quota switched on) and Azurite: a big job runs on
a fleet of groups, never a group per task; a group killed mid-task loses only its claim; a task
made far slower than the rest does not hold the job."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from polling import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.azurite, pytest.mark.aci]
IMAGE = "myreg.azurecr.io/serverless-score-python:test"  # the emulator runs the runner for it


def _ok(result: Any) -> dict[str, Any]:
    assert result.code == 0, result
    assert result.json is not None and result.json["status"] == "succeeded", result
    return result.json


def _blob(azurite: Any, container: str, name: str) -> bytes:
    return bytes(azurite.service().get_blob_client(container, name).download_blob().readall())


def _exists(azurite: Any, container: str, name: str) -> bool:
    return bool(azurite.service().get_blob_client(container, name).exists())


def _rows_job(make_job: Any, job_dir: Path, azurite: Any, container: str, scorer: str,
              rows: int, **keys: Any) -> Path:
    data = b"".join(json.dumps({"id": i}).encode() + b"\n" for i in range(rows))
    azurite.service().get_blob_client(container, "in/rows.jsonl").upload_blob(data, overwrite=True)
    return make_job(job_dir, **{"name": "pull", "runtime": "command", "scorer": scorer,
                                "format": "jsonl", "input": f"az://{container}/in/rows.jsonl",
                                "output": f"az://{container}/out/rows.txt",
                                "backend": "aci", "image": IMAGE, **keys})


def _attempts(azurite: Any, container: str, prefix: str) -> dict[str, set[int]]:
    """Task -> the attempts that were claimed, from the work folder's listing."""
    found: dict[str, set[int]] = {}
    client = azurite.service().get_container_client(container)
    for blob in client.list_blobs(name_starts_with=prefix):
        parts = blob.name.split("/")
        if parts[-1] == "claim.json":
            found.setdefault(parts[-3], set()).add(int(parts[-2].removeprefix("attempt-")))
    return found


@pytest.mark.parametrize("tasks", [
    160,
    # the size: minutes on 2 cores (each task is a few store requests through the
    # SDK, on Azurite), so it runs under `make test-scale`
    pytest.param(1000, marks=pytest.mark.scale),
])
def test_a_big_job_runs_on_a_fleet_of_groups_within_acis_limits(
        tasks, job_dir, make_job, aci_env, aci_emulator, azurite, container, cli) -> None:
    """Hundreds of shards with max_parallel = 20, under ACI's real create windows and a quota
    of 25 groups: at most 20 groups are created (plus one per group that failed), every task
    runs exactly once, and ARM sees creates, deletes and log reads per group, not per task."""
    aci_emulator.set_rate_limits(creates=[(100, 300), (300, 3600)],
                                 deletes=[(100, 300), (300, 3600)])
    aci_emulator.set_quota(container_groups=25, standard_cores=25)
    job = make_job(job_dir, name="wide", runtime="command", scorer='echo "shard $SHARD_INDEX"',
                   shards=tasks, max_parallel=20, backend="aci", image=IMAGE,
                   output=f"az://{container}/out/shards.txt", timeout="5m")
    result = _ok(cli("run", job, "--json", "-q", timeout=900))
    assert result["tasks"] == tasks
    lines = _blob(azurite, container, "out/shards.txt").decode().splitlines()
    assert lines == [f"shard {i}" for i in range(tasks)]  # each exactly once, in order
    claimed = _attempts(azurite, container, "out/shards.txt.work/tasks/")
    retried = {t for t, a in claimed.items() if a != {1}}
    assert len(claimed) == tasks and set(result["retried_tasks"]) == retried
    calls = aci_emulator.group_calls()
    creates = sum(c[("PUT", "group")] for c in calls.values())
    failed_groups = sum(1 for g in result["usage"]["per_group"] if g["outcome"] == "failed")
    assert len(calls) <= 20 + failed_groups and creates == len(calls), calls
    answers = aci_emulator.answers
    assert answers[("PUT", "group", 429)] == 0 and answers[("PUT", "group", 409)] == 0
    for name, counts in calls.items():
        assert counts[("DELETE", "group")] >= 1, name
        assert counts[("GET", "logs")] <= 1, name  # read once, before the delete
    # A group's state polls grow with the job's duration, not with its tasks: an interval that
    # grows with the group's age (1.25x, at most 30 s; backends/aci/polling.py) allows about
    # log(T / 2) / log(1.25) + T / 30 GETs over T seconds, however many tasks it ran.
    run_s = result["timings"]["run_s"]
    bound = math.log(max(run_s, 2.0) / 2) / math.log(1.25) + run_s / 30 + 5
    for name, counts in calls.items():
        assert counts[("GET", "group")] <= bound, (name, counts, run_s)
    assert aci_emulator.group_names() == [] and aci_emulator.live_pids() == []


def test_a_group_killed_mid_task_loses_only_its_claim(job_dir, make_job, aci_env, aci_emulator,
                                                       azurite, container, cli, procs) -> None:
    scorer = ('if [ "$TASK_ID" = t00005 ] && [ "$ATTEMPT" = 1 ]; then sleep 120; fi; cat')
    job = _rows_job(make_job, job_dir, azurite, container, scorer, rows=40, chunks=12,
                    max_parallel=3, straggler_factor=0, retries=2, timeout="5m")
    controller = procs.start("run", job, "--json", "-q")
    claim = "out/rows.txt.work/tasks/t00005/attempt-1/claim.json"
    assert wait_for(lambda: _exists(azurite, container, claim), timeout=90), "never claimed"
    holder = json.loads(_blob(azurite, container, claim))["group"]
    aci_emulator.group(holder).containers[0].handle.kill()  # the container dies mid-task
    out, err = controller.communicate(timeout=180)
    assert controller.returncode == 0, err
    result = json.loads(out)
    assert result["retried_tasks"] == ["t00005"]
    claimed = _attempts(azurite, container, "out/rows.txt.work/tasks/")
    assert claimed.pop("t00005") == {1, 2}
    assert all(a == {1} for a in claimed.values())  # nobody else lost anything
    lines = _blob(azurite, container, "out/rows.txt").decode().splitlines()
    assert [json.loads(line)["id"] for line in lines] == list(range(40))
    assert aci_emulator.group_names() == [] and aci_emulator.live_pids() == []


def test_a_task_made_far_slower_gets_a_second_attempt_that_wins(
        job_dir, make_job, aci_env, aci_emulator, azurite, container, cli) -> None:
    """Attempt 1 of t00005 is made slow (a noisy neighbour): once nothing else waits, a free
    group runs attempt 2, which finishes first; attempt 1's group is stopped and its part never
    used. The output is the same as without the slow attempt."""
    scorer = ('if [ "$TASK_ID" = t00005 ] && [ "$ATTEMPT" = 1 ]; then sleep 120; fi; cat')
    job = _rows_job(make_job, job_dir, azurite, container, scorer, rows=40, chunks=12,
                    max_parallel=3, retries=2, timeout="5m")
    result = _ok(cli("run", job, "--json", "-q"))
    assert result["retried_tasks"] == ["t00005"]
    status = json.loads(_blob(azurite, container,
                              "out/rows.txt.work/tasks/t00005/attempt-2/status.json"))
    assert status["outcome"] == "succeeded"
    loser = json.loads(_blob(azurite, container,
                             "out/rows.txt.work/tasks/t00005/attempt-1/status.json"))
    assert loser["outcome"] == "failed" and "attempt 2 of t00005 finished first" in loser["reason"]
    outcomes = [g["outcome"] for g in result["usage"]["per_group"]]
    assert "superseded" in outcomes, outcomes
    lines = _blob(azurite, container, "out/rows.txt").decode().splitlines()
    assert [json.loads(line)["id"] for line in lines] == list(range(40))
    assert aci_emulator.group_names() == [] and aci_emulator.live_pids() == []
