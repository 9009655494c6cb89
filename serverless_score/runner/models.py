"""The model a worker scores with: fetched once (blob models are cached per etag) and checked
against the checksum the controller recorded, so a model that changed or was damaged after the
job was planned is refused instead of silently scoring with other weights."""

from __future__ import annotations

import os
from functools import lru_cache

from ..errors import ScoreError
from ..storage import StoreConfig, get_store
from ..storage.base import hash_stream


def file_sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hash_stream(f)[1]


@lru_cache(maxsize=8)
def _checked_sha256(path: str, size: int, mtime_ns: int) -> str:
    return file_sha256(path)  # once per file version per worker, not once per task


def fetch_model(uri: str, expected_sha256: str | None, config: StoreConfig | None) -> str:
    """A local file holding the model at ``uri``, verified against ``expected_sha256``."""
    path = get_store(uri, config).local_path(uri)
    if expected_sha256:
        st = os.stat(path)
        actual = _checked_sha256(path, st.st_size, st.st_mtime_ns)
        if actual != expected_sha256:
            raise ScoreError(
                f"model: {uri} has sha256 {actual[:16]}..., not {expected_sha256[:16]}... as when "
                "the job was planned; refusing to score with it",
                hint="The model changed or is damaged. Push models with `serverless-score models "
                     "push` (never overwritten) and point the job at the URI it prints.",
                retryable=False)
    return path
