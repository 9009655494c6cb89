"""``serverless-score models push FILE URI``: upload a model under a content address.

The model goes to ``URI/<first 16 hex of its sha256>/<file name>``, written only if nothing is
there (If-None-Match), with its full sha256 kept as blob metadata. A new version of a model gets a
new name, so a running job's model is never replaced under it; pushing the same bytes again is a
no-op that prints the same URI.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .errors import InputError, ScoreError
from .runner.models import file_sha256
from .storage import StoreConfig, get_store, is_local

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


def push_model(file: Path, destination: str, config: StoreConfig | None = None) -> PushedModel:
    if not file.is_file():
        raise InputError(f"models push: {str(file)!r} is not a file")
    if is_local(destination):
        destination = str(Path(destination.removeprefix("file://")).resolve())
    sha256 = file_sha256(str(file))
    size = file.stat().st_size
    target = model_uri(destination, file, sha256)
    store = get_store(target, config)
    created = True
    try:
        with open(file, "rb") as src, store.open_atomic(target, overwrite=False,
                                                        metadata={"sha256": sha256}) as out:
            shutil.copyfileobj(src, out, _COPY)
    except FileExistsError:
        created = False
        info = store.info(target)
        if info.size != size or info.sha256 not in (None, sha256):
            raise ScoreError(
                f"models push: {target} already exists with other content",
                hint="It was not overwritten. Somebody wrote it by hand; delete it or push elsewhere.",
            ) from None
    return PushedModel(uri=target, sha256=sha256, size=size,
                       version=store.info(target).version, created=created)
