"""Least privilege for workers, checked against Azurite's real SAS enforcement: the SAS URLs a task
gets let it read its model and its own input blob and write its own part and result, nothing more."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobClient, ContainerClient

from serverless_score.controller.access import WorkerAccess
from serverless_score.errors import SpecError
from serverless_score.layout import JobLayout
from serverless_score.planning import make_plan
from serverless_score.runner.contract import TaskOrder
from serverless_score.spec import spec_from_dict
from serverless_score.storage import StoreConfig

pytestmark = pytest.mark.azurite
TIMEOUT = 600


def _job(azurite: Any, container: str, **azure: str) -> tuple[Any, StoreConfig]:
    service = azurite.service().get_container_client(container)
    service.upload_blob("models/m.joblib", b"model bytes")
    service.upload_blob("data/a.csv", b"id,x\n1,2\n3,4\n")
    service.upload_blob("data/b.csv", b"id,x\n5,6\n")
    service.upload_blob("other/secret.csv", b"not for workers\n")
    spec = spec_from_dict({
        "name": "grants", "model": f"az://{container}/models/m.joblib",
        "input": f"az://{container}/data/*.csv", "output": f"az://{container}/out/scores.csv",
        "timeout": TIMEOUT, "azure": azure,
    })
    return spec, StoreConfig.from_spec(spec, env=azurite.env())


def _denied(call: Any) -> bool:
    try:
        call()
    except HttpResponseError as err:
        return err.status_code == 403
    return False


def _with_sas_of(url: str, other: str) -> str:
    """``other`` (a blob URL) carrying ``url``'s SAS query."""
    return f"{other}?{urlsplit(url).query}"


def test_a_task_sas_reaches_its_blobs_and_nothing_else(azurite, container) -> None:
    spec, config = _job(azurite, container)
    plan = make_plan(spec, config)
    access = WorkerAccess.decide(spec, config)
    assert access.mode == "sas"
    layout = JobLayout(spec.output)
    first, second = plan.tasks[0], plan.tasks[1]
    assert first.path != second.path  # two input blobs: a.csv, b.csv
    order = TaskOrder.of(layout, first, 1)
    started = datetime.now(UTC)
    grants = {uri: secret.reveal() for uri, secret in access.grants([order]).items()}
    assert set(grants) == {spec.model, first.path, order.part, order.log, order.status}

    base = f"{azurite.endpoint}/{container}"
    model, data, part, result = (grants[spec.model], grants[first.path], grants[order.part],
                                 grants[order.status])
    BlobClient.from_blob_url(grants[order.log]).upload_blob(b"its log\n")
    # what the task needs works
    assert BlobClient.from_blob_url(model).download_blob().readall() == b"model bytes"
    assert BlobClient.from_blob_url(data).download_blob().readall().startswith(b"id,x")
    BlobClient.from_blob_url(part).upload_blob(b"scores\n")
    BlobClient.from_blob_url(result).upload_blob(b"{}", overwrite=True)
    # writing anything but its own attempt's files is refused (another attempt's too)
    other_part = f"{base}/out/scores.csv.work/tasks/{second.id}/attempt-1/part"
    next_attempt = f"{base}/out/scores.csv.work/tasks/{first.id}/attempt-2/status.json"
    for target in (other_part, next_attempt, f"{base}/out/scores.csv",
                   f"{base}/out/scores.csv.manifest.json", f"{base}/models/m.joblib",
                   f"{base}/data/a.csv"):
        for sas in (part, result, data, model):
            assert _denied(lambda t=target, s=sas: BlobClient.from_blob_url(_with_sas_of(s, t))
                           .upload_blob(b"x", overwrite=True)), (target, sas.split("?")[0])
    # reading anything but its model and its input is refused
    for target in (f"{base}/data/b.csv", f"{base}/other/secret.csv", other_part):
        for sas in (part, result, data, model):
            assert _denied(lambda t=target, s=sas: BlobClient.from_blob_url(_with_sas_of(s, t))
                           .download_blob().readall()), (target, sas.split("?")[0])
    # its read grants cannot write or delete what they read, and nothing can list the container
    assert _denied(lambda: BlobClient.from_blob_url(data).upload_blob(b"x", overwrite=True))
    assert _denied(lambda: BlobClient.from_blob_url(model).delete_blob())
    assert _denied(lambda: BlobClient.from_blob_url(part).delete_blob())
    for sas in (part, data):
        assert _denied(lambda s=sas: list(ContainerClient.from_container_url(
            f"{base}?{urlsplit(s).query}").list_blobs()))
    # and they expire with the task's timeout (plus a few minutes of clock skew)
    for url in grants.values():
        expiry = datetime.fromisoformat(parse_qs(urlsplit(url).query)["se"][0].replace("Z", "+00:00"))
        assert started + timedelta(seconds=TIMEOUT) <= expiry <= started + timedelta(seconds=TIMEOUT + 6 * 60)


def test_identity_mode_hands_out_no_sas(azurite, container) -> None:
    spec, config = _job(azurite, container, worker_access="identity")
    access = WorkerAccess.decide(spec, config)
    assert access.mode == "identity"
    assert access.secure_env([]) == {}


def test_sas_mode_needs_a_credential_that_can_sign(azurite, container) -> None:
    spec, _ = _job(azurite, container, worker_access="sas")
    sas_only = StoreConfig.from_env({"AZURE_STORAGE_SAS_TOKEN": "sv=x&sig=y"}, account="devstoreaccount1",
                                    endpoint=azurite.endpoint)
    with pytest.raises(SpecError, match=r"worker_access.*sign"):
        WorkerAccess.decide(spec, sas_only)
