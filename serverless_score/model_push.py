"""``serverless-score models push FILE URI``: upload a model under a content address.

The model goes to ``URI/<first 16 hex of its sha256>/<file name>``, written only if nothing is
there (If-None-Match), with its full sha256 kept as blob metadata. A new version of a model gets a
new name, so a running job's model is never replaced under it; pushing the same bytes again is a
no-op that prints the same URI.

``exact=True`` (``--exact``, what the R package's ``push_model()`` uses) stores it at ``URI``
itself: still atomic, still a no-op for the same bytes, and other content there is replaced only
with ``overwrite=True``. A job running on the replaced model then fails its next tasks on the
checksum the job recorded, rather than scoring with another model.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .errors import InputError, ScoreError
from .runner.models import file_sha256
from .storage import StoreConfig, get_store, is_local
from .storage.base import hash_stream

_COPY = 8 * 1024 * 1024


@dataclass(frozen=True)
class PushedModel:
    uri: str
    sha256: str
    size: int
    version: str
    created: bool  # False: the same bytes were already there

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def model_uri(destination: str, file: Path, sha256: str) -> str:
    """>>> model_uri("az://models/churn/", Path("m/churn.joblib"), "ab" * 32)
    'az://models/churn/abababababababab/churn.joblib'
    """
    return f"{destination.rstrip('/')}/{sha256[:16]}/{file.name}"


def push_model(file: Path, destination: str, config: StoreConfig | None = None, *,
               exact: bool = False, overwrite: bool = False) -> PushedModel:
    if not file.is_file():
        raise InputError(f"models push: {str(file)!r} is not a file")
    if is_local(destination):
        destination = str(Path(destination.removeprefix("file://")).resolve())
    sha256 = file_sha256(str(file))
    size = file.stat().st_size
    target = destination if exact else model_uri(destination, file, sha256)
    store = get_store(target, config)
    created = _write(file, target, store, sha256)
    if not created and _stored_sha256(store, target) != sha256:
        if not overwrite:
            hint = ("It was not overwritten. Pass --overwrite to replace it (jobs running on "
                    "it then fail on its checksum), or push under another name."
                    if exact else
                    "It was not overwritten. Somebody wrote it by hand; delete it or push elsewhere.")
            raise ScoreError(f"models push: {target} already exists with other content",
                             hint=hint)
        created = _write(file, target, store, sha256, overwrite=True)
    return PushedModel(uri=target, sha256=sha256, size=size,
                       version=store.info(target).version, created=created)


def _stored_sha256(store: Any, target: str) -> str:
    """The sha256 of what is at ``target``: from its metadata when the store keeps it (blob),
    else by reading it (a local file; equal sizes prove nothing)."""
    info = store.info(target)
    if info.sha256:
        return str(info.sha256)
    with store.open_read(target) as stored:
        return hash_stream(stored)[1]


def _write(file: Path, target: str, store: Any, sha256: str, *, overwrite: bool = False) -> bool:
    """Copy ``file`` to ``target`` atomically; False when something is there (and not overwrite)."""
    try:
        with open(file, "rb") as src, store.open_atomic(target, overwrite=overwrite,
                                                        metadata={"sha256": sha256}) as out:
            shutil.copyfileobj(src, out, _COPY)
    except FileExistsError:
        return False
    return True
