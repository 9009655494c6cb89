"""Stores chosen by URI scheme, imported lazily: local paths need no Azure SDK installed."""

from __future__ import annotations

import importlib
from functools import lru_cache

from ..errors import InputError
from .base import ComposeResult, ObjectInfo, Store
from .config import StoreConfig

STORES = {
    "file": "serverless_score.storage.local:LocalStore",
    "az": "serverless_score.storage.blob:BlobStore",
    "https": "serverless_score.storage.blob:BlobStore",
    "http": "serverless_score.storage.blob:BlobStore",  # path-style emulator URLs (Azurite)
}
_INSTALL_HINT = {"serverless_score.storage.blob": "pip install 'serverless-score[blob]'"}

__all__ = ["ComposeResult", "ObjectInfo", "Store", "StoreConfig", "get_store", "is_local",
           "scheme_of"]


def scheme_of(uri: str) -> str:
    return uri.split("://", 1)[0].lower() if "://" in uri else "file"


def is_local(uri: str) -> bool:
    return scheme_of(uri) == "file"


def get_store(uri: str, config: StoreConfig | None = None) -> Store:
    """The store for ``uri``'s scheme. ``config`` says how to reach remote stores; without it
    the environment is used (``StoreConfig.from_env()``). Stores are cached per config."""
    scheme = scheme_of(uri)
    target = STORES.get(scheme)
    if target is None:
        raise InputError(
            f"{uri!r}: the {scheme}:// scheme is not supported",
            hint="Use a local path, az://CONTAINER/PATH or https://ACCOUNT.blob.core.windows.net/CONTAINER/PATH.",
        )
    if scheme == "file":
        return _store(target, None)
    return _store(target, config if config is not None else StoreConfig.from_env())


@lru_cache(maxsize=64)
def _store(target: str, config: StoreConfig | None) -> Store:
    module, _, cls = target.partition(":")
    try:
        imported = importlib.import_module(module)
    except ImportError as err:
        raise InputError(f"{module}: cannot be imported ({err})",
                         hint=_INSTALL_HINT.get(module, "Reinstall serverless-score.")) from None
    store: Store = getattr(imported, cls)(config) if config is not None else getattr(imported, cls)()
    return store

