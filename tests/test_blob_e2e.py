"""End to end through the CLI with model, input and output in Azurite: the Python churn example and
a command job give byte for byte the local run's output; secrets appear nowhere; the merge falls
back on an Azurite without Put Block From URL; a model that changed is refused."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azurite import KEY

pytestmark = [pytest.mark.slow, pytest.mark.azurite]
ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def _ok(result: Any) -> dict[str, Any]:
    assert result.code == 0, result
    assert result.json is not None and result.json["status"] in ("succeeded", "up-to-date"), result
    return result.json


def _blob(azurite: Any, container: str, name: str) -> bytes:
    return bytes(azurite.service().get_blob_client(container, name).download_blob().readall())


def _all_blobs(azurite: Any, container: str) -> dict[str, bytes]:
    client = azurite.service().get_container_client(container)
    return {b.name: _blob(azurite, container, b.name) for b in client.list_blobs()}


@pytest.fixture(scope="module")
def churn_example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of examples/python-churn with its data and model made by its own prepare.py."""
    folder = tmp_path_factory.mktemp("python-churn")
    for name in ("job.toml", "prepare.py"):
        shutil.copy(ROOT / "examples" / "python-churn" / name, folder / name)
    subprocess.run([PY, str(folder / "prepare.py"), "--rows", "6000"], check=True,
                   capture_output=True, timeout=300)
    return folder


def test_python_churn_example_in_azurite_equals_the_local_run(
        churn_example, blob_env, azurite, container, cli) -> None:
    job = churn_example / "job.toml"
    pushed = cli("models", "push", churn_example / "model" / "churn.joblib", f"az://{container}/models/churn")
    assert pushed.code == 0, pushed
    model_uri = pushed.stdout.strip()
    model_sha = hashlib.sha256((churn_example / "model" / "churn.joblib").read_bytes()).hexdigest()
    assert model_uri == f"az://{container}/models/churn/{model_sha[:16]}/churn.joblib"
    again = cli("models", "push", churn_example / "model" / "churn.joblib", f"az://{container}/models/churn")
    assert again.stdout.strip() == model_uri and "already there" in again.stderr
    data = (churn_example / "data" / "customers.csv").read_bytes()
    azurite.service().get_blob_client(container, "in/customers.csv").upload_blob(data)

    local = _ok(cli("run", job, "--json", "-q", "--set", "chunks=3", "--set", "output=\"out/local.csv\""))
    blob_sets = ["--set", f'model="{model_uri}"', "--set", f'input="az://{container}/in/customers.csv"',
                 "--set", f'output="az://{container}/scores/churn.csv"', "--set", "chunks=3"]
    remote = cli("run", job, "--json", "-q", *blob_sets)
    result = _ok(remote)
    assert result["status"] == "succeeded" and result["rows_out"] == local["rows_out"] == 6000
    expected = (churn_example / "out" / "local.csv").read_bytes()
    assert _blob(azurite, container, "scores/churn.csv") == expected

    manifest = json.loads(_blob(azurite, container, "scores/churn.csv.manifest.json"))
    assert manifest["model"]["uri"] == model_uri and manifest["model"]["sha256"] == model_sha
    assert manifest["output"]["merge"] == "server" and manifest["output"]["bytes"] == len(expected)
    assert manifest["storage"]["worker_access"] == "sas"
    blobs = _all_blobs(azurite, container)
    assert "scores/churn.csv.work/tasks/t00002/attempt-1/log.txt" in blobs  # logs beside the output
    assert not [n for n in blobs if n.endswith("/part")]  # parts deleted once merged
    everything = b"".join(blobs.values()).decode("utf-8", "replace") + remote.stdout + remote.stderr
    assert KEY not in everything and "sig=" not in everything

    rerun = _ok(cli("run", job, "--json", "-q", *blob_sets))
    assert rerun["status"] == "up-to-date"


ECHO_ENV = "env >&2; cat"  # the scorer dumps its environment into the task log, then echoes


def _jsonl_inputs(azurite: Any, container: str, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(2):
        rows = b"".join(json.dumps({"id": f"{index}-{i}", "x": i * 0.5}).encode() + b"\n"
                        for i in range(400))
        (folder / f"part-{index}.jsonl").write_bytes(rows)
        azurite.service().get_blob_client(container, f"data/part-{index}.jsonl").upload_blob(rows)
    azurite.service().get_blob_client(container, "data/skip.txt").upload_blob(b"not jsonl\n")


def test_command_job_with_sas_grants_gives_local_bytes_and_leaks_no_secret(
        job_dir, make_job, blob_env, azurite, container, cli) -> None:
    _jsonl_inputs(azurite, container, job_dir / "data")
    job = make_job(job_dir, name="echo", runtime="command", scorer=ECHO_ENV, format="jsonl",
                   input="data/*.jsonl", output="out/local.txt", chunks=4)
    _ok(cli("run", job, "--json", "-q"))
    remote = cli("run", job, "--json", "-q", "--set", f'input="az://{container}/data/*.jsonl"',
                 "--set", f'output="az://{container}/out/echo.txt"')
    assert _ok(remote)["tasks"] == 4
    assert _blob(azurite, container, "out/echo.txt") == (job_dir / "out" / "local.txt").read_bytes()
    logs = {n: b.decode() for n, b in _all_blobs(azurite, container).items() if n.endswith((".log", "/log.txt"))}
    task_log = logs["out/echo.txt.work/tasks/t00000/attempt-1/log.txt"]
    assert "TASK_ID=t00000" in task_log  # the scorer's environment is in the log...
    for forbidden in ("AZURE_STORAGE_CONNECTION_STRING", "SERVERLESS_SCORE_SECRETS", KEY, "sig="):
        assert all(forbidden not in text for text in logs.values()), forbidden  # ...without secrets
        assert forbidden not in remote.stdout + remote.stderr


def test_sas_urls_in_the_job_are_used_and_never_shown(
        job_dir, make_job, blob_env, azurite, container, cli, monkeypatch) -> None:
    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    _jsonl_inputs(azurite, container, job_dir / "data")
    token = generate_container_sas(
        "devstoreaccount1", container, account_key=KEY, expiry=datetime.now(UTC) + timedelta(hours=1),
        permission=ContainerSasPermissions(read=True, write=True, create=True, delete=True, list=True))
    signature = token.split("sig=")[1].split("&")[0]
    base = f"{azurite.endpoint}/{container}"
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING")  # only the SAS of the URLs is left
    job = make_job(job_dir, name="sasjob", runtime="command", scorer=ECHO_ENV, format="jsonl",
                   input=f"{base}/data/*.jsonl?{token}", output=f"{base}/out/echo.txt?{token}",
                   chunks=2)
    first = cli("run", job, "--json", "-q")
    assert _ok(first)["output"] == f"{base}/out/echo.txt"
    plan = cli("plan", job, "--json")
    failing = cli("run", job, "--json", "-q", "--set", "scorer=\"exit 3\"",
                  "--set", f'output="{base}/out/fail.txt?{token}"')
    assert failing.code == 1 and failing.json["status"] == "failed"
    blobs = _all_blobs(azurite, container)
    assert "out/echo.txt" in blobs and "out/fail.txt" not in blobs
    shown = first.stdout + first.stderr + plan.stdout + plan.stderr + failing.stdout + failing.stderr
    stored = b"".join(blobs.values()).decode("utf-8", "replace")
    for text in (shown, stored):
        assert signature not in text and "sig=" not in text


def test_merge_falls_back_on_an_azurite_without_copy_from_url(
        job_dir, make_job, azurite_legacy, cli, tmp_path) -> None:
    azurite_legacy.service().create_container("legacy")
    _jsonl_inputs(azurite_legacy, "legacy", job_dir / "data")
    env = {**azurite_legacy.env(), "SERVERLESS_SCORE_CACHE": str(tmp_path / "cache")}
    job = make_job(job_dir, name="legacy", runtime="command", scorer="cat", format="jsonl",
                   input="data/*.jsonl", output="out/local.txt", chunks=3)
    _ok(cli("run", job, "--json", "-q", env=env))
    _ok(cli("run", job, "--json", "-q", "--set", 'input="az://legacy/data/*.jsonl"',
            "--set", 'output="az://legacy/out/echo.txt"', env=env))
    manifest = json.loads(_blob(azurite_legacy, "legacy", "out/echo.txt.manifest.json"))
    assert manifest["output"]["merge"] == "download"
    assert _blob(azurite_legacy, "legacy", "out/echo.txt") == (job_dir / "out" / "local.txt").read_bytes()


def test_a_worker_refuses_a_model_that_changed(
        job_dir, make_job, blob_env, azurite, container, cli, trained_model, make_frame) -> None:
    make_frame(50, 3).to_csv(job_dir / "data.csv", index=False)
    pushed = cli("models", "push", trained_model.path, f"az://{container}/models")
    model_uri = pushed.stdout.strip()
    name = model_uri.split(f"az://{container}/", 1)[1]
    original_sha = hashlib.sha256(trained_model.path.read_bytes()).hexdigest()
    # damaged after the push: other bytes under the same content address and metadata
    azurite.service().get_blob_client(container, name).upload_blob(
        b"not the model", overwrite=True, metadata={"sha256": original_sha})
    job = make_job(job_dir, name="tampered", model=model_uri, input="data.csv",
                   output=f"az://{container}/out/scores.csv", id_columns=["id"], retries=2)
    result = cli("run", job, "--json", "-q")
    assert result.code == 1, result
    assert "refusing to score" in result.json["error"]["message"]
    assert "not retried" in result.json["error"]["message"]
    assert "out/scores.csv" not in _all_blobs(azurite, container)


def test_parquet_blob_input_is_split_by_row_groups_with_ranged_reads(
        job_dir, make_job, blob_env, azurite, container, cli, trained_model, make_frame) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(make_frame(300, 5), preserve_index=False)
    pq.write_table(table, job_dir / "data.parquet", row_group_size=100)
    azurite.service().get_blob_client(container, "in/data.parquet").upload_blob(
        (job_dir / "data.parquet").read_bytes())
    job = make_job(job_dir, name="pq", model=trained_model.path, input="data.parquet",
                   output="out/local.csv", id_columns=["id"], chunks=3)
    _ok(cli("run", job, "--json", "-q"))
    remote = _ok(cli("run", job, "--json", "-q", "--set", f'input="az://{container}/in/data.parquet"',
                     "--set", f'output="az://{container}/out/scores.csv"'))
    assert remote["tasks"] == 3
    assert _blob(azurite, container, "out/scores.csv") == (job_dir / "out" / "local.csv").read_bytes()
    # `scores` prints a blob output as CSV: a CSV one as it is, a Parquet one converted
    shown = cli("scores", f"az://{container}/out/scores.csv")
    assert shown.code == 0 and shown.stdout.encode() == (job_dir / "out" / "local.csv").read_bytes(), shown
    _ok(cli("run", job, "--json", "-q", "--set", f'input="az://{container}/in/data.parquet"',
            "--set", f'output="az://{container}/out/scores.parquet"'))
    converted = cli("scores", job, "--set", f'output="az://{container}/out/scores.parquet"')
    assert converted.code == 0, converted
    import io

    import pandas as pd

    expected = pd.read_csv(job_dir / "out" / "local.csv", dtype={"id": str})
    pd.testing.assert_frame_equal(pd.read_csv(io.StringIO(converted.stdout), dtype={"id": str}), expected)


def test_bad_blob_inputs_are_clear_errors(job_dir, make_job, blob_env, azurite, container, cli) -> None:
    job = make_job(job_dir, name="bad", runtime="command", scorer="cat", format="jsonl",
                   input=f"az://{container}/missing/*.jsonl", output=f"az://{container}/o.txt")
    result = cli("run", job, "--json", "-q")
    assert result.code == 2 and f"az://{container}/missing/*.jsonl" in result.json["error"]["message"]
    missing = cli("run", job, "--json", "-q", "--set", 'input="az://no-such-container/x.jsonl"')
    assert missing.code == 2 and "az://no-such-container/x.jsonl" in missing.flat_stderr
    assert "container does not exist" in missing.flat_stderr


def test_a_failed_blob_job_resumes_keeping_verified_parts(
        job_dir, make_job, blob_env, azurite, container, cli) -> None:
    _jsonl_inputs(azurite, container, job_dir / "data")
    marker = job_dir / "fixed"
    # task 1 fails, late enough that task 0 (running beside it) has finished
    scorer = f'if [ "$TASK_INDEX" = 1 ] && [ ! -f {marker} ]; then sleep 5; exit 3; fi; cat'
    job = make_job(job_dir, name="resume", runtime="command", scorer=scorer, format="jsonl",
                   input=f"az://{container}/data/*.jsonl", output=f"az://{container}/out/r.txt",
                   chunks=2, max_parallel=2)
    failed = cli("run", job, "--json", "-q")
    assert failed.code == 1 and failed.json["error"]["task_id"] == "t00001"
    names = set(_all_blobs(azurite, container))
    assert "out/r.txt" not in names
    statuses = {n: json.loads(_blob(azurite, container, n))["outcome"]
                for n in names if n.endswith("/status.json")}
    assert statuses == {"out/r.txt.work/tasks/t00000/attempt-1/status.json": "succeeded",
                        "out/r.txt.work/tasks/t00001/attempt-1/status.json": "failed"}
    marker.write_text("")
    resumed = _ok(cli("run", job, "--json", "-q"))
    assert resumed["reused_tasks"] == 1 and resumed["tasks"] == 2
    assert resumed["attempts"] == 2  # t00001: its failed attempt and this one
    local = b"".join((job_dir / "data" / f"part-{i}.jsonl").read_bytes() for i in range(2))
    assert _blob(azurite, container, "out/r.txt") == local


@pytest.fixture(scope="module")
def r_forest_example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of examples/r-churn-forest with its data and model made by its own prepare.R."""
    folder = tmp_path_factory.mktemp("r-churn-forest")
    for name in ("job.toml", "prepare.R"):
        shutil.copy(ROOT / "examples" / "r-churn-forest" / name, folder / name)
    subprocess.run(["Rscript", str(folder / "prepare.R"), "3000"], check=True,
                   capture_output=True, timeout=300, cwd=folder)
    return folder


def test_r_forest_example_in_azurite_equals_the_local_run(
        r_forest_example, blob_env, azurite, container, cli) -> None:
    """The R example with its .rds model, input and output all in Azurite: the merged blob is the
    local run's output byte for byte."""
    folder = r_forest_example
    job = folder / "job.toml"
    pushed = cli("models", "push", folder / "model" / "churn-forest.rds", f"az://{container}/models/forest")
    assert pushed.code == 0, pushed
    model_uri = pushed.stdout.strip()
    data = (folder / "data" / "customers.csv").read_bytes()
    azurite.service().get_blob_client(container, "in/customers.csv").upload_blob(data)

    local = _ok(cli("run", job, "--json", "-q", "--set", "chunks=3", "--set", "output=\"out/local.csv\""))
    remote = _ok(cli("run", job, "--json", "-q", "--set", f'model="{model_uri}"',
                     "--set", f'input="az://{container}/in/customers.csv"',
                     "--set", f'output="az://{container}/scores/forest.csv"', "--set", "chunks=3"))
    assert remote["status"] == "succeeded" and remote["rows_out"] == local["rows_out"] == 3000
    assert _blob(azurite, container, "scores/forest.csv") == (folder / "out" / "local.csv").read_bytes()
    manifest = json.loads(_blob(azurite, container, "scores/forest.csv.manifest.json"))
    assert manifest["model"]["uri"] == model_uri
    # R's read_scores() reads the blob output (through `status --json` and `scores`) exactly as
    # it reads the local one
    code = f"""
pkgload::load_all({str(ROOT / "rstudio" / "serveRless")!r}, quiet = TRUE)
remote <- read_scores("az://{container}/scores/forest.csv")
local <- read_scores({str(folder / "out" / "local.csv")!r})
stopifnot(identical(remote, local), nrow(remote) == 3000L, is.character(remote$customer_id))
cat("identical", nrow(remote), "rows\n")
"""
    env = {**os.environ, "SERVERLESS_SCORE_CLI": str(Path(PY).parent / "serverless-score")}
    read = subprocess.run(["Rscript", "-e", code], env=env, capture_output=True, text=True, timeout=120)
    assert read.returncode == 0 and "identical 3000 rows" in read.stdout, read.stdout + read.stderr


def test_csv_field_spanning_many_tasks_in_blobs(job_dir, make_job, blob_env, azurite, container,
                                                cli) -> None:
    """The issue's file (shrunk) read with ranged blob reads: the tasks inside the long quoted
    field end empty and every record comes out once, in order, without a retry."""
    from test_long_fields import TABLE_SCORER, expected_csv, reported_csv, unquote

    data = reported_csv(reps=1500, roleless=4000)
    azurite.service().get_blob_client(container, "in/long.csv").upload_blob(data)
    (job_dir / "model.bin").write_bytes(b"unused")
    (job_dir / "scorer.py").write_text(TABLE_SCORER)
    job = make_job(job_dir, name="long-blob", model="model.bin", scorer="scorer.py",
                   input=f"az://{container}/in/long.csv", output=f"az://{container}/out/long.csv",
                   id_columns=["id"], chunks=7)
    result = _ok(cli("run", job, "--json", "-q"))
    assert result["rows_out"] == 300
    assert result["repaired_boundaries"] > 0
    lines = _blob(azurite, container, "out/long.csv").decode().splitlines()
    assert unquote(lines[1:]) == expected_csv(data)
