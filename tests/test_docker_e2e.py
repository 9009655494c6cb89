"""End to end through the CLI with ``backend = "docker"``: the example jobs (Python churn, R glm
with its score.R, R forest) give byte for byte the local backend's output; Ctrl-C / SIGTERM and
failures leave no container behind; a blob job reaches Azurite over the host network with
per-task SAS URLs; a missing image says how to build it."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from dockerhelp import our_containers

pytestmark = [pytest.mark.slow, pytest.mark.docker, pytest.mark.timeout(1200)]
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def no_leftovers(docker_engine: Any) -> Any:
    """Containers of this module's jobs go when a test ends, even one that failed half way
    (its controller is then SIGKILLed and cannot clean up)."""
    yield
    for c in our_containers(docker_engine):
        if c["Labels"].get("job", "").startswith(_JOBS):
            docker_engine.client.api.remove_container(c["Id"], force=True)


_JOBS = ("dsignal-", "dfail-", "dblob-", "dnoimage-", "dlong-", "churn-", "loan-glm-")


def _example(tmp_path_factory: pytest.TempPathFactory, name: str, files: tuple[str, ...],
             prepare: list[str]) -> Path:
    folder = tmp_path_factory.mktemp(name)
    for file in files:
        shutil.copy(ROOT / "examples" / name / file, folder / file)
    subprocess.run(prepare, check=True, capture_output=True, timeout=300, cwd=folder)
    return folder


@pytest.fixture(scope="module")
def churn_example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _example(tmp_path_factory, "python-churn", ("job.toml", "prepare.py"),
                    [sys.executable, "prepare.py", "--rows", "6000"])


@pytest.fixture(scope="module")
def glm_example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _example(tmp_path_factory, "r-glm", ("job.toml", "prepare.R", "score.R"),
                    ["Rscript", "prepare.R", "20000"])


@pytest.fixture(scope="module")
def forest_example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _example(tmp_path_factory, "r-churn-forest", ("job.toml", "prepare.R"),
                    ["Rscript", "prepare.R", "3000"])


def _same_output_through_docker(cli: Any, engine: Any, folder: Path, suffix: str = ".csv") -> dict[str, Any]:
    job = folder / "job.toml"
    local = cli("run", job, "--json", "-q", "--set", f'output="out/local{suffix}"')
    assert local.code == 0, local
    docker = cli("run", job, "--json", "-q", "--set", "backend=docker",
                 "--set", f'output="out/docker{suffix}"', timeout=600)
    assert docker.code == 0, docker
    assert docker.json is not None and docker.json["status"] == "succeeded", docker
    assert docker.json["rows_out"] == local.json["rows_out"] > 0  # type: ignore[index]
    assert (folder / "out" / f"docker{suffix}").read_bytes() == (folder / "out" / f"local{suffix}").read_bytes()
    manifest = json.loads((folder / "out" / f"docker{suffix}.manifest.json").read_text())
    assert manifest["backend"] == "docker"
    # Container seconds from the engine's own start and finish times of each container.
    per_group = manifest["usage"]["per_group"]
    assert per_group and all(g["measured_by"] == "backend" and g["seconds"] > 0 for g in per_group)
    # ... each within the run (the engine's list gives creation times in whole seconds, which
    # once put up to a second more on a group than the whole run took)
    run_s = docker.json["timings"]["run_s"]  # type: ignore[index]
    assert all(g["seconds"] <= run_s + 0.2 for g in per_group), (per_group, run_s)
    assert our_containers(engine, docker.json["job_id"]) == []  # every container removed
    return docker.json


def test_python_churn_example_through_docker_equals_the_local_run(
        churn_example: Path, python_image: Any, docker_engine: Any, cli: Any) -> None:
    _same_output_through_docker(cli, docker_engine, churn_example)
    logs = list((churn_example / "out" / "docker.csv.work" / "groups").glob("*.log"))
    assert logs and all("runner: task" in log.read_text() for log in logs)  # the containers' logs


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_python_churn_example_in_other_formats_through_docker_equals_the_local_run(
        churn_example: Path, python_image: Any, docker_engine: Any, cli: Any, suffix: str) -> None:
    """The parts are written by pandas and pyarrow's Parquet writer in the slimmed image."""
    _same_output_through_docker(cli, docker_engine, churn_example, suffix)


def test_r_glm_example_with_its_score_r_through_docker_equals_the_local_run(
        glm_example: Path, r_image: Any, docker_engine: Any, cli: Any) -> None:
    _same_output_through_docker(cli, docker_engine, glm_example)


def test_r_forest_example_through_docker_equals_the_local_run(
        forest_example: Path, r_image: Any, docker_engine: Any, cli: Any) -> None:
    _same_output_through_docker(cli, docker_engine, forest_example)


# -- failures and signals -----------------------------------------------------------------------
def _rows(path: Path, rows: int = 40) -> None:
    path.write_text("k,v\n" + "".join(f"k{i:03d},{i}\n" for i in range(rows)))


def test_csv_field_spanning_many_tasks_through_docker(
        job_dir: Path, make_job: Any, python_image: Any, docker_engine: Any, cli: Any) -> None:
    """The issue's file (shrunk, CRLF and a BOM) in containers: every record once, in order,
    the tasks inside the long quoted field repaired without a retry."""
    from test_long_fields import TABLE_SCORER, expected_csv, reported_csv, unquote

    data = reported_csv(reps=1500, roleless=4000, newline="\r\n", bom=True)
    (job_dir / "data.csv").write_bytes(data)
    (job_dir / "model.bin").write_bytes(b"unused")
    (job_dir / "scorer.py").write_text(TABLE_SCORER)
    job = make_job(job_dir, name="dlong", model="model.bin", input="data.csv",
                   output="out/scores.csv", scorer="scorer.py", id_columns=["id"], chunks=7,
                   backend="docker")
    result = cli("run", job, "--json", "-q", timeout=600)
    assert result.code == 0, result
    assert result.json is not None and result.json["rows_out"] == 300, result
    assert result.json["repaired_boundaries"] > 0
    lines = (job_dir / "out" / "scores.csv").read_text().splitlines()
    assert unquote(lines[1:]) == expected_csv(data)
    assert our_containers(docker_engine, result.json["job_id"]) == []


def test_a_failing_task_fails_the_job_with_its_log_and_leaves_no_container(
        job_dir: Path, make_job: Any, python_image: Any, docker_engine: Any, cli: Any) -> None:
    _rows(job_dir / "data.csv")
    job = make_job(job_dir, name="dfail", input="data.csv", output="out/s.txt", runtime="command",
                   scorer="echo 'no model here' >&2; exit 3", chunks=2, backend="docker")
    result = cli("run", job, "--json", "-q", timeout=300)
    assert result.code == 1, result
    assert result.json is not None and result.json["status"] == "failed"
    assert "no model here" in result.json["error"]["log_tail"]
    assert our_containers(docker_engine, result.json["job_id"]) == []
    assert not (job_dir / "out" / "s.txt").exists()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_mid_job_removes_every_container(
        job_dir: Path, make_job: Any, procs: Any, python_image: Any, docker_engine: Any,
        signum: int) -> None:
    _rows(job_dir / "data.csv")
    job = make_job(job_dir, name="dsignal", input="data.csv", output="out/s.txt", runtime="command",
                   scorer="sleep 300; cat", chunks=4, backend="docker")
    output = job_dir / "out" / "s.txt"
    controller = procs.start("run", job, "-q", cwd=job_dir)
    assert procs.wait_for(lambda: Path(f"{output}.work/job.json").exists(), timeout=60)
    job_id = json.loads(Path(f"{output}.work/job.json").read_text())["job_id"]
    def running() -> list[dict[str, Any]]:
        return [c for c in our_containers(docker_engine, job_id) if c["State"] == "running"]

    assert procs.wait_for(lambda: len(running()) == 2, timeout=60), running()  # max_parallel = 2
    controller.send_signal(signum)
    _, stderr = controller.communicate(timeout=60)
    assert controller.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert our_containers(docker_engine, job_id) == []
    assert not output.exists()


def test_a_missing_image_is_a_clear_error_before_anything_runs(
        job_dir: Path, make_job: Any, docker_engine: Any, cli: Any) -> None:
    _rows(job_dir / "data.csv")
    job = make_job(job_dir, name="dnoimage", input="data.csv", output="out/s.txt", runtime="command",
                   scorer="cat", backend="docker", image="serverless-score-python:missing")
    result = cli("run", job, "-q")
    assert result.code == 1, result
    assert "serverless-score-python:missing is not on the Docker engine" in result.flat_stderr
    assert "serverless-score image build --runtime python --tag serverless-score-python:missing" in result.flat_stderr
    assert "Traceback" not in result.stderr


# -- blob storage from containers ---------------------------------------------------------------
@pytest.mark.azurite
def test_a_blob_job_through_docker_reaches_azurite_with_sas_grants(
        job_dir: Path, make_job: Any, python_image: Any, docker_engine: Any, blob_env: Any,
        azurite: Any, container: str, cli: Any) -> None:
    from azurite import KEY

    _rows(job_dir / "data.csv", 300)
    data = (job_dir / "data.csv").read_bytes()
    azurite.service().get_blob_client(container, "in/data.csv").upload_blob(data)
    job = make_job(job_dir, name="dblob", input=f"az://{container}/in/data.csv",
                   output=f"az://{container}/out/s.txt", runtime="command",
                   scorer="env >&2; tail -n +2", chunks=3, backend="docker")
    result = cli("run", job, "--json", "-q", timeout=300)
    assert result.code == 0, result.json
    out = bytes(azurite.service().get_blob_client(container, "out/s.txt").download_blob().readall())
    assert out == data.split(b"\n", 1)[1]  # every record once, in order (the header is not a record)
    manifest = json.loads(azurite.service().get_blob_client(
        container, "out/s.txt.manifest.json").download_blob().readall())
    assert manifest["storage"]["worker_access"] == "sas" and manifest["backend"] == "docker"
    task_log = azurite.service().get_blob_client(
        container, "out/s.txt.work/tasks/t00000/attempt-1/log.txt").download_blob().readall().decode()
    assert "SERVERLESS_SCORE_GROUP=" in task_log  # the container's environment, as it ran
    assert "HOME=/home/scorer" in task_log  # no local path to write: the image's non-root user
    assert KEY not in task_log and "AccountKey" not in task_log  # SAS grants only, no key
    assert our_containers(docker_engine, result.json["job_id"]) == []  # type: ignore[index]
