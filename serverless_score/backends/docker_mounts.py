"""Which local paths a job's containers need, bind-mounted at the same paths (pure, no I/O except
``os.path`` checks of what the job names): the work order names files by their host paths, so a
container sees the model, the input and the scorer where the controller does, read-only, and
only the job's work directory (parts, results) writable. The final output is written by the
controller, never by a container. Blob URIs need no mount.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

_GLOB = set("*?[")


@dataclass(frozen=True)
class Bind:
    path: str  # the same path on the host and in the container
    read_only: bool


def _local(uri: str | None) -> str | None:
    if not uri or ("://" in uri and not uri.startswith("file://")) or uri.startswith(
            ("models:/", "runs:/")):  # an MLflow URI as written (status, cleanup): no file
        return None
    return os.path.abspath(uri.removeprefix("file://"))


def _glob_root(path: str) -> str:
    """The directory above the first component with a wildcard (``data/*.csv`` -> ``data``)."""
    parts = path.split(os.sep)
    for i, part in enumerate(parts):
        if _GLOB & set(part):
            return os.sep.join(parts[:i]) or os.sep
    return path


def job_binds(*, model: str | None, input: str | None, output: str, scorer: str | None,
              runtime: str) -> list[Bind]:
    """The bind mounts of a job: model and input read-only, a scorer script's directory
    read-only (a script may read files beside it), the output's work directory writable."""
    wanted: list[Bind] = []
    if (path := _local(model)) is not None:
        wanted.append(Bind(path, True))
    if (path := _local(input)) is not None:
        wanted.append(Bind(_glob_root(path), True))
    if runtime in ("python", "r") and scorer and scorer != "predict" and (path := _local(scorer)):
        wanted.append(Bind(os.path.dirname(path), True))
    if (path := _local(output)) is not None:
        wanted.append(Bind(f"{path}.work", False))
    return merge_binds(wanted)


def merge_binds(binds: Iterable[Bind]) -> list[Bind]:
    """Drop a read-only mount already inside another read-only one (or repeated); a writable
    one stays even inside a read-only one (Docker mounts the deeper path over the shallower)."""
    unique: dict[str, bool] = {}
    for bind in binds:
        unique[bind.path] = unique.get(bind.path, True) and bind.read_only
    kept = []
    for path, read_only in sorted(unique.items()):
        covered = any(_inside(path, other) and (read_only or not other_ro)
                      for other, other_ro in unique.items() if other != path)
        if not covered:
            kept.append(Bind(path, read_only))
    return kept


def _inside(path: str, parent: str) -> bool:
    return path.startswith(parent.rstrip(os.sep) + os.sep)
