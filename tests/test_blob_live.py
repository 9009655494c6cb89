"""Against a real Azure Storage account: opt-in, skipped unless SERVERLESS_SCORE_AZURE_STORAGE_ACCOUNT
is set (with credentials DefaultAzureCredential finds, or AZURE_STORAGE_CONNECTION_STRING /
AZURE_STORAGE_KEY). Uses container SERVERLESS_SCORE_AZURE_TEST_CONTAINER (default
serverless-score-test), which must exist, and deletes what it writes."""

from __future__ import annotations

import os
import uuid
from datetime import timedelta

import pytest

from serverless_score.storage import StoreConfig
from serverless_score.storage.blob import BlobStore

ACCOUNT = os.environ.get("SERVERLESS_SCORE_AZURE_STORAGE_ACCOUNT")
pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(not ACCOUNT, reason="live Azure Storage: set SERVERLESS_SCORE_AZURE_STORAGE_ACCOUNT to run"),
]


def test_round_trip_server_side_compose_and_task_sas_on_a_real_account() -> None:
    container = os.environ.get("SERVERLESS_SCORE_AZURE_TEST_CONTAINER", "serverless-score-test")
    store = BlobStore(StoreConfig.from_env(account=ACCOUNT))
    root = f"az://{container}/live-{uuid.uuid4().hex[:8]}"
    try:
        parts = [f"{root}/part{i}" for i in range(3)]
        for i, uri in enumerate(parts):
            store.write_bytes(uri, f"{i},score\n".encode() * 1000)
        result = store.compose(f"{root}/out.csv", parts, header=b"id,score\n", overwrite=False)
        assert result.method == "server"
        expected = b"id,score\n" + b"".join(store.read_bytes(p) for p in parts)
        assert store.read_bytes(f"{root}/out.csv") == expected
        with pytest.raises(FileExistsError):
            store.compose(f"{root}/out.csv", parts, overwrite=False)
        if store.signer(f"{root}/out.csv") is not None:
            url = store.grant(f"{root}/out.csv", "r", timedelta(minutes=5))
            assert url is not None
            reader = BlobStore(StoreConfig(grants=((f"{root}/out.csv", url),), grants_only=True))
            assert reader.read_bytes(f"{root}/out.csv") == expected
    finally:
        store.delete_prefix(root)
