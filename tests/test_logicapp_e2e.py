"""The Logic App templates, executed: rendered for a job, deployed (ARM expressions evaluated),
then run by the workflow interpreter against the local ACI emulator (real HTTPS, its managed-
identity endpoint) with data in Azurite. The controller the workflow starts is the real one (the
runner in controller role), which fans out on the same emulator through the ACI backend."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from logicapp.arm import ArmContext, deploy
from logicapp.engine import RunResult, Workflow
from logicapp.frontend import serving
from logicapp.http import ManagedIdentity
from logicapp.validate import container_group_errors

from serverless_score.backends.base import GroupInfo
from serverless_score.controller.cleanup import expires_at
from serverless_score.templates import Options, read_job, render

pytestmark = [pytest.mark.slow, pytest.mark.aci, pytest.mark.azurite]
ROOT = Path(__file__).resolve().parents[1]
IMAGE = "serverless-score-python:test"  # the emulator runs this checkout's runner for it
# Doubles the first field of each record: quick, and the expected output is easy to state.
SCORER = "awk -F, 'NR>1 {print $1 \",\" $2*2}'"


@pytest.fixture
def emu(aci_emulator: Any, blob_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """The emulator, reachable from this process (the interpreter) and from its containers: the
    controller gets what a managed identity and the storage account would give it in Azure."""
    for name in aci_emulator.CREDENTIAL_VARS:
        monkeypatch.delenv(name, raising=False)
    for name, value in aci_emulator.env().items():
        monkeypatch.setenv(name, value)
    aci_emulator.engine.settings.extra_env.update({**aci_emulator.env(), **blob_env})
    return aci_emulator


def identity_of(emu: Any) -> str:
    return (f"/subscriptions/{emu.subscription_id}/resourceGroups/{emu.resource_group}/providers/"
            "Microsoft.ManagedIdentity/userAssignedIdentities/scoring")


def write_input(azurite: Any, container: str, name: str, rows: int = 40) -> bytes:
    data = "x,y\n" + "".join(f"r{i},{i}\n" for i in range(rows))
    azurite.service().get_blob_client(container, name).upload_blob(data.encode(), overwrite=True)
    return data.encode()


def expected_scores(rows: int = 40) -> bytes:
    return "".join(f"r{i},{i * 2}\n" for i in range(rows)).encode()


def deployed(job: Path, emu: Any, trigger: str, **options: Any) -> Workflow:
    raw = read_job(job, [])
    settings = {"arm_endpoint": emu.base_url, "poll_seconds": 1, "timeout": "PT2M", **options}
    template, parameters = render(raw, trigger, Options(**settings))  # type: ignore[arg-type]
    values = {name: spec["value"] for name, spec in parameters["parameters"].items()}
    identity = values["identity"]
    context = ArmContext(subscription_id=emu.subscription_id, resource_group=emu.resource_group,
                         location=emu.location,
                         references={identity: {"clientId": "emu-client-id",
                                                "principalId": "emu-principal-id"}})
    resource = deploy(template, values, context).resource("Microsoft.Logic/workflows")
    assert resource["identity"]["userAssignedIdentities"] == {identity: {}}
    return Workflow(resource["properties"]["definition"], name=resource["name"],
                    msi=ManagedIdentity(emu.identity_endpoint, emu.identity_header))


def job_file(job_dir: Path, make_job: Any, emu: Any, container: str, **keys: Any) -> Path:
    settings = {"name": "lapp", "runtime": "command", "scorer": SCORER, "format": "csv",
                "input": f"az://{container}/in/{{date}}/data.csv",
                "output": f"az://{container}/out/{{date}}/scores.csv",
                "chunks": 3, "max_parallel": 3, "image": IMAGE,
                "azure": {"identity": identity_of(emu)}, **keys}
    return make_job(job_dir, **settings)


def blob(azurite: Any, container: str, name: str) -> bytes:
    return bytes(azurite.service().get_blob_client(container, name).download_blob().readall())


def assert_all_deleted(emu: Any) -> None:
    assert emu.group_names() == []  # the controller's group and every worker group
    deadline = time.monotonic() + 10
    while emu.live_pids() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert emu.live_pids() == []


def statuses(result: RunResult) -> dict[str, str]:
    return dict(result.history)


def test_timer_template_scores_the_day_and_deletes_the_group(
        emu, azurite, container, job_dir, make_job) -> None:
    today = time.strftime("%Y-%m-%d", time.gmtime())
    write_input(azurite, container, f"in/{today}/data.csv")
    workflow = deployed(job_file(job_dir, make_job, emu, container), emu, "timer")
    result = workflow.run()
    assert result.status == "Succeeded", (result.error, result.history)
    assert blob(azurite, container, f"out/{today}/scores.csv") == expected_scores()
    steps = statuses(result)
    assert steps["Create_group"] == steps["Delete_group"] == steps["Wait_for_group"] == "Succeeded"
    assert result.actions["Read_result"].outputs["body"]["value"]["status"] == "succeeded"
    # The PUT the workflow sent is a valid container group (the published ARM schema).
    body = result.actions["Create_group"].inputs["body"]
    assert container_group_errors(body) == []
    env = {e["name"]: e["value"] for e in body["properties"]["containers"][0]["properties"][
        "environmentVariables"]}
    assert env["SERVERLESS_SCORE_ROLE"] == "controller" and env["SERVERLESS_SCORE_DATE"] == today
    assert all(env.values())  # ACI has refused environment variables without a value
    # Found by `cleanup --expired` if the Logic App itself vanished: job and expires tags.
    tags = GroupInfo("g", body["tags"]["job"], body["tags"])
    assert tags.job_id == f"logic-app-{result.run_id}"
    expires = expires_at(tags)
    assert expires is not None
    assert 120 + 500 < (expires - datetime.now(UTC)).total_seconds() < 120 + 700  # PT2M + 10 min
    assert json.loads(env["SERVERLESS_SCORE_JOB"])["name"] == "lapp"
    assert not any("secureValue" in e for e in body["properties"]["containers"][0]["properties"][
        "environmentVariables"])
    assert_all_deleted(emu)


def test_a_failing_job_fails_the_run_and_still_deletes_the_group(
        emu, azurite, container, job_dir, make_job) -> None:
    today = time.strftime("%Y-%m-%d", time.gmtime())
    write_input(azurite, container, f"in/{today}/data.csv")
    job = job_file(job_dir, make_job, emu, container, scorer="sh -c 'echo boom >&2; exit 3'")
    result = deployed(job, emu, "timer").run()
    assert result.status == "Failed"
    assert result.error and result.error["code"] == "ScoringJobFailed"
    assert "failed" in result.error["message"]  # the controller's own message, read from its logs
    steps = statuses(result)
    assert steps["Delete_group"] == "Succeeded" and steps["Fail_run"] == "Succeeded"
    assert_all_deleted(emu)


def test_a_hung_controller_hits_the_until_timeout_and_is_deleted(
        emu, azurite, container, job_dir, make_job) -> None:
    emu.hang("*serverless-score*")
    started = time.monotonic()
    result = deployed(job_file(job_dir, make_job, emu, container), emu, "timer",
                      timeout="PT4S").run()
    assert result.actions["Wait_for_group"].status == "TimedOut"
    assert statuses(result)["Delete_group"] == "Succeeded"
    assert result.status == "Failed"
    assert "did not finish in time or could not start (state Running" in result.error["message"]
    assert time.monotonic() - started < 30
    assert_all_deleted(emu)


def test_failed_provisioning_ends_the_loop_at_once_and_is_deleted(
        emu, azurite, container, job_dir, make_job) -> None:
    emu.fail_provisioning("*serverless-score*")
    result = deployed(job_file(job_dir, make_job, emu, container), emu, "timer").run()
    assert result.status == "Failed"
    assert result.actions["Wait_for_group"].iterations <= 3  # no spinning to the timeout
    assert statuses(result)["Delete_group"] == "Succeeded"
    assert_all_deleted(emu)


def test_a_refused_create_still_runs_the_delete_and_fails(
        emu, azurite, container, job_dir, make_job) -> None:
    emu.inaccessible_image("*serverless-score*", at="create")
    result = deployed(job_file(job_dir, make_job, emu, container), emu, "timer").run()
    steps = statuses(result)
    assert steps["Create_group"] == "Failed" and steps["Wait_for_group"] == "Skipped"
    assert steps["Delete_group"] == "Succeeded" and result.status == "Failed"
    assert_all_deleted(emu)


def call(url: str, body: dict[str, Any], timeout: float = 120) -> requests.Response:
    """What a client does with the asynchronous Response: POST, then poll Location."""
    reply = requests.post(url, json=body, timeout=10)
    deadline = time.monotonic() + timeout
    while reply.status_code == 202 and time.monotonic() < deadline:
        time.sleep(float(reply.headers.get("Retry-After", "1")))
        reply = requests.get(reply.headers["Location"], timeout=10)
    return reply


def test_http_template_takes_overrides_and_responds_with_status_job_id_and_output(
        emu, azurite, container, job_dir, make_job) -> None:
    write_input(azurite, container, "in/2026-11-01/data.csv", rows=25)
    workflow = deployed(job_file(job_dir, make_job, emu, container), emu, "http")
    with serving(workflow) as endpoint:
        reply = call(endpoint.url, {"date": "2026-11-01", "set": {"chunks": 2}})
        assert reply.status_code == 200, reply.text
        answer = reply.json()
        assert answer["status"] == "Succeeded" and answer["rowsOut"] == 25
        assert answer["output"] == f"az://{container}/out/2026-11-01/scores.csv"
        assert answer["manifest"].endswith("scores.csv.manifest.json") and answer["jobId"]
        assert blob(azurite, container, "out/2026-11-01/scores.csv") == expected_scores(25)
        [result] = endpoint.results()
        assert result.status == "Succeeded"
    assert_all_deleted(emu)


def test_http_template_reports_a_failed_job_with_500_and_the_reason(
        emu, azurite, container, job_dir, make_job) -> None:
    workflow = deployed(job_file(job_dir, make_job, emu, container), emu, "http")
    with serving(workflow) as endpoint:
        # An input that does not exist: the controller fails before fanning out.
        reply = call(endpoint.url, {"input": f"az://{container}/nothing/here.csv"})
        assert reply.status_code == 500
        answer = reply.json()
        assert answer["status"] == "Failed" and "nothing/here.csv" in answer["error"]
        assert answer["groupDeleted"] is True
        [result] = endpoint.results()
        assert result.status == "Failed"
    assert_all_deleted(emu)


def test_r_submit_http_runs_a_job_through_the_real_trigger(
        emu, azurite, container, job_dir, make_job, tmp_path) -> None:
    """serveRless::submit_http() against the interpreter's trigger endpoint running the rendered
    HTTP template: R -> workflow -> controller container -> worker containers -> Azurite."""
    rscript = shutil.which("Rscript")
    assert rscript, "R is not installed: run `make setup`"
    library = tmp_path / "rlib"
    library.mkdir()
    install = subprocess.run([str(Path(rscript).with_name("R")), "CMD", "INSTALL",
                              f"--library={library}", str(ROOT / "rstudio" / "serveRless")],
                             capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stdout + install.stderr
    write_input(azurite, container, "in/2026-11-02/data.csv", rows=30)
    workflow = deployed(job_file(job_dir, make_job, emu, container), emu, "http")
    with serving(workflow) as endpoint:
        code = (f'.libPaths(c("{library}", .libPaths())); library(serveRless)\n'
                f'r <- submit_http("{endpoint.url}?sig=SECRET", date = "2026-11-02", chunks = 2,'
                f' poll = 0.5, timeout = 120)\n'
                'print(r)\n'
                'cat("\\nRESULT", jsonlite::toJSON(unclass(r)[c("status", "job_id", "output", '
                '"rows_out")], auto_unbox = TRUE), "\\n")')
        proc = subprocess.run([rscript, "-e", code], capture_output=True, text=True, timeout=180)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        answer = json.loads(proc.stdout.split("RESULT", 1)[1])
        assert answer["status"] == "succeeded" and answer["rows_out"] == 30 and answer["job_id"]
        assert answer["output"] == f"az://{container}/out/2026-11-02/scores.csv"
        assert "SECRET" not in proc.stdout + proc.stderr
        assert [r.status for r in endpoint.results()] == ["Succeeded"]
    assert blob(azurite, container, "out/2026-11-02/scores.csv") == expected_scores(30)
    assert_all_deleted(emu)


def test_a_job_file_in_blob_storage_is_read_by_the_controller_at_run_time(
        emu, azurite, container, job_dir, make_job) -> None:
    today = time.strftime("%Y-%m-%d", time.gmtime())
    write_input(azurite, container, f"in/{today}/data.csv", rows=12)
    job = job_file(job_dir, make_job, emu, container)
    azurite.service().get_blob_client(container, "jobs/lapp.toml").upload_blob(job.read_bytes())
    workflow = deployed(job, emu, "timer", job_uri=f"az://{container}/jobs/lapp.toml")
    result = workflow.run()
    assert result.status == "Succeeded", (result.error, result.history)
    body = result.actions["Create_group"].inputs["body"]
    env = {e["name"]: e["value"] for e in body["properties"]["containers"][0]["properties"][
        "environmentVariables"]}
    assert "SERVERLESS_SCORE_JOB" not in env  # the job itself is not in the template
    assert env["SERVERLESS_SCORE_JOB_URI"] == f"az://{container}/jobs/lapp.toml"
    assert blob(azurite, container, f"out/{today}/scores.csv") == expected_scores(12)
    assert_all_deleted(emu)


def test_arm_throttling_of_the_create_is_retried_after_retry_after(
        emu, azurite, container, job_dir, make_job) -> None:
    today = time.strftime("%Y-%m-%d", time.gmtime())
    write_input(azurite, container, f"in/{today}/data.csv", rows=6)
    emu.throttle(1, retry_after=1, method="PUT", kind="group")  # the workflow's PUT comes first
    result = deployed(job_file(job_dir, make_job, emu, container), emu, "timer").run()
    assert result.status == "Succeeded", (result.error, result.history)
    puts = [r for r in emu.requests if r[1] == "PUT"]
    assert [r[4] for r in puts[:2]] == [429, 201]  # refused once, then created
    assert blob(azurite, container, f"out/{today}/scores.csv") == expected_scores(6)
    assert_all_deleted(emu)


def test_http_template_answers_409_while_another_controller_holds_the_job(
        emu, azurite, container, job_dir, make_job) -> None:
    """Another controller (here: this test process) holds the job's lease: the workflow's
    controller stops at once (exit 3, job-locked) and the request gets 409 with the job id and
    the holder; nothing is written and every group is deleted."""
    from serverless_score.storage import StoreConfig
    from serverless_score.storage.lease import get_lease

    write_input(azurite, container, "in/2026-11-01/data.csv", rows=10)
    output = f"az://{container}/out/2026-11-01/scores.csv"
    lease = get_lease(output, "held-elsewhere", StoreConfig.from_env(azurite.env()))
    lease.acquire()
    try:
        workflow = deployed(job_file(job_dir, make_job, emu, container), emu, "http")
        with serving(workflow) as endpoint:
            reply = call(endpoint.url, {"date": "2026-11-01"})
            assert reply.status_code == 409, reply.text
            answer = reply.json()
            assert answer["status"] == "Locked" and answer["jobId"].startswith("lapp-")
            assert answer["holder"]["pid"] == os.getpid() and answer["since"]
            assert "already running" in answer["error"]
            [result] = endpoint.results()
            assert result.status == "Failed" and result.error["code"] == "JobLocked"
    finally:
        lease.release()
    assert not azurite.service().get_container_client(container).get_blob_client(
        "out/2026-11-01/scores.csv").exists()
    assert_all_deleted(emu)
