"""Whole jobs through ``backend = "aci"``: the CLI as a user runs it, the local ACI emulator as
Azure (each container a local process running the runner), model/input/output in Azurite. The
Python and R examples give byte for byte the local backend's output; a failing chunk, an
inaccessible image and a 429 storm end as they should; Ctrl-C and SIGTERM mid-job leave no
container group behind."""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from retail_api import RetailApi, recorded_items, serve

pytestmark = [pytest.mark.slow, pytest.mark.azurite, pytest.mark.aci]
ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
IMAGE = "myreg.azurecr.io/serverless-score-python:test"  # the emulator runs the runner for it


def _blob(azurite: Any, container: str, name: str) -> bytes:
    return bytes(azurite.service().get_blob_client(container, name).download_blob().readall())


def _upload(azurite: Any, container: str, name: str, data: bytes) -> str:
    azurite.service().get_blob_client(container, name).upload_blob(data, overwrite=True)
    return f"az://{container}/{name}"


def _ok(result: Any) -> dict[str, Any]:
    assert result.code == 0, result
    assert result.json is not None and result.json["status"] == "succeeded", result
    return result.json


def _aci_sets(**values: Any) -> list[str]:
    out = []
    for key, value in {"backend": "aci", "image": IMAGE, **values}.items():
        out += ["--set", f"{key}={json.dumps(value)}"]
    return out


@pytest.fixture(scope="module")
def churn_example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("python-churn")
    for name in ("job.toml", "prepare.py"):
        shutil.copy(ROOT / "examples" / "python-churn" / name, folder / name)
    subprocess.run([PY, str(folder / "prepare.py"), "--rows", "4000"], check=True,
                   capture_output=True, timeout=300)
    return folder


@pytest.fixture(scope="module")
def glm_example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("Rscript") is None:
        pytest.skip("R is not installed (make test installs it: scripts/install-r.sh)")
    folder = tmp_path_factory.mktemp("r-glm")
    for name in ("job.toml", "prepare.R", "score.R"):
        shutil.copy(ROOT / "examples" / "r-glm" / name, folder / name)
    subprocess.run(["Rscript", str(folder / "prepare.R"), "3000"], check=True,
                   capture_output=True, timeout=300)
    return folder


def test_python_churn_through_aci_equals_the_local_run(churn_example, aci_env, aci_emulator,
                                                      azurite, container, cli) -> None:
    job = churn_example / "job.toml"
    local = _ok(cli("run", job, "--json", "-q", "--set", "chunks=3",
                    "--set", 'output="out/local.csv"'))
    model = _upload(azurite, container, "models/churn.joblib",
                    (churn_example / "model" / "churn.joblib").read_bytes())
    data = _upload(azurite, container, "in/customers.csv",
                   (churn_example / "data" / "customers.csv").read_bytes())
    result = _ok(cli("run", job, "--json", "-q", *_aci_sets(
        model=model, input=data, output=f"az://{container}/scores/churn.csv", chunks=3)))
    expected = (churn_example / "out" / "local.csv").read_bytes()
    assert result["rows_out"] == local["rows_out"] == 4000 and result["tasks"] == 3
    assert _blob(azurite, container, "scores/churn.csv") == expected
    manifest = json.loads(_blob(azurite, container, "scores/churn.csv.manifest.json"))
    assert manifest["backend"] == "aci" and manifest["storage"]["worker_access"] == "sas"
    usage = manifest["usage"]  # billed seconds from ACI's instance view: pull start to finish
    assert usage["groups"] == 2 and usage["billed"] and usage["vcpu_seconds"] > 0
    assert {g["measured_by"] for g in usage["per_group"]} == {"backend"}
    log = _blob(azurite, container, "scores/churn.csv.work/tasks/t00001/attempt-1/log.txt").decode()
    assert "runner: task t00001 succeeded" in log  # the runner stored the task's own log
    assert aci_emulator.group_names() == []  # every group deleted
    puts = aci_emulator.calls[("PUT", "group")]
    assert puts == 2  # max_parallel = 2: two groups, the 3 tasks packed into them
    assert aci_emulator.calls[("GET", "logs")] == puts and aci_emulator.calls[("DELETE", "group")] == puts


def test_r_glm_with_its_score_script_through_aci_equals_the_local_run(
        glm_example, aci_env, aci_emulator, azurite, container, cli) -> None:
    job = glm_example / "job.toml"
    _ok(cli("run", job, "--json", "-q", "--set", 'output="out/local.csv"'))
    model = _upload(azurite, container, "models/default-glm.rds",
                    (glm_example / "model" / "default-glm.rds").read_bytes())
    data = _upload(azurite, container, "in/loans.csv", (glm_example / "data" / "loans.csv").read_bytes())
    result = _ok(cli("run", job, "--json", "-q", *_aci_sets(
        image="myreg.azurecr.io/serverless-score-r:test", model=model, input=data,
        output=f"az://{container}/scores/loans.csv")))
    assert result["rows_out"] == 3000
    assert _blob(azurite, container, "scores/loans.csv") == (glm_example / "out" / "local.csv").read_bytes()
    # the local score.R reached the containers as a blob beside the output, by content hash
    sha = hashlib.sha256((glm_example / "score.R").read_bytes()).hexdigest()[:16]
    assert _blob(azurite, container, f"scores/loans.csv.work/scorer/{sha}/score.R") == \
        (glm_example / "score.R").read_bytes()
    assert aci_emulator.group_names() == []


def test_local_paths_are_refused_before_anything_is_created(churn_example, aci_env, aci_emulator,
                                                            cli) -> None:
    result = cli("run", churn_example / "job.toml", "--json", "-q", *_aci_sets())
    assert result.code == 2, result
    assert "a container on Azure cannot read this machine's files" in result.flat_stderr
    assert aci_emulator.calls[("PUT", "group")] == 0


def _command_job(make_job: Any, job_dir: Path, azurite: Any, container: str, scorer: str,
                 **keys: Any) -> Path:
    rows = b"".join(json.dumps({"id": i}).encode() + b"\n" for i in range(40))
    data = _upload(azurite, container, "in/rows.jsonl", rows)
    return make_job(job_dir, **{"name": "cmd", "runtime": "command", "scorer": scorer,
                                "format": "jsonl", "input": data,
                                "output": f"az://{container}/out/rows.txt", "chunks": 4,
                                "backend": "aci", "image": IMAGE, **keys})


def test_a_failing_chunk_fails_the_job_naming_it_and_leaves_no_group(
        job_dir, make_job, aci_env, aci_emulator, azurite, container, cli) -> None:
    scorer = 'if [ "$TASK_INDEX" = 2 ]; then echo "bad chunk $TASK_ID" >&2; exit 7; fi; cat'
    job = _command_job(make_job, job_dir, azurite, container, scorer, retries=1)
    result = cli("run", job, "--json", "-q")
    assert result.code == 1, result
    assert result.json is not None and result.json["error"]["task_id"] == "t00002"
    assert "after 2 attempts" in result.json["error"]["message"]
    assert "bad chunk t00002" in result.json["error"]["log_tail"]
    assert aci_emulator.group_names() == []


def test_an_inaccessible_image_fails_with_what_to_check(job_dir, make_job, aci_env, aci_emulator,
                                                         azurite, container, cli) -> None:
    aci_emulator.inaccessible_image("*serverless-score*", at="pull")
    job = _command_job(make_job, job_dir, azurite, container, "cat", retries=2)
    result = cli("run", job, "--json", "-q")
    assert result.code == 1, result
    message = result.json["error"]["message"] if result.json else ""
    assert f"could not pull its image {IMAGE!r}" in message and "AcrPull" in message
    # the image stays unreachable until the user acts: its retries are not spent on it
    assert "not retried" in message
    assert aci_emulator.calls[("PUT", "group")] <= 2  # the two groups of the first wave only
    assert aci_emulator.group_names() == []


def test_a_429_storm_is_waited_out(job_dir, make_job, aci_env, aci_emulator, azurite, container,
                                   cli) -> None:
    aci_emulator.throttle(times=4, retry_after=1)  # creates
    aci_emulator.throttle(times=3, retry_after=1, method="GET", kind="group")  # polls
    aci_emulator.throttle(times=2, retry_after=1, method="DELETE", kind="group")
    job = _command_job(make_job, job_dir, azurite, container, "cat")
    result = _ok(cli("run", job, "--json", "-q"))
    assert result["tasks"] == 4 and result["rows_out"] == 40
    assert aci_emulator.group_names() == []


@pytest.mark.parametrize("told", [True, False], ids=["paced", "not-told-the-windows"])
def test_a_wide_job_keeps_inside_acis_create_and_delete_windows(
        told, job_dir, make_job, aci_env, aci_emulator, azurite, container, cli) -> None:
    """ACI's windows scaled down: the emulator allows 5 creates and 5 deletes per 2 s. A job
    wanting 8 groups at once, told the same windows, is never refused: its pacer held the last
    creates back. Told ACI's real windows instead, the same job is refused (and still finishes,
    waiting out the Retry-After), so it is the pacer that keeps it inside."""
    aci_emulator.set_rate_limits(creates=[(5, 2.0)], deletes=[(5, 2.0)])
    rates = {"create_rate": [[5, 2]], "delete_rate": [[5, 2]]} if told else {}
    # Each task holds its group a while: every group gets a task of its own (groups pull, so
    # quick tasks would be done by the first groups before the last were needed).
    job = _command_job(make_job, job_dir, azurite, container, "sleep 5; cat", chunks=8,
                       max_parallel=8, azure=rates or None)
    result = _ok(cli("run", job, "--json", "-q"))
    assert result["tasks"] == 8 and result["rows_out"] == 40
    created = [n for n, c in aci_emulator.group_calls().items() if c[("PUT", "group")]]
    answers = aci_emulator.answers
    assert len(created) == 8 and answers[("PUT", "group", 201)] == 8  # 8 groups, all at once
    assert answers[("DELETE", "group", 200)] == 8 and aci_emulator.group_names() == []
    if told:
        assert answers[("PUT", "group", 429)] == 0 and answers[("DELETE", "group", 429)] == 0
    else:
        assert answers[("PUT", "group", 429)] >= 1


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupting_the_controller_deletes_every_group(sig, job_dir, make_job, aci_env,
                                                         aci_emulator, azurite, container,
                                                         procs) -> None:
    job = _command_job(make_job, job_dir, azurite, container, "sleep 60; cat", timeout="5m")
    controller = procs.start("run", job, "--json", "-q")
    running = procs.wait_for(lambda: len(aci_emulator.group_names()) == 2, timeout=60)
    assert running, "the groups never started"
    controller.send_signal(sig)
    _out, err = controller.communicate(timeout=60)
    assert controller.returncode == 130, err
    assert aci_emulator.group_names() == []
    assert aci_emulator.live_pids() == []


def test_a_hung_container_times_out_and_its_group_is_deleted(job_dir, make_job, aci_env,
                                                              aci_emulator, azurite, container,
                                                              cli) -> None:
    aci_emulator.hang("*serverless-score*")
    job = _command_job(make_job, job_dir, azurite, container, "cat", timeout="4s", retries=0)
    result = cli("run", job, "--json", "-q")
    assert result.code == 1, result
    assert result.json is not None and "timed out after 4s" in result.json["error"]["message"]
    assert aci_emulator.group_names() == [] and aci_emulator.live_pids() == []


def test_status_logs_and_cleanup_of_an_aci_job_whose_controller_died(
        job_dir, make_job, aci_env, aci_emulator, azurite, container, cli, procs) -> None:
    scorer = 'echo "working on $TASK_ID" >&2; sleep 60; cat'
    job = _command_job(make_job, job_dir, azurite, container, scorer, timeout="5m")
    controller = procs.start("run", job, "--json", "-q")
    assert procs.wait_for(lambda: len(aci_emulator.group_names()) == 2, timeout=60)
    running = procs.wait_for(lambda: (r := cli("status", job, "--json")).json
                             and r.json["state"] == "running" and r, timeout=30)
    assert running, "status never saw the job running"
    job_id = running.json["job_id"]
    assert sorted(running.json["live_groups"]) == aci_emulator.group_names()
    assert {t["state"] for t in running.json["tasks"]} <= {"running", "queued"}
    live = procs.wait_for(lambda: "working on t00000" in (r := cli("logs", job, "--task", "0")).stdout and r,
                          timeout=30)
    assert live, "the live log of task 0 never showed"
    controller.kill()  # kill -9: nobody deletes the groups
    controller.communicate(timeout=30)
    assert len(aci_emulator.group_names()) == 2
    dry = cli("cleanup", "--job", job_id, "--backend", "aci", "--dry-run", "--json")
    assert dry.code == 0 and len(dry.json["groups"]) == 2 and len(aci_emulator.group_names()) == 2
    done = cli("cleanup", "--job", job_id, "--backend", "aci", "--json")
    assert done.code == 0, done
    assert sorted(g["name"] for g in done.json["groups"]) == sorted(
        g["name"] for g in dry.json["groups"])
    assert aci_emulator.group_names() == [] and aci_emulator.live_pids() == []
    after = cli("status", job, "--json")
    assert after.json is not None and after.json["live_groups"] == [], after
    assert after.json["state"] != "running"


def test_csv_field_spanning_many_tasks_through_aci(job_dir, make_job, aci_env, aci_emulator,
                                                   azurite, container, cli) -> None:
    """The issue's file (shrunk) through container groups: the repairs of the tasks inside the
    long quoted field are groups of their own, and no retry is spent."""
    from test_long_fields import TABLE_SCORER, expected_csv, reported_csv, unquote

    data = reported_csv(reps=1500, roleless=4000, newline="\r\n")
    (job_dir / "scorer.py").write_text(TABLE_SCORER)
    job = make_job(job_dir, name="long-aci", scorer="scorer.py", id_columns=["id"], chunks=7,
                   model=_upload(azurite, container, "models/unused.bin", b"unused"),
                   input=_upload(azurite, container, "in/long.csv", data),
                   output=f"az://{container}/out/long.csv")
    result = _ok(cli("run", job, "--json", "-q", *_aci_sets()))
    assert result["rows_out"] == 300
    assert result["repaired_boundaries"] > 0
    lines = _blob(azurite, container, "out/long.csv").decode().splitlines()
    assert unquote(lines[1:]) == expected_csv(data)
    assert aci_emulator.group_names() == []


def test_a_spot_eviction_reruns_its_tasks_without_spending_retries(
        job_dir, make_job, aci_env, aci_emulator, azurite, container, procs,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`[azure] priority = "Spot"`: the groups are PUT as Spot; one evicted mid-task (the
    emulator kills and restarts it, as ACI documents) is deleted and its task runs again in a
    new group, with retries = 0: the job succeeds, and its manifest counts the eviction and
    prices the run at the Spot price the (local) Retail Prices API gave."""
    scorer = 'echo "working on $TASK_ID" >&2; sleep 4; cat'
    job = _command_job(make_job, job_dir, azurite, container, scorer, retries=0,
                       timeout="2m", chunks=2, azure={"priority": "Spot"})
    with serve(RetailApi(recorded_items())) as api:
        monkeypatch.setenv("SERVERLESS_SCORE_RETAIL_PRICES_URL", api.url)
        controller = procs.start("run", job, "--json", "-q")
        _run_and_evict(controller, aci_emulator, procs)
        out, err = controller.communicate(timeout=120)
    assert controller.returncode == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["status"] == "succeeded" and result["rows_out"] == 40
    assert result["usage"]["evictions"] == 1
    manifest = json.loads(_blob(azurite, container, "out/rows.txt.manifest.json"))
    assert manifest["usage"]["evictions"] == 1
    outcomes = {g["name"]: g["outcome"] for g in manifest["usage"]["per_group"]}
    assert list(outcomes.values()).count("evicted") == 1
    price = manifest["usage"]["price"]
    assert price["priority"] == "Spot" and price["vcpu_second"] == pytest.approx(0.015 / 3600)
    assert manifest["usage"]["cost"] > 0
    assert aci_emulator.group_names() == [] and aci_emulator.live_pids() == []


def _run_and_evict(controller: Any, aci_emulator: Any, procs: Any) -> None:

    def running_group() -> str | None:
        for name in aci_emulator.group_names():
            c = aci_emulator.group(name).containers[0]
            if c.current.get("state") == "Running":
                return name
        return None

    victim = procs.wait_for(running_group, timeout=60)
    assert victim, "no Spot group ever ran"
    assert aci_emulator.group(victim).body["properties"]["priority"] == "Spot"
    aci_emulator.evict(victim)


def _evict_attempt(aci_emulator: Any, azurite: Any, container: str, procs: Any,
                   task: str, attempt: int) -> str:
    """Evict the Spot group that claimed ``attempt`` of ``task``, while it runs it (the scorer
    sleeps through such attempts); returns the group's name."""
    claim = f"out/rows.txt.work/tasks/{task}/attempt-{attempt}/claim.json"

    def claimed_by() -> str | None:
        try:
            group = str(json.loads(_blob(azurite, container, claim))["group"])
        except Exception:  # not claimed yet
            return None
        return group if group in aci_emulator.group_names() else None

    victim = procs.wait_for(claimed_by, timeout=60)
    assert victim, f"attempt {attempt} of {task} was never claimed by a live group"
    assert aci_emulator.group(victim).body["properties"]["priority"] == "Spot"
    aci_emulator.evict(victim)
    return victim


def test_a_task_evicted_max_evictions_times_succeeds_without_spending_a_retry(
        job_dir, make_job, aci_env, aci_emulator, azurite, container, procs, cli) -> None:
    """`[azure] max_evictions = 2`, retries = 0: the one task's groups are evicted under its
    first two attempts; both reruns are free, so the third attempt succeeds, and the manifest's
    task line and `status` count the task's two evictions."""
    scorer = 'if [ "$ATTEMPT" -le 2 ]; then sleep 60; fi; cat'
    job = _command_job(make_job, job_dir, azurite, container, scorer, retries=0,
                       timeout="2m", chunks=1, azure={"priority": "Spot", "max_evictions": 2})
    controller = procs.start("run", job, "--json", "-q")
    evicted = [_evict_attempt(aci_emulator, azurite, container, procs, "t00000", n)
               for n in (1, 2)]
    out, err = controller.communicate(timeout=120)
    assert controller.returncode == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["status"] == "succeeded" and result["rows_out"] == 40
    assert result["usage"]["evictions"] == 2 and result["retried_tasks"] == ["t00000"]
    manifest = json.loads(_blob(azurite, container, "out/rows.txt.manifest.json"))
    outcomes = {g["name"]: g["outcome"] for g in manifest["usage"]["per_group"]}
    assert [outcomes[name] for name in evicted] == ["evicted", "evicted"]
    line = json.loads(_blob(azurite, container, "out/rows.txt.manifest.tasks.jsonl"))
    assert (line["id"], line["attempts"], line["evictions"]) == ("t00000", 3, 2)
    status = cli("status", job, "--json")
    assert status.json is not None and status.json["state"] == "succeeded", status
    assert [(t["id"], t["evictions"]) for t in status.json["tasks"]] == [("t00000", 2)]
    assert aci_emulator.group_names() == [] and aci_emulator.live_pids() == []


def test_a_task_evicted_past_max_evictions_and_its_retries_fails_the_job_saying_what_to_do(
        job_dir, make_job, aci_env, aci_emulator, azurite, container, procs, cli) -> None:
    """`[azure] max_evictions = 1`, retries = 1: the first eviction is free, the second spends
    the retry, the third fails the job with a TaskFailed naming the task, its evictions, the
    region and the fix; no group is left and no output written."""
    scorer = 'sleep 60; cat'  # every attempt runs until its group is evicted
    job = _command_job(make_job, job_dir, azurite, container, scorer, retries=1,
                       timeout="2m", chunks=1, azure={"priority": "Spot", "max_evictions": 1})
    controller = procs.start("run", job, "--json", "-q")
    for n in (1, 2, 3):
        _evict_attempt(aci_emulator, azurite, container, procs, "t00000", n)
    out, err = controller.communicate(timeout=120)
    assert controller.returncode == 1, err
    error = json.loads(out.strip().splitlines()[-1])["error"]
    assert error["type"] == "TaskFailed" and error["task_id"] == "t00000"
    region = aci_env["SERVERLESS_SCORE_AZURE_LOCATION"]
    assert "failed after 3 attempts" in error["message"]
    assert f"evicted 3 times in region {region}" in error["message"]
    assert "[azure] max_evictions = 1" in error["message"] and "retries = 1" in error["message"]
    assert 'priority = "Regular"' in error["hint"] and "raise [azure] max_evictions or retries" \
        in error["hint"]
    assert aci_emulator.group_names() == [] and aci_emulator.live_pids() == []
    names = [b.name for b in azurite.service().get_container_client(container).list_blobs()]
    assert "out/rows.txt" not in names and "out/rows.txt.manifest.json" not in names
    assert not any(n.startswith("out/rows.txt.part") or n.endswith(".tmp") for n in names), names
    status = cli("status", job, "--json")
    assert status.json is not None and status.json["state"] == "failed", status
    [task] = status.json["tasks"]
    assert (task["state"], task["attempts"], task["evictions"]) == ("failed", 3, 3)
    assert "was evicted" in task["reason"]
