"""End to end, with real worker processes: ``status`` and ``logs`` while a job runs and after,
``cleanup`` of the workers a SIGKILLed controller left, ``cleanup --expired``, the estimate in
``plan`` (and its price-table override), ``max_cost`` refusing before anything is created, and
the container seconds and cost in the manifest."""

from __future__ import annotations

import json
import os
import signal
import uuid
from pathlib import Path

import pytest
from manifests import manifest_tasks
from shelljobs import SCORE, write_rows

from serverless_score.backends import GroupSpec
from serverless_score.backends.local import LocalBackend
from serverless_score.backends.registry import BACKENDS
from serverless_score.runner.contract import ENV_GROUP, ENV_WORK

pytestmark = pytest.mark.slow


def job_id_of(output: Path) -> str:
    return json.loads(Path(f"{output}.work/job.json").read_text())["job_id"]


def test_status_logs_and_cleanup_around_a_killed_controller(job_dir, make_job, cli, procs,
                                                            tmp_path):
    keys = write_rows(job_dir / "data.csv", 40)
    gate = job_dir / "gate"
    gate.touch()
    # 4 tasks, one group pulling them in order; while `gate` exists t00002 hangs, so the group
    # stays live with t00003 queued behind it.
    command = (f'echo "scoring $TASK_ID attempt $ATTEMPT" >&2; '
               f'if [ "$TASK_INDEX" -eq 2 ] && [ -e {gate} ]; then sleep 60; fi; {SCORE}')
    job = make_job(job_dir, name="ops", input="data.csv", output="out/s.txt", runtime="command",
                   scorer=command, chunks=4, max_parallel=1)
    output = job_dir / "out" / "s.txt"
    controller = procs.start("run", job, "-q", cwd=job_dir)
    assert procs.wait_for(lambda: "sleep" in procs.names_of_job(_maybe_id(output)), timeout=60)
    job_id = job_id_of(output)
    procs.watch(job_id)
    assert procs.wait_for(
        lambda: (cli("status", job, "--json").json or {}).get("tasks_done") == 2, timeout=30)

    live = cli("status", job, "--json")
    assert live.code == 0, live
    status = live.json
    assert status["job_id"] == job_id and status["state"] == "running"
    states = {t["id"]: (t["state"], t["attempts"], t["rows"]) for t in status["tasks"]}
    assert states["t00000"][0] == states["t00001"][0] == "done"
    assert states["t00000"][2] > 0 and states["t00001"][2] > 0
    assert states["t00002"] == ("running", 1, None) and states["t00003"] == ("queued", 0, None)
    assert status["live_groups"] == [f"{job_id}-g001"]
    text = cli("status", output, cwd=tmp_path)  # by output path, from elsewhere
    assert text.code == 0, text
    assert "2/4 tasks done" in text.stdout and "running" in text.stdout

    running_log = cli("logs", output, "--task", "2")
    assert running_log.code == 0, running_log
    assert "scoring t00002 attempt 1" in running_log.stdout
    assert "live:" in running_log.stderr and "scoring t00001" not in running_log.stdout
    stored = cli("logs", f"{output}.manifest.json", "--task", "t00000")
    assert "scoring t00000 attempt 1" in stored.stdout and "attempt-1/log.txt" in stored.stderr

    os.kill(controller.pid, signal.SIGKILL)
    controller.wait(timeout=10)
    orphans = procs.of_job(job_id)
    assert orphans, "the workers of a SIGKILLed controller should still be running"
    dry = cli("cleanup", "--job", job_id, "--dry-run", cwd=tmp_path)
    assert dry.code == 0 and f"would delete {job_id}-g001" in dry.stdout, dry
    assert procs.of_job(job_id) == orphans

    # No job file, no state directory: the workers are found by their labels.
    cleaned = cli("cleanup", "--job", job_id, "--json", cwd=tmp_path)
    assert cleaned.code == 0, cleaned
    assert [g["name"] for g in cleaned.json["groups"]] == [f"{job_id}-g001"]
    assert all(g["deleted"] for g in cleaned.json["groups"])
    assert procs.wait_for(lambda: not procs.of_job(job_id), timeout=10), procs.of_job(job_id)
    after = cli("status", job, "--json").json
    assert after["state"] == "stopped" and after["live_groups"] == [] and after["tasks_done"] == 2
    assert cli("cleanup", "--job", job_id).stdout.startswith("nothing to delete")

    gate.unlink()
    rerun = cli("run", job, "--json", "-q", cwd=job_dir)
    assert rerun.code == 0, rerun
    assert rerun.json["reused_tasks"] == 2
    assert output.read_text().splitlines() == [f"{k},scored" for k in keys]
    done = cli("status", job, "--json").json
    assert done["state"] == "succeeded" and done["tasks_done"] == 4 and done["rows"] == 40
    # This run's group ran the two tasks left, and only those.
    seconds = {t["id"]: t["container_seconds"] for t in manifest_tasks(output)}
    assert seconds["t00000"] is None and seconds["t00001"] is None  # reused: no group now
    assert seconds["t00002"] > 0 and seconds["t00003"] > 0


def _maybe_id(output: Path) -> str:
    try:
        return job_id_of(output)
    except (FileNotFoundError, ValueError):
        return "none-yet"


def test_logs_and_status_of_a_failed_job(job_dir, make_job, cli):
    write_rows(job_dir / "data.csv", 20)
    command = f'if [ "$TASK_INDEX" -eq 1 ]; then echo "broken $ATTEMPT" >&2; exit 3; fi; {SCORE}'
    job = make_job(job_dir, name="ops-fail", input="data.csv", output="out/s.txt",
                   runtime="command", scorer=command, chunks=2, retries=1)
    assert cli("run", job, "-q").code == 1
    status = cli("status", job, "--json").json
    assert status["state"] == "failed"
    by_id = {t["id"]: t for t in status["tasks"]}
    assert by_id["t00001"]["state"] == "failed" and by_id["t00001"]["attempts"] == 2
    assert by_id["t00000"]["state"] == "done"
    latest = cli("logs", job, "--task", "1")
    assert "broken 2" in latest.stdout and "broken 1" not in latest.stdout
    assert "broken 1" in cli("logs", job, "--task", "1", "--attempt", "1").stdout
    missing = cli("logs", job, "--task", "1", "--attempt", "5")
    assert missing.code == 2 and "no log of attempt 5" in missing.flat_stderr, missing
    every = cli("logs", job)
    assert "broken 2" in every.stdout and "t00000 attempt 1" in every.stderr
    nothing = cli("status", job_dir / "elsewhere.csv")
    assert nothing.code == 2 and "no job has run" in nothing.flat_stderr, nothing


def _sleeping_group(backend: LocalBackend, tmp_path: Path, name: str, job_id: str,
                    expires: str) -> None:
    work = {
        "job_id": job_id, "format": None, "record_pattern": None, "runtime": "command",
        "scorer": "sleep 60", "predict_method": "auto", "id_columns": [], "model": None,
        "output_format": "lines",
        "orders": [{"task": {"index": 0, "kind": "shard",
                             "shard": {"index": 0, "count": 1, "bin_start": 0, "bin_end": 0}},
                    "part": str(tmp_path / f"{name}.part"),
                    "log": str(tmp_path / f"{name}.log"),
                    "status": str(tmp_path / f"{name}.json"), "attempt": 1}],
    }
    backend.begin_create_group(GroupSpec(
        name=name, job_id=job_id, task_ids=("t00000",),
        env={ENV_WORK: json.dumps(work), ENV_GROUP: name},
        labels={"job": job_id, "tasks": "t00000", "expires": expires}))


def test_cleanup_expired_deletes_only_groups_past_their_expiry(tmp_path, cli, procs):
    job_id = f"exp-{uuid.uuid4().hex[:8]}"  # unique: other test runs on this machine are safe
    procs.watch(job_id)
    backend = LocalBackend(str(tmp_path / "groups"))
    _sleeping_group(backend, tmp_path, f"{job_id}-old", job_id, "2020-01-01T00:00:00Z")
    _sleeping_group(backend, tmp_path, f"{job_id}-new", job_id, "2999-01-01T00:00:00Z")
    assert procs.wait_for(lambda: procs.names_of_job(job_id).count("sleep") == 2, timeout=30)

    result = cli("cleanup", "--expired", "--job", job_id, cwd=tmp_path)
    assert result.code == 0, result
    assert f"deleted {job_id}-old" in result.stdout and "expired 2020-01-01" in result.stdout
    assert f"{job_id}-new" not in result.stdout
    assert procs.wait_for(lambda: procs.names_of_job(job_id).count("sleep") == 1, timeout=10)
    elsewhere = LocalBackend(str(tmp_path / "another-state-dir"))  # as another controller sees it
    assert [g.name for g in elsewhere.list_all_groups() if g.job_id == job_id] == [f"{job_id}-new"]
    assert cli("cleanup", "--job", job_id).code == 0
    assert procs.wait_for(lambda: not procs.of_job(job_id), timeout=10)
    refused = cli("cleanup")
    assert refused.code == 2 and "--job ID, --expired" in refused.flat_stderr, refused


def test_plan_shows_groups_core_seconds_and_a_cost_from_an_overridden_table(job_dir, make_job,
                                                                            cli):
    (job_dir / "data.csv").write_text("k,v\n" + "x,1\n" * 250_000)  # 1 MB
    size = (job_dir / "data.csv").stat().st_size
    job = make_job(job_dir, name="ops-plan", input="data.csv", output="out/s.txt",
                   runtime="command", scorer="cat", chunks=4, max_parallel=2,
                   resources={"cpu": 2, "memory_gb": 3})
    prices = job_dir / "prices.toml"
    prices.write_text("[estimate]\nthroughput_mb_per_s = 0.5\n[estimate.startup_seconds]\n"
                      "local = 10\n")
    planned = cli("plan", job, "--json", env={"SERVERLESS_SCORE_PRICES": str(prices)})
    assert planned.code == 0, planned
    est = planned.json["estimate"]
    assert planned.json["groups"] == [["t00000", "t00001"], ["t00002", "t00003"]]
    assert est["groups"] == 2 and est["billed"] is False and est["cost"] == 0
    expected = 2 * 10 + size / 0.5e6
    assert est["container_seconds"] == pytest.approx(expected, abs=0.1)
    assert est["vcpu_seconds"] == pytest.approx(2 * expected, abs=0.2)
    assert est["gb_seconds"] == pytest.approx(3 * expected, abs=0.3)
    assert planned.json["price_tables"][-1] == str(prices)

    text = cli("plan", job, env={"COLUMNS": "200"})
    assert "core-seconds" in text.stdout and "group 1: 2 tasks t00002..t00003" in text.stdout
    assert "assuming: 5 MB/s per group" in text.stdout
    bad = cli("plan", job, "--set", "azure.price_file=missing.toml")
    assert bad.code == 2 and "missing.toml" in bad.flat_stderr and "does not exist" in bad.flat_stderr


@pytest.fixture
def billed_local(monkeypatch: pytest.MonkeyPatch) -> None:
    """A billed backend name that runs groups as local processes: the cost paths run for real
    without Azure (the ACI backend's own tests cover ACI)."""
    monkeypatch.setitem(BACKENDS, "aci", "serverless_score.backends.local:LocalBackend")
    monkeypatch.delenv("SERVERLESS_SCORE_PRICES", raising=False)


def _invoke(*args: str) -> tuple[int, str, str]:
    from typer.testing import CliRunner

    from serverless_score.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def test_max_cost_refuses_before_anything_is_created(job_dir, make_job, billed_local, procs):
    write_rows(job_dir / "data.csv", 20)
    job = make_job(job_dir, name="ops-costly", input="data.csv", output="out/s.txt",
                   runtime="command", scorer="sleep 30; cat", chunks=4, backend="aci",
                   max_cost=0.0001, azure={"location": "eastus"})
    before = sorted(p.name for p in job_dir.iterdir())
    code, stdout, stderr = _invoke("run", job, "--json", "-q")
    flat = " ".join(stderr.split())
    assert code == 2, (stdout, stderr)
    assert "max_cost: the estimate is" in flat and "above max_cost = 0.0001" in flat
    assert "eastus" in flat and "as of 2026-10-09" in flat and "nothing was started" in flat
    assert "Raise max_cost" in flat
    assert json.loads(stdout.strip().splitlines()[-1])["status"] == "failed"
    assert sorted(p.name for p in job_dir.iterdir()) == before  # no out/, no work dir
    assert not any(f"{ENV_GROUP}=ops-costly".encode() in _environ(pid) for pid in _pids())


def _pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def _environ(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return b""


def test_the_manifest_records_container_seconds_and_their_cost(job_dir, make_job, billed_local):
    keys = write_rows(job_dir / "data.csv", 20)
    job = make_job(job_dir, name="ops-billed", input="data.csv", output="out/s.txt",
                   runtime="command", scorer=f"sleep 1; {SCORE}", chunks=4, max_parallel=2,
                   backend="aci", max_cost=1.0, azure={"location": "eastus"},
                   resources={"cpu": 2, "memory_gb": 4})
    code, stdout, stderr = _invoke("run", job, "--json", "-q")
    assert code == 0, (stdout, stderr)
    result = json.loads(stdout.strip().splitlines()[-1])
    assert (job_dir / "out" / "s.txt").read_text().splitlines() == [f"{k},scored" for k in keys]
    usage = result["usage"]
    manifest = json.loads((job_dir / "out" / "s.txt.manifest.json").read_text())
    tasks = manifest_tasks(job_dir / "out" / "s.txt")
    # The summary's usage is run --json's (each group's tasks as first..last runs); the task
    # lines say which group ran which attempt of them.
    assert manifest["usage"] == usage
    assert all("attempts" not in g for g in usage["per_group"])

    def expand(ids: list[str]) -> set[str]:
        out: set[str] = set()
        for item in ids:
            first, _, last = item.partition("..")
            out.update(f"t{n:05d}" for n in range(int(first[1:]), int((last or first)[1:]) + 1))
        return out

    assert {t["id"]: [name for name, _ in t["groups"]] for t in tasks} == {
        task: [g["name"]] for g in usage["per_group"] for task in expand(g["tasks"])}
    assert all(attempt == t["attempts"] for t in tasks for _, attempt in t["groups"])
    assert usage["billed"] is True and usage["price"]["region"] == "eastus"
    assert usage["groups"] == 2 and len(usage["per_group"]) == 2
    # Each group ran at least one task of >= 1 s, measured create -> deleted at the end.
    assert all(g["seconds"] >= 1.0 and g["outcome"] == "done" for g in usage["per_group"])
    assert usage["vcpu_seconds"] == pytest.approx(2 * usage["container_seconds"], abs=0.01)
    assert usage["gb_seconds"] == pytest.approx(4 * usage["container_seconds"], abs=0.01)
    price = usage["price"]
    assert usage["cost"] == pytest.approx(
        usage["vcpu_seconds"] * price["vcpu_second"] + usage["gb_seconds"] * price["gb_second"],
        rel=1e-3)
    assert usage["cost"] > 0 and usage["estimate"]["cost"] > 0
    per_task = [t["container_seconds"] for t in tasks]
    assert sum(per_task) == pytest.approx(usage["container_seconds"], abs=0.01)


@pytest.mark.azurite
def test_status_and_logs_read_a_job_whose_output_is_in_blob_storage(job_dir, make_job, blob_env,
                                                                    azurite, container, cli):
    keys = write_rows(job_dir / "data.csv", 20)
    marker = job_dir / "failed-once"
    command = (f'if [ "$TASK_INDEX" -eq 1 ] && [ ! -e {marker} ]; then touch {marker}; '
               f'echo "first try fails" >&2; exit 3; fi; {SCORE}')
    output = f"az://{container}/scores/s.txt"
    job = make_job(job_dir, name="ops-blob", input="data.csv", output=output, runtime="command",
                   scorer=command, chunks=2, retries=1)
    run = cli("run", job, "--json", "-q")
    assert run.code == 0, run
    # By the output URI alone (and by its manifest): everything comes from the blobs.
    for target in (output, f"{output}.manifest.json"):
        status = cli("status", target, "--json", cwd=job_dir.parent)
        assert status.code == 0, status
        assert status.json["state"] == "succeeded" and status.json["rows"] == len(keys)
        assert status.json["manifest"] == f"{output}.manifest.json"
        attempts = {t["id"]: t["attempts"] for t in status.json["tasks"]}
        assert attempts == {"t00000": 1, "t00001": 2}
        # two groups: the retry was taken by one of them, no group was made for it
        assert status.json["usage"]["groups"] == 2
    first = cli("logs", output, "--task", "1", "--attempt", "1")
    assert first.code == 0 and "first try fails" in first.stdout, first
    assert f"{output}.work/tasks/t00001/attempt-1/log.txt" in first.stderr
    assert "first try fails" not in cli("logs", output, "--task", "1").stdout


def test_scores_prints_a_succeeded_output_and_refuses_one_that_did_not_succeed(
        job_dir, make_job, cli) -> None:
    write_rows(job_dir / "data.csv", 20)
    job = make_job(job_dir, name="shown", input="data.csv", output="out/s.txt", runtime="command",
                   scorer=SCORE, chunks=2)
    assert cli("run", job, "-q").code == 0
    shown = cli("scores", job)
    assert shown.code == 0, shown
    assert shown.stdout == (job_dir / "out" / "s.txt").read_text() and shown.stdout.count("scored") == 20

    failing = make_job(job_dir, filename="failing.toml", name="failing", input="data.csv",
                       output="out/f.txt", runtime="command", scorer="exit 3", chunks=1)
    assert cli("run", failing, "-q").code == 1
    refused = cli("scores", failing)
    assert refused.code == 2 and refused.stdout == "", refused
    assert "has no scores at" in refused.flat_stderr and "it has not succeeded" in refused.flat_stderr
    assert "hint:" in refused.flat_stderr and not (job_dir / "out" / "f.txt").exists()
