"""A tiny job on real Azure Container Instances: opt-in, skipped unless these are set:

* ``SERVERLESS_SCORE_AZURE_SUBSCRIPTION_ID``, ``SERVERLESS_SCORE_AZURE_RESOURCE_GROUP``,
  ``SERVERLESS_SCORE_AZURE_LOCATION``: where the groups go (credentials: whatever
  DefaultAzureCredential finds: ``az login``, a service principal, a managed identity);
* ``SERVERLESS_SCORE_AZURE_IMAGE``: a runner image the subscription can pull (e.g. pushed with
  ``serverless-score image push``), and ``SERVERLESS_SCORE_AZURE_IDENTITY`` if the pull (ACR) or
  the blob access needs a user-assigned identity;
* ``SERVERLESS_SCORE_AZURE_STORAGE_ACCOUNT`` and a container
  ``SERVERLESS_SCORE_AZURE_TEST_CONTAINER`` (default serverless-score-test) the controller can
  write to (account key or connection string for per-task SAS, or the identity's roles).

It scores 200 JSON lines with ``cat`` in 2 groups, checks the output, and that no group of the
job is left; everything it wrote is deleted.
"""

from __future__ import annotations

import json
import os
import uuid

import pytest

REQUIRED = ("SERVERLESS_SCORE_AZURE_SUBSCRIPTION_ID", "SERVERLESS_SCORE_AZURE_RESOURCE_GROUP",
            "SERVERLESS_SCORE_AZURE_LOCATION", "SERVERLESS_SCORE_AZURE_IMAGE",
            "SERVERLESS_SCORE_AZURE_STORAGE_ACCOUNT")
MISSING = [name for name in REQUIRED if not os.environ.get(name)]
pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(bool(MISSING), reason="live Azure Container Instances: set "
                       + ", ".join(MISSING) + " to run"),
]


def test_a_tiny_job_on_real_aci_and_nothing_left_behind() -> None:
    from serverless_score import run_job, spec_from_dict
    from serverless_score.backends import get_backend
    from serverless_score.storage import StoreConfig, get_store

    container = os.environ.get("SERVERLESS_SCORE_AZURE_TEST_CONTAINER", "serverless-score-test")
    root = f"az://{container}/aci-live-{uuid.uuid4().hex[:8]}"
    account = os.environ["SERVERLESS_SCORE_AZURE_STORAGE_ACCOUNT"]
    rows = b"".join(json.dumps({"id": i}).encode() + b"\n" for i in range(200))
    azure = {"storage_account": account}
    if os.environ.get("SERVERLESS_SCORE_AZURE_IDENTITY"):
        azure["identity"] = os.environ["SERVERLESS_SCORE_AZURE_IDENTITY"]
    spec = spec_from_dict({
        "name": "aci-live", "runtime": "command", "scorer": "cat", "format": "jsonl",
        "input": f"{root}/in.jsonl", "output": f"{root}/out.jsonl", "chunks": 2,
        "max_parallel": 2, "retries": 1, "timeout": "15m", "backend": "aci",
        "image": os.environ["SERVERLESS_SCORE_AZURE_IMAGE"], "azure": azure,
    })
    store = get_store(spec.output, StoreConfig.from_spec(spec))
    store.write_bytes(f"{root}/in.jsonl", rows)
    try:
        result = run_job(spec)
        assert result.status == "succeeded" and result.rows_out == 200
        assert store.read_bytes(spec.output) == rows
        backend = get_backend("aci", spec=spec)
        assert backend.list_groups(result.job_id) == []
    finally:
        store.delete_prefix(root)
