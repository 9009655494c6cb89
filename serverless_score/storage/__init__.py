"""Stores chosen by URI scheme, imported lazily (``az://`` and ``https://`` arrive with Blob Storage)."""

from __future__ import annotations

import hashlib
import importlib
from pathlib import Path

from ..errors import InputError
from .base import Store

STORES = {
    "file": "serverless_score.storage.local:LocalStore",
}

__all__ = ["Store", "get_store", "scheme_of", "store_model"]


def scheme_of(uri: str) -> str:
    return uri.split("://", 1)[0].lower() if "://" in uri else "file"


def get_store(uri: str) -> Store:
    scheme = scheme_of(uri)
    target = STORES.get(scheme)
    if target is None:
        raise InputError(
            f"{uri!r}: the {scheme}:// scheme is not supported in this version",
            hint="Use a local path; Azure Blob Storage URIs (az://, https://) come with the blob backend.",
        )
    module, _, cls = target.partition(":")
    store: Store = getattr(importlib.import_module(module), cls)()
    return store


def store_model(source: str | Path, uri: str) -> dict[str, object]:
    """Copy a model file to ``uri`` atomically (a job never sees half a model); return where it
    went, its size and sha256."""
    try:
        data = Path(source).read_bytes()
    except OSError as err:
        raise InputError(f"model: cannot read {str(source)!r}: {err.strerror or err}") from None
    get_store(uri).write_bytes(uri, data)
    return {"uri": uri, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
