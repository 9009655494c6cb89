"""Which model a job scores with, exactly: its version (blob etag or file mtime) and sha256,
recorded in the manifest and sent to workers, which refuse a model whose bytes differ."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..runner.models import file_sha256
from ..storage import StoreConfig, get_store


@dataclass(frozen=True)
class ModelInfo:
    uri: str
    version: str
    size: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def model_info(uri: str | None, config: StoreConfig | None) -> ModelInfo | None:
    """The checksum is the one ``models push`` stored with the blob when there is one (the worker
    verifies the bytes anyway); otherwise the model is hashed here (blobs are downloaded once into
    the cache, which workers on this machine then reuse)."""
    if uri is None:
        return None
    store = get_store(uri, config)
    info = store.info(uri)
    sha256 = info.sha256 or file_sha256(store.local_path(uri))
    return ModelInfo(uri=uri, version=info.version, size=info.size, sha256=sha256)
