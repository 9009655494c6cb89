"""Models from a real MLflow registry (the mlflow package, a SQLite backend store and a local
artifact root; once through an ``mlflow server`` over HTTP), registered with MLflow's own API:
the job scores exactly what ``mlflow.pyfunc.load_model(uri).predict`` gives on the same rows, the
manifest, ``--json`` and ``status`` record the URI as written and the version it resolved to,
a newer version behind the same alias is another job, and a wrong name, version, alias or
server is a clear error before anything is created."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from azurite import free_port
from modelrows import FEATURES, frame, training_set
from polling import wait_for

pytestmark = [pytest.mark.slow]
mlflow = pytest.importorskip("mlflow")  # the dev extra installs it


# A generic pyfunc (no sklearn flavour), logged as "model from code": the file travels with
# the model, so a worker loads it without this test module.
_DOUBLER = """
import mlflow


class Doubler(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input["x1"] * 2 + model_input["x3"]


mlflow.models.set_model(Doubler())
"""


@dataclass(frozen=True)
class Registry:
    uri: str
    root: Path
    gen_run: str  # the run the generic pyfunc was logged in
    rows: Any  # the input frame (id + features), also written to input.csv
    input: Path


def _register(tracking_uri: str, artifacts: str, code: Path) -> str:
    """Two versions of "churn" (v1 skops, MLflow's default; v2 cloudpickle scored with
    predict_proba) with aliases, and a generic pyfunc "doubler"; returns the pyfunc's run id."""
    from mlflow import MlflowClient
    from sklearn.linear_model import LogisticRegression

    features, label = training_set()
    v1 = LogisticRegression(max_iter=500).fit(features, label)
    v2 = LogisticRegression(max_iter=500, C=0.05).fit(features, label)
    mlflow.set_tracking_uri(tracking_uri)
    experiment = mlflow.create_experiment(f"e{time.monotonic_ns()}", artifact_location=artifacts)
    # pip_requirements given: MLflow would otherwise infer them by loading the model in a
    # subprocess (seconds per model).
    with mlflow.start_run(experiment_id=experiment):
        mlflow.sklearn.log_model(v1, name="model", registered_model_name="churn",
                                 pip_requirements=["scikit-learn"])
    with mlflow.start_run(experiment_id=experiment):
        mlflow.sklearn.log_model(v2, name="model", registered_model_name="churn",
                                 serialization_format="cloudpickle",
                                 pyfunc_predict_fn="predict_proba",
                                 pip_requirements=["scikit-learn"])
    code.write_text(_DOUBLER)
    with mlflow.start_run(experiment_id=experiment) as run:
        mlflow.pyfunc.log_model(name="model", python_model=str(code),
                                registered_model_name="doubler", pip_requirements=["mlflow"])
    client = MlflowClient(tracking_uri=tracking_uri)
    client.set_registered_model_alias("churn", "champion", "1")
    client.set_registered_model_alias("churn", "staging", "1")
    return str(run.info.run_id)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    previous = mlflow.get_tracking_uri()
    gen_run = _register(uri, str(root / "artifacts"), root / "doubler.py")
    rows = frame(120, seed=7)
    rows.to_csv(root / "input.csv", index=False)
    yield Registry(uri, root, gen_run, rows, root / "input.csv")
    mlflow.set_tracking_uri(previous)


def _job(job_dir: Path, make_job: Any, registry: Registry, model: str, **keys: Any) -> Path:
    keys = {"mlflow": {"tracking_uri": registry.uri}, "name": "mlscore", "model": model,
            "input": registry.input, "output": job_dir / "out" / "scores.csv",
            "id_columns": ["id"], "chunks": 1, **keys}
    return make_job(job_dir, **keys)


def _env(job_dir: Path) -> dict[str, str]:
    return {"SERVERLESS_SCORE_CACHE": str(job_dir / "cache")}


def _scores(path: Path) -> Any:
    import pandas as pd

    return pd.read_csv(path).sort_values("id").reset_index(drop=True)


def _expected(model_uri: str, registry: Registry) -> Any:
    import numpy as np

    mlflow.set_tracking_uri(registry.uri)
    return np.asarray(mlflow.pyfunc.load_model(model_uri).predict(registry.rows[FEATURES]))


def _ok(result: Any) -> dict[str, Any]:
    assert result.code == 0, result
    assert result.json is not None, result
    return result.json


def test_an_alias_scores_as_mlflow_does_and_is_recorded(job_dir, make_job, registry, cli) -> None:
    import numpy as np

    job = _job(job_dir, make_job, registry, "models:/churn@champion")
    out = _ok(cli("run", job, "--json", "-q", env=_env(job_dir)))
    assert out["status"] == "succeeded"
    scores = _scores(job_dir / "out" / "scores.csv")
    assert list(scores.columns) == ["id", "prediction"]  # MLflow's predict_fn, not predict_proba
    assert np.array_equal(scores["prediction"].to_numpy(), _expected("models:/churn@champion", registry))
    assert len(set(scores["prediction"])) == 2  # both classes: equality says something

    model = out["model"]
    source = model["source"]
    assert (source["uri"], source["kind"], source["version"], source["alias"]) == (
        "models:/churn@champion", "mlflow", "1", "champion")
    mv = mlflow.MlflowClient(registry.uri).get_model_version("churn", "1")
    assert source["run_id"] == mv.run_id and source["flavor"] == "sklearn (skops)"
    assert model["sha256"] == hashlib.sha256(Path(model["uri"]).read_bytes()).hexdigest()
    manifest = json.loads((job_dir / "out" / "scores.csv.manifest.json").read_text())
    assert manifest["model"] == model
    assert manifest["spec"]["model"] == "models:/churn@champion"  # as written, not the cache

    status = cli("status", job, "--json", env=_env(job_dir))
    assert status.code == 0 and status.json["model"]["source"]["version"] == "1", status
    text = cli("status", job, env=_env(job_dir))
    assert f"models:/churn@champion -> version 1 (run {mv.run_id})" in text.flat_stderr + " ".join(
        text.stdout.split()), text


def test_a_version_whose_predict_fn_is_predict_proba(job_dir, make_job, registry, cli) -> None:
    import numpy as np

    job = _job(job_dir, make_job, registry, "models:/churn/2")
    out = _ok(cli("run", job, "--json", "-q", env=_env(job_dir)))
    assert out["model"]["source"]["flavor"] == "sklearn (cloudpickle)"
    scores = _scores(job_dir / "out" / "scores.csv")
    expected = _expected("models:/churn/2", registry)
    assert expected.shape == (len(registry.rows), 2)
    assert np.allclose(scores[["proba_0", "proba_1"]].to_numpy(), expected, rtol=0, atol=1e-12)


def test_a_generic_pyfunc_by_its_run(job_dir, make_job, registry, cli) -> None:
    import numpy as np

    uri = f"runs:/{registry.gen_run}/model"
    job = _job(job_dir, make_job, registry, uri)
    out = _ok(cli("run", job, "--json", "-q", env=_env(job_dir)))
    assert (out["model"]["source"]["version"], out["model"]["source"]["flavor"]) == (
        registry.gen_run, "pyfunc")
    scores = _scores(job_dir / "out" / "scores.csv")
    assert np.allclose(scores["prediction"].to_numpy(), _expected(uri, registry), rtol=0, atol=1e-9)


def test_a_newer_version_behind_the_alias_is_another_job(job_dir, make_job, registry, cli) -> None:
    job = _job(job_dir, make_job, registry, "models:/churn@staging")
    first = _ok(cli("run", job, "--json", "-q", env=_env(job_dir)))
    again = _ok(cli("run", job, "--json", "-q", env=_env(job_dir)))
    assert again["status"] == "up-to-date" and again["job_id"] == first["job_id"]
    client = mlflow.MlflowClient(registry.uri)
    client.set_registered_model_alias("churn", "staging", "2")
    try:
        moved = cli("run", job, "--json", "-q", env=_env(job_dir))
        assert moved.code == 2, moved
        assert ("models:/churn@staging now resolves to version 2 (the output was scored with "
                "version 1)") in moved.flat_stderr, moved
        replaced = _ok(cli("run", job, "--json", "-q", "--set", "overwrite=true", env=_env(job_dir)))
        assert replaced["status"] == "succeeded" and replaced["job_id"] != first["job_id"]
        assert replaced["model"]["source"]["version"] == "2"
        assert list(_scores(job_dir / "out" / "scores.csv").columns) == ["id", "proba_0", "proba_1"]
    finally:
        client.set_registered_model_alias("churn", "staging", "1")


@pytest.mark.parametrize(("uri", "message"), [
    ("models:/nosuch/1", "the MLflow registry has no model named 'nosuch'"),
    ("models:/churn/9", "MLflow model 'churn' has no version '9'"),
    ("models:/churn@nosuch", "MLflow model 'churn' has no alias 'nosuch'"),
    ("runs:/0123456789abcdef0123456789abcdef/model",
     "the MLflow tracking server has no run '0123456789abcdef0123456789abcdef'"),
])
def test_a_missing_model_version_or_alias_is_a_plan_error(job_dir, make_job, registry, uri,
                                                         message, monkeypatch) -> None:
    from serverless_score.errors import InputError
    from serverless_score.planning import make_plan
    from serverless_score.spec import load_spec

    monkeypatch.setenv("SERVERLESS_SCORE_CACHE", str(job_dir / "cache"))
    spec = load_spec(_job(job_dir, make_job, registry, uri))
    with pytest.raises(InputError) as err:
        make_plan(spec)
    assert message in str(err.value) and err.value.exit_code == 2
    assert not (job_dir / "out").exists()


def test_an_unreachable_tracking_server_fails_within_seconds(job_dir, make_job, registry, cli) -> None:
    port = free_port()  # nothing listens there
    job = _job(job_dir, make_job, registry, "models:/churn/1",
               mlflow={"tracking_uri": f"http://127.0.0.1:{port}"})
    started = time.monotonic()
    result = cli("run", job, "--json", "-q", env=_env(job_dir))
    took = time.monotonic() - started
    assert result.code == 2, result
    assert f"the MLflow tracking server http://127.0.0.1:{port} cannot be reached" in result.flat_stderr
    assert took < 15, took  # the CLI's start and mlflow's import included; not minutes of retries
    assert not (job_dir / "out").exists()


def test_no_tracking_uri_is_a_clear_error(job_dir, make_job, registry, cli) -> None:
    job = _job(job_dir, make_job, registry, "models:/churn/1", mlflow={})
    env = {**_env(job_dir), "MLFLOW_TRACKING_URI": ""}
    result = cli("plan", job, env=env)
    assert result.code == 2 and "needs a tracking server, and none is set" in result.flat_stderr, result


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    """``mlflow server`` on a free port (SQLite store, proxied local artifacts), stopped after."""
    port = free_port()
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(tmp_path / "server-artifacts")],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        import urllib.request

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=1) as answer:
                    return bool(answer.status == 200)
            except OSError:
                assert proc.poll() is None, (tmp_path / "server.log").read_text()[-2000:]
                return False

        assert wait_for(healthy, timeout=90, interval=0.3), (tmp_path / "server.log").read_text()[-2000:]
        yield url
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
        log.close()


def test_a_model_registered_through_mlflow_server_over_http(job_dir, make_job, registry,
                                                          mlflow_server, cli, tmp_path) -> None:
    import numpy as np
    from mlflow import MlflowClient
    from sklearn.linear_model import LogisticRegression

    rows = registry.rows
    model = LogisticRegression(max_iter=300).fit(rows[FEATURES], (rows.x1 > 0).astype(int))
    mlflow.set_tracking_uri(mlflow_server)
    try:
        experiment = mlflow.create_experiment("over-http")
        with mlflow.start_run(experiment_id=experiment):
            mlflow.sklearn.log_model(model, name="model", registered_model_name="remote",
                                     serialization_format="cloudpickle",
                                     pip_requirements=["scikit-learn"])
        MlflowClient(mlflow_server).set_registered_model_alias("remote", "prod", "1")
        expected = np.asarray(mlflow.pyfunc.load_model("models:/remote@prod").predict(rows[FEATURES]))
    finally:
        mlflow.set_tracking_uri(registry.uri)
    job = _job(job_dir, make_job, registry, "models:/remote@prod", mlflow={})
    out = _ok(cli("run", job, "--json", "-q",
                  env={**_env(job_dir), "MLFLOW_TRACKING_URI": mlflow_server}))
    assert out["model"]["source"]["version"] == "1"
    assert np.array_equal(_scores(job_dir / "out" / "scores.csv")["prediction"].to_numpy(), expected)


@pytest.mark.azurite
@pytest.mark.aci
def test_on_aci_the_version_is_copied_to_the_jobs_blob_folder(job_dir, make_job, registry,
                                                              aci_env, azurite, container,
                                                              cli) -> None:
    """Containers on Azure cannot reach a registry on this machine: the controller copies the
    resolved file into the job's work folder, and the workers score exactly it."""
    import io

    import numpy as np
    import pandas as pd

    service = azurite.service()
    service.get_blob_client(container, "in/input.csv").upload_blob(registry.input.read_bytes())
    job = _job(job_dir, make_job, registry, "models:/churn/2", backend="aci",
               image="myreg.azurecr.io/serverless-score-python:test",
               input=f"az://{container}/in/input.csv", output=f"az://{container}/out/scores.csv")
    out = _ok(cli("run", job, "--json", "-q", timeout=240))
    sha = out["model"]["sha256"]
    assert out["model"]["uri"] == f"az://{container}/out/scores.csv.work/model/{sha[:16]}/model.pkl"
    blob = service.get_blob_client(container, f"out/scores.csv.work/model/{sha[:16]}/model.pkl")
    assert hashlib.sha256(blob.download_blob().readall()).hexdigest() == sha
    assert out["model"]["source"]["version"] == "2"
    data = service.get_blob_client(container, "out/scores.csv").download_blob().readall()
    scores = pd.read_csv(io.BytesIO(data)).sort_values("id").reset_index(drop=True)
    assert np.allclose(scores[["proba_0", "proba_1"]].to_numpy(),
                       _expected("models:/churn/2", registry), rtol=0, atol=1e-12)


def test_a_generic_pyfunc_needs_mlflow_in_the_image(job_dir, make_job, registry,
                                                    monkeypatch) -> None:
    """The built-in images have no mlflow: a pyfunc model on docker/aci is refused at plan,
    unless the job names an image (then it is the user's to vouch for)."""
    from serverless_score.errors import InputError
    from serverless_score.planning import make_plan
    from serverless_score.spec import load_spec

    monkeypatch.setenv("SERVERLESS_SCORE_CACHE", str(job_dir / "cache"))
    uri = f"runs:/{registry.gen_run}/model"
    spec = load_spec(_job(job_dir, make_job, registry, uri, backend="docker"))
    with pytest.raises(InputError) as err:
        make_plan(spec)
    assert ("needs the Python package(s) mlflow, which the built-in scoring image (backend = "
            "'docker') does not have; nothing was created") in str(err.value)
    named = load_spec(_job(job_dir, make_job, registry, uri, backend="docker",
                           image="mine/scoring-with-mlflow:1"))
    assert make_plan(named).source.needs == ("mlflow",)  # type: ignore[union-attr]
