"""``pins://BOARD/NAME[@VERSION]``: a model pinned on a folder or an Azure Blob board.

The layout is the one R's and Python's ``pins`` both write (api_version 1)::

    BOARD/NAME/VERSION/data.txt      YAML: file, type, pin_hash, created, user (vetiver's meta)
    BOARD/NAME/VERSION/NAME.joblib   (or .rds, .pkl): the pinned file

A version is ``<created>-<hash>`` (``20261207T160218Z-85052``), so the latest is the greatest
name. The board is read through the job's stores (a path, ``az://``, an https URL), so the
``pins`` package is not needed here and a blob board's file is a blob the workers read as any
other model.
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import InputError
from ..storage import StoreConfig, get_store, is_local
from . import PINS_PREFIX, ModelSource

META = "data.txt"
# pins' own type names for model files; a type the runtimes cannot load is refused at plan.
_LOADABLE = {"rds", "joblib", "pickle", "file"}


def parse_pin_uri(uri: str) -> tuple[str, str, str | None]:
    """``pins://az://models/boards/churn@20261207T160218Z-85052`` ->
    ``("az://models/boards", "churn", "20261207T160218Z-85052")``."""
    rest = uri[len(PINS_PREFIX):]
    board, _, pin = rest.rstrip("/").rpartition("/")
    name, _, version = pin.partition("@")
    if not board or not name:
        raise InputError(f"model: {uri!r} is not a pin URI",
                         hint="Use pins://BOARD/NAME or pins://BOARD/NAME@VERSION, where BOARD is "
                              "a folder or an az://container/path board.", retryable=False)
    return board, name, version or None


def _load_meta(text: bytes, where: str) -> dict[str, Any]:
    try:
        import yaml
    except ModuleNotFoundError:
        raise InputError("model: reading a pins board needs PyYAML",
                         hint="pip install 'serverless-score[pins]'", retryable=False) from None
    try:
        meta = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise InputError(f"model: {where} is not valid YAML ({err})", retryable=False) from None
    if not isinstance(meta, dict):
        raise InputError(f"model: {where} is not a pins metadata file", retryable=False)
    return meta


def pin_versions(board: str, name: str, config: StoreConfig | None) -> list[str]:
    """The versions of pin ``name`` (folders holding a data.txt), oldest first."""
    store = get_store(board, config)
    prefix = f"{board.rstrip('/')}/{name}/"
    versions = set()
    for uri in store.list(prefix.rstrip("/")):
        tail = uri[len(prefix):] if uri.startswith(prefix) else ""
        version, _, leaf = tail.partition("/")
        if leaf == META and not version.startswith("."):  # a writer's staging folder
            versions.add(version)
    return sorted(versions)


def resolve_pin(uri: str, config: StoreConfig | None) -> ModelSource:
    board, name, wanted = parse_pin_uri(uri)
    if is_local(board):
        board = board.removeprefix("file://")
    try:
        versions = pin_versions(board, name, config)
    except FileNotFoundError:
        versions = []
    if not versions:
        raise InputError(f"model: the board {board!r} has no pin named {name!r}",
                         hint="Check the board path and the pin name (pins' pin_list() lists "
                              "them).", retryable=False)
    if wanted is not None and wanted not in versions:
        shown = ", ".join(versions[-5:])
        raise InputError(f"model: pin {name!r} on {board!r} has no version {wanted!r} "
                         f"(it has {len(versions)}; latest: {shown})",
                         hint="Give one of its versions after @, or none for the latest.",
                         retryable=False)
    version = wanted or versions[-1]
    folder = f"{board.rstrip('/')}/{name}/{version}"
    store = get_store(folder, config)
    meta = _load_meta(store.read_bytes(f"{folder}/{META}"), f"{folder}/{META}")
    files = meta.get("file")
    if isinstance(files, list):
        if len(files) != 1:
            raise InputError(f"model: pin {name!r} version {version} holds {len(files)} files; "
                             "a model pin holds one", retryable=False)
        files = files[0]
    pin_type = str(meta.get("type", ""))
    if not isinstance(files, str) or pin_type not in _LOADABLE:
        raise InputError(f"model: pin {name!r} version {version} is of type {pin_type!r}, "
                         "not a model file (rds, joblib or pickle)",
                         hint='Pin the model with type = "joblib" (Python) or "rds" (R).',
                         retryable=False)
    details: dict[str, Any] = {"board": board, "name": name, "version": version,
                               "pin_hash": meta.get("pin_hash"), "created": meta.get("created"),
                               "type": pin_type}
    vetiver = (meta.get("user") or {}).get("vetiver_meta") if isinstance(meta.get("user"), dict) else None
    needs: tuple[str, ...] = ()
    prototype: tuple[str, ...] | None = None
    if isinstance(vetiver, dict):
        needs = tuple(str(p) for p in vetiver.get("required_pkgs") or ())
        prototype = _prototype_columns(vetiver.get("prototype"))
        details["vetiver"] = True
    return ModelSource(uri=uri, kind="pins", artifact=f"{folder}/{files}", version=version,
                       details=details, needs=needs, prototype=prototype)


def _prototype_columns(prototype: Any) -> tuple[str, ...] | None:
    """vetiver writes the prototype as a JSON object of column -> example value (Python), or
    a list of such rows; None when there is none."""
    if isinstance(prototype, str):
        try:
            prototype = json.loads(prototype)
        except ValueError:
            return None
    if isinstance(prototype, list) and prototype and isinstance(prototype[0], dict):
        prototype = prototype[0]
    if isinstance(prototype, dict):
        return tuple(str(k) for k in prototype)
    return None
