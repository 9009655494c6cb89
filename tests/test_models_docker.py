"""The MLflow and pins examples through ``backend = "docker"``: the model resolved on this
machine (an MLflow version downloaded into the cache, a pin on a folder board) is bound into the
containers and scored byte for byte as the local backend scores it."""

from __future__ import annotations

import shutil
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
    yield
    for c in our_containers(docker_engine):
        if c["Labels"].get("job", "").startswith(("churn-mlflow-", "churn-pins-")):
            docker_engine.client.api.remove_container(c["Id"], force=True)


@pytest.mark.parametrize("example", ["mlflow-churn", "pins-churn"])
def test_a_registered_model_through_docker_equals_the_local_run(
        example: str, tmp_path: Path, python_image: Any, docker_engine: Any, cli: Any) -> None:
    pytest.importorskip("mlflow" if example.startswith("mlflow") else "pins")
    folder = tmp_path / example
    folder.mkdir()
    for name in ("job.toml", "prepare.py"):
        shutil.copy(ROOT / "examples" / example / name, folder / name)
    (tmp_path / "python-churn").mkdir()  # prepare.py takes the data generator from there
    shutil.copy(ROOT / "examples" / "python-churn" / "prepare.py", tmp_path / "python-churn")
    subprocess.run([sys.executable, "prepare.py", "3000"], check=True, capture_output=True,
                   timeout=300, cwd=folder)
    env = {"SERVERLESS_SCORE_CACHE": str(tmp_path / "cache")}
    job = folder / "job.toml"
    local = cli("run", job, "--json", "-q", "--set", 'output="out/local.csv"', env=env)
    assert local.code == 0, local
    docker = cli("run", job, "--json", "-q", "--set", "backend=docker",
                 "--set", 'output="out/docker.csv"', env=env, timeout=600)
    assert docker.code == 0, docker
    assert docker.json["model"] == local.json["model"]  # the same file, version and sha256
    assert docker.json["model"]["source"]["kind"] == example.split("-")[0]
    assert (folder / "out" / "docker.csv").read_bytes() == (folder / "out" / "local.csv").read_bytes()
    assert our_containers(docker_engine, docker.json["job_id"]) == []
